"""The write side of the storage contract (:class:`FileSink`, :class:`ItemWriter`,
:class:`Partial`), under the name the download code has always imported it by. The whole
contract, read side and run lock included, is :mod:`.backend`.
"""

from __future__ import annotations

from .backend import FileSink, ItemWriter, Partial

__all__ = ["FileSink", "ItemWriter", "Partial"]
