"""The archive: what every storage backend shares, written once above them.

- :mod:`.layer` - :class:`Archive`, one object over a backend: the skip check, the item
  states, ``verify`` and ``gc``, the writers of items;
- :mod:`.state` - what counts as archived, partial or absent;
- :mod:`.transaction` - one item's transaction and its commit protocol;
- :mod:`.record` - the item's record (``archive.json``), ``SHA256SUMS``, ``info.json``;
- :mod:`.verify`, :mod:`.gc` - what ``verify`` compares and what ``gc`` removes;
- :mod:`.index` - the archive's static pages (``archiver index``);
- :mod:`.scheduler` - one pass over a manifest: :mod:`.polling` asks Akool,
  the download workers archive, :mod:`.outcomes` records what became of each id;
- :mod:`.runlock` - the one run-lock seam of ``run``, ``serve`` and ``gc``;
- :mod:`.run` - the library entry point (:mod:`archiver.run` re-exports it).
"""

from __future__ import annotations

from .layer import Archive
from .state import State

__all__ = ["Archive", "State"]
