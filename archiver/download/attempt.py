"""What one attempt at one file carries, handed to whichever fetcher moves its bytes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..storage.base import FileSink
from ..validate import ContentCheck, Mp4Boxes


class TransferListener(Protocol):
    """Hears about the attempts of one file transfer (progress bars, totals)."""

    def started(self, total: int | None, offset: int) -> None:
        """Headers arrived: *total* bytes expected (if known), *offset* already stored."""

    def advanced(self, count: int) -> None:
        """*count* more bytes arrived."""

    def ended(self) -> None:
        """The attempt ended, whatever its outcome."""


class Carry:
    """What one attempt hands the next for the same file (a resume in this run)."""

    __slots__ = ("boxes", "single")

    def __init__(self) -> None:
        #: The MP4 box walk over the bytes stored so far, so a resume keeps checking.
        self.boxes: Mp4Boxes | None = None
        #: The server does not honour Range for this file: fetch it over one connection.
        self.single = False


@dataclass(slots=True, eq=False)
class Target:
    """Where one answer's bytes go and what checks them: the fetchers' one parameter.

    The bytes ``[0, offset)`` are stored already (a resume); the answer declared
    *expected* more (its Content-Length), if it said.
    """

    name: str
    url: str
    #: The URL as it may be shown (no query string: it may carry a signature).
    shown: str
    sink: FileSink
    #: SHA-256 of the bytes so far (``hashlib`` object), fed in order.
    hasher: Any
    check: ContentCheck
    listener: TransferListener | None
    carry: Carry
    offset: int
    expected: int | None

    @property
    def total(self) -> int | None:
        """The whole file's size, if the answer declared its length."""
        return None if self.expected is None else self.offset + self.expected
