"""Local-disk storage: temp file, byte count check, fsync, rename, fsync the folder.

One module per concern:

- :mod:`.fs` - safe file-system access below the root (``O_NOFOLLOW``, ``openat``);
- :mod:`.sink` - :class:`LocalFileSink`: one file under its temporary name, its sidecar;
- :mod:`.writer` - :class:`LocalItemWriter`: one item and its one-hop commit;
- :mod:`.backend` - :class:`LocalStorage`: the root, what is stored there, the run lock;
- :mod:`.flock` - ``flock`` run locks on this host.
"""

from __future__ import annotations

from ..names import sidecar_name, temp_name
from .backend import LOCK_NAME, LocalStorage
from .sink import LocalFileSink
from .writer import LocalItemWriter

__all__ = ["LOCK_NAME", "LocalFileSink", "LocalItemWriter", "LocalStorage", "sidecar_name",
           "temp_name"]
