"""The archive: what every storage backend shares, written once above them.

:class:`Archive` (:mod:`.layer`) is one object over a backend: the skip check, the item
states (:mod:`.state`), ``verify`` (:mod:`.verify`) and ``gc`` (:mod:`.gc`).
"""

from __future__ import annotations

from .layer import Archive
from .state import State

__all__ = ["Archive", "State"]
