"""Storage backends: where archived items go. See :mod:`archiver.storage.base`."""

from __future__ import annotations

from ..config import StorageConfig
from .base import FileSink, ItemWriter, Storage
from .local import LocalStorage

__all__ = ["FileSink", "ItemWriter", "LocalStorage", "Storage", "make_storage"]


def make_storage(config: StorageConfig) -> Storage:
    """The backend the configuration names."""
    if config.backend == "local":
        return LocalStorage(config.local.root)
    raise ValueError(f"unknown storage backend {config.backend!r}")  # config validation prevents
