"""Fetching result files into storage (see :mod:`.downloader`)."""

from .downloader import Downloader, TransferListener

__all__ = ["Downloader", "TransferListener"]
