"""Local-disk storage: temp file, byte count check, fsync, rename, fsync the folder.

One module per concern:

- :mod:`.backend` - :class:`LocalBackend`: the contract's backend: the root, listing,
  reading, digests, removal, the run lock; hands out the writers;
- :mod:`.writer` - :class:`LocalItemWriter`: one item and its one-hop commit;
- :mod:`.sink` - :class:`LocalFileSink`: one file under its temporary name, its sidecar;
- :mod:`.fs` - safe file-system access below the root (``O_NOFOLLOW``, ``openat``);
- :mod:`.flock` - ``flock`` run locks on this host.
"""

from __future__ import annotations

from ..names import sidecar_name, temp_name
from .backend import LOCK_NAME, LocalBackend
from .sink import LocalFileSink
from .writer import LocalItemWriter

#: The name of :class:`LocalBackend` before the storage contract was narrowed (issue 19).
LocalStorage = LocalBackend

__all__ = ["LOCK_NAME", "LocalBackend", "LocalFileSink", "LocalItemWriter", "LocalStorage",
           "sidecar_name", "temp_name"]
