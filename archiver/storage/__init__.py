"""Storage backends: where archived items go. See :mod:`archiver.storage.base`."""

from __future__ import annotations

from ..config import StorageConfig
from .base import FileSink, ItemWriter, Partial, Storage
from .local import LocalStorage

__all__ = ["FileSink", "ItemWriter", "LocalStorage", "Partial", "Storage", "make_storage"]


def make_storage(config: StorageConfig) -> Storage:
    """The backend the configuration names."""
    if config.backend == "local":
        return LocalStorage(config.local.root)
    if config.backend == "s3" and config.s3 is not None:
        # Imported here: boto3 takes a while to import and local runs do not need it.
        from .s3 import S3Storage

        return S3Storage.from_config(config.s3)
    raise ValueError(f"unknown storage backend {config.backend!r}")  # config validation prevents
