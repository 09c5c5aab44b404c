"""The local spool of a file written by position, before its parts go to S3.

A file fetched over several connections at once is written by position (ranges arrive
out of order), which S3 cannot take: its bytes go to a :class:`Spool` first, an
anonymous temporary file in ``storage.s3.spool_dir`` (O_TMPFILE on Linux: no name,
nothing left behind by a crash). The downloader reads the spool back in order to hash
and check it (:meth:`~.multipart.S3FileSink.read_into`) and reports the checked prefix
(:meth:`~.multipart.S3FileSink.mark_prefix`); every whole part inside that prefix then
goes up from the spool through the same path as a sequential part (its checksum, the
``parts_in_flight`` bound, the clean-up registration, the composite checksum), and the
sink's commit sends the rest. So S3 only ever receives bytes hashed and checked in
order, parts are numbered by offset, memory stays at the part buffers, and the disk
needed is the size of the files being fetched that way at once. No resume across
attempts: like every S3 file, a failed one starts again from zero.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path


class Spool:
    """The local copy of a file written by position, before its parts go to S3.

    An anonymous temporary file (:func:`tempfile.TemporaryFile`: O_TMPFILE on Linux, so
    it has no name and a crash leaves nothing). Reads and writes are positional, from any
    thread. :meth:`close` waits for no one: the descriptor is closed when the last
    read or write in flight ends, so it is never reused under one still running (a
    write through a reused descriptor would land in some other file).
    """

    def __init__(self, directory: Path | None) -> None:
        self._file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - closed in close()
        self.fd = self._file.fileno()
        self._lock = threading.Lock()
        self._users = 0
        self._closing = False

    @contextlib.contextmanager
    def using(self) -> Iterator[int]:
        """The descriptor, kept open for the block (OSError once the spool is closed)."""
        with self._lock:
            if self._closing:
                raise OSError("the spool is closed")
            self._users += 1
        try:
            yield self.fd
        finally:
            with self._lock:
                self._users -= 1
                last = self._closing and self._users == 0
            if last:
                self._file.close()

    def write(self, offset: int, data: bytes) -> None:
        with self.using() as fd:
            view = memoryview(data)
            while view:
                done = os.pwrite(fd, view, offset)
                view, offset = view[done:], offset + done

    def read_into(self, offset: int, buffer: memoryview) -> int:
        with self.using() as fd:
            return os.preadv(fd, [buffer], offset)

    def close(self) -> None:
        """Close now, or when the last read or write in flight ends; idempotent."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            idle = self._users == 0
        if idle:
            self._file.close()
