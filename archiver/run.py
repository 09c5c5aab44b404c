"""The library entry point: one config + one manifest in, one typed result out.

    from archiver.config import load_config
    from archiver.manifest import load_manifest
    from archiver.run import archive_sync

    result = archive_sync(load_config("archiver.yaml"), load_manifest("videos.yaml"))
    print(result.count(Outcome.ARCHIVED), result.exit_status)

The run itself lives with the rest of the archive, :mod:`archiver.archive.run`; this
module keeps the names the README's "As a library" section imports.
"""

from __future__ import annotations

from .archive.run import archive, archive_sync

__all__ = ["archive", "archive_sync"]
