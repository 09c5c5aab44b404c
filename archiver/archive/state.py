"""What an item folder's entries mean: the commit rule and the states ``status`` shows.

Written once for every backend, over what :meth:`~archiver.storage.backend.Backend.listing`
found: an item is **archived** if and only if its folder holds ``archive.json`` as a
regular file (the record is written last: nothing incomplete looks complete);
**partial** if the folder holds anything else (bytes kept from an interrupted download,
or the objects of an attempt that did not commit); **absent** otherwise - also when
``<root>/<id>`` is no folder at all (a symbolic link planted there is not an item).
Names that are not ids (the lease folder, anything else sharing the prefix) are no item.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from ..manifest import ID_PATTERN
from ..storage.backend import Entry, Kind
from ..storage.names import RECORD_NAME


class State(enum.StrEnum):
    ARCHIVED = "archived"
    PARTIAL = "partial"
    ABSENT = "absent"


def committed(folder: Mapping[str, Entry] | None) -> bool:
    """Whether a folder with these entries is a committed item."""
    if not folder:
        return False
    record = folder.get(RECORD_NAME)
    return record is not None and record.kind is Kind.FILE


def state(folder: Mapping[str, Entry] | None) -> State:
    """The state of the item whose folder holds these entries (None: no folder)."""
    if committed(folder):
        return State.ARCHIVED
    return State.PARTIAL if folder else State.ABSENT


def is_id(name: str) -> bool:
    """Whether a folder named *name* can be an item's."""
    return ID_PATTERN.fullmatch(name) is not None
