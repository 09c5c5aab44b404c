"""Storage: the backends an archive is kept on, each behind the narrow contract of
:mod:`.backend` - local disk (:mod:`.local`) and S3 (:mod:`.s3`). What every backend
shares (the commit protocol, verify/status/gc, the run lock seam) is written once above
them, in :mod:`archiver.archive`."""

from __future__ import annotations

from ..config import StorageConfig
from .backend import Backend, Capabilities, Digest, Entry, Kind, Listing, Removal
from .base import FileSink, ItemWriter, Partial
from .local import LocalBackend

__all__ = ["Backend", "Capabilities", "Digest", "Entry", "FileSink", "ItemWriter", "Kind",
           "Listing", "LocalBackend", "Partial", "Removal", "make_backend"]


def make_backend(config: StorageConfig) -> Backend:
    """The backend the configuration names."""
    if config.backend == "local":
        return LocalBackend(config.local.root)
    if config.backend == "s3" and config.s3 is not None:
        # Imported here: boto3 takes a while to import and local runs do not need it.
        from .s3 import S3Backend

        return S3Backend.from_config(config.s3)
    raise ValueError(f"unknown storage backend {config.backend!r}")  # config validation prevents
