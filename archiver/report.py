"""The JSON run report (``--report PATH``): what happened to every id, and totals.

The schema is documented in the README ("The run report"). It holds no secret:
URLs are recorded without their query string and no header is ever included.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from . import __version__
from .models import ItemResult, Outcome, RunResult, iso_utc

SCHEMA_VERSION = 1


def build_report(result: RunResult, exit_status: int, signal: str | None = None, *,
                 lazy_items: bool = False) -> dict[str, Any]:
    """The run report of *result*. With *lazy_items*, ``items`` is an iterator that
    builds each item's dict as it is read, once: for a report that is only written
    (:func:`write_report`), so that 100,000 items are never all in memory as dicts."""
    now = dt.datetime.now(dt.UTC).timestamp()
    totals: dict[str, Any] = {"ids": len(result.items)}
    for outcome in Outcome:
        totals[outcome.value] = result.count(outcome)
    totals["files_archived"] = sum(len(i.files) for i in result.items
                                   if i.outcome is Outcome.ARCHIVED)
    totals["bytes_archived"] = result.bytes_archived
    totals["api_requests"] = result.api_requests
    totals["file_requests"] = result.file_requests
    # Per result family, the families the run had ids of: {"image": {"ids": 2, ...}}.
    by_family: dict[str, dict[str, int]] = {}
    for item in result.items:
        counts = by_family.setdefault(item.family, {"ids": 0})
        counts["ids"] += 1
        counts[item.outcome.value] = counts.get(item.outcome.value, 0) + 1
    totals["families"] = by_family
    return {
        "schema": SCHEMA_VERSION,
        # The same document is `archiver run --json`'s, whose documents all say this.
        "command": "run",
        "archiver_version": __version__,
        "exit_status": exit_status,
        "fatal_error": None,
        "started_at": iso_utc(result.started_at) if result.started_at else None,
        "finished_at": iso_utc(now),
        "duration_s": round(result.duration, 3),
        "interrupted_by": signal,
        "storage": result.storage,
        "manifest": result.manifest,
        # "2/4" when the run archived one shard (--shard), else null.
        "shard": result.shard,
        # The run's API budget (requests/s): for a shard, its 1/N share of
        # api.requests_per_second; null when there is no cap.
        "api_requests_per_second": result.api_requests_per_second,
        "lease_lost": result.lease_lost,
        # The API did not answer: polling stopped, unfinished ids pending (exit 69).
        "api_unavailable": result.api_unavailable,
        "totals": totals,
        "items": (_item(i, now) for i in result.items) if lazy_items
        else [_item(i, now) for i in result.items],
    }


def _item(item: ItemResult, now: float) -> dict[str, Any]:
    # An expiry no calendar can show is unknown (null), not a reason to lose the report.
    expires = iso_utc(item.expires_at)
    return {
        "id": item.id,
        "label": item.label,
        "family": item.family,
        "outcome": item.outcome.value,
        "api_status": item.status,
        "polls": item.polls,
        "duration_s": round(item.duration, 3),
        "expires_at": expires,
        "past_expiry": expires is not None and item.expires_at is not None
        and item.expires_at < now,
        "files": [f.to_json() for f in item.files],
        "error": None if item.error is None else {
            "kind": item.error_kind, "code": item.error_code, "message": item.error},
    }


def write_report(path: Path | OutputFile, report: dict[str, Any]) -> None:
    """Write atomically (see :class:`OutputFile`): a reader never sees half a report."""
    output = path if isinstance(path, OutputFile) else OutputFile(path)
    output.write_chunks(document_chunks(report))


def document_text(document: dict[str, Any]) -> str:
    """A report or ``--json`` document as text: indented, except that a last key
    ``items`` holding a list has one item per line, newline at the end.

    One line per item: a report of 100,000 ids reads with grep as well as with jq, and
    the items are encoded by the json module's C encoder (indenting is the pure-Python
    one: ~4 x the CPU, ~0.1 s per 10,000 items).
    """
    return "".join(document_chunks(document))


def document_chunks(document: dict[str, Any]) -> Iterator[str]:
    """:func:`document_text` in pieces (the head, then one per item), so that a big
    report is written item by item instead of held whole as one string. ``items`` may
    also be an iterator (:func:`build_report`'s *lazy_items*): each item is encoded as
    it comes."""
    items = document.get("items")
    if list(document)[-1:] != ["items"] or not isinstance(items, list | Iterator):
        yield json_text(document, indent=2) + "\n"
        return
    it = iter(items)
    first = next(it, None)
    rest = {k: v for k, v in document.items() if k != "items"}
    if first is None:  # no items: the plain indented form, "items": []
        yield json_text({**rest, "items": []}, indent=2) + "\n"
        return
    # The indented header without its closing brace, then the items.
    head = json_text(rest, indent=2)[:-2] + ",\n" if rest else "{\n"
    yield f'{head}  "items": [\n    {json_text(first)}'
    for item in it:
        yield f",\n    {json_text(item)}"
    yield "\n  ]\n}\n"


_RAW_IN_JSON = re.compile("[\x7f-\x9f]")


def json_text(value: Any, *, indent: int | None = None) -> str:
    """``json.dumps`` that also escapes DEL and C1 characters (as ``\\u009b``).

    JSON escapes only C0 characters; a C1 one (U+009B is a one-byte CSI) left raw would
    still drive a terminal that shows the file. Decoded, the text is exactly the same.
    """
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    return _RAW_IN_JSON.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


#: ``--report -``, ``--metrics-file -``: standard output.
STDOUT = "-"


class OutputFile:
    """Where a report or a metrics file goes: resolved and checked when created (before
    the run), written by :meth:`write` (after it). Raises OSError if it cannot be.

    By what *path* is:

    - ``-``, or the very pipe or file standard output is (``/dev/stdout``,
      ``/proc/self/fd/1``): standard output (:attr:`is_stdout`: the caller keeps its
      own text off it);
    - an existing FIFO or character device (a pipe, a terminal, ``/dev/null``): opened
      now and written straight into - a device cannot be renamed onto, and a FIFO's
      reader would see the end of the stream if a check opened and closed it. A FIFO
      nobody reads fails at once (ENXIO), it does not hang the run;
    - a symbolic link: its target, resolved now; the link stays a link. A link to
      nothing (dangling) gets its target created, as a shell's ``>`` would;
    - anything else: a regular file, written atomically (a temporary file in the same
      folder, then a rename), checked now by creating the folder and a temporary file.

    Block devices, sockets and directories are refused.
    """

    def __init__(self, path: Path | str, *, probe: bool = True) -> None:
        """*probe*: check now that a regular file's folder takes a temporary file."""
        self.path = Path(path)
        self.is_stdout = str(path) == STDOUT
        #: The regular file written atomically (a link's target), or None for a stream.
        self.target: Path | None = None
        self._fd: int | None = None
        if self.is_stdout:
            return
        try:
            st = os.stat(self.path)  # follows links, /proc/self/fd/N's too
        except FileNotFoundError:
            st = None  # nothing there yet, or a dangling link: a new regular file
        # A terminal or /dev/null may be stdout too, but nothing gets mixed up there.
        if st is not None and not stat.S_ISCHR(st.st_mode) and _same_file(st, sys.stdout):
            self.is_stdout = True
        elif st is not None and (stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)):
            self._fd = _open_stream(self.path)
        elif st is not None and stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        elif st is not None and not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file, FIFO or character device")
        else:
            # realpath, not resolve(): the same answer, and a dangling link is no error.
            self.target = Path(os.path.realpath(self.path))
            if probe:
                _probe_folder(self.target)

    def previous_text(self) -> str | None:
        """What the regular file holds now (None for a stream or no file)."""
        if self.target is None:
            return None
        try:
            return self.target.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def write(self, text: str) -> None:
        """Write *text* in full (atomically for a regular file), then close."""
        self.write_chunks((text,))

    def write_chunks(self, chunks: Iterable[str]) -> None:
        """Write the concatenation of *chunks* as :meth:`write` writes a text, without
        ever holding it whole (a regular file is still replaced atomically, once all
        of it is written and synced)."""
        if self.target is not None:
            _replace_atomically(self.target, chunks)
        elif self.is_stdout:
            _write_stdout(chunks)
        else:
            try:
                for data in _batched(chunks):
                    view = memoryview(data)
                    while view:
                        view = view[os.write(self._stream_fd(), view):]
            finally:
                self.close()

    def close(self) -> None:
        """Release the stream opened by the check, if any (idempotent)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _stream_fd(self) -> int:
        if self._fd is None:  # written twice: open again
            self._fd = _open_stream(self.path)
        return self._fd


def _same_file(st: os.stat_result, stream: object) -> bool:
    """Whether *st* is the file behind *stream* (standard output, if it has a file)."""
    try:
        theirs = os.fstat(stream.fileno())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (theirs.st_dev, theirs.st_ino)


def _open_stream(path: Path) -> int:
    """Open a FIFO or character device for writing without waiting for a reader."""
    # O_NONBLOCK: a FIFO with no reader fails with ENXIO instead of blocking forever.
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    # Then blocking writes: a full pipe waits for its reader rather than fail.
    os.set_blocking(fd, True)
    return fd


def _batched(chunks: Iterable[str], size: int = 1 << 16) -> Iterator[bytes]:
    """*chunks* encoded in UTF-8, joined into writes of about *size* bytes or more."""
    pending: list[bytes] = []
    held = 0
    for chunk in chunks:
        data = chunk.encode("utf-8")
        pending.append(data)
        held += len(data)
        if held >= size:
            yield b"".join(pending)
            pending, held = [], 0
    if pending:
        yield b"".join(pending)


def _write_stdout(chunks: Iterable[str]) -> None:
    try:
        for chunk in chunks:
            sys.stdout.write(chunk)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader is gone: say so once, and keep Python's exit from failing to
        # flush the rest again with a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        raise


def _probe_folder(path: Path) -> None:
    """Raise OSError unless a temporary file can be created next to *path*."""
    _make_folder(path.parent)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    os.unlink(temp)


def _make_folder(folder: Path) -> None:
    # mkdir alone would say "File exists" when an ancestor is a regular file.
    existing = next((p for p in (folder, *folder.parents) if p.exists()), folder)
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{existing} is not a directory")
    folder.mkdir(parents=True, exist_ok=True)


def write_atomic_text(path: Path, text: str) -> None:
    """Write *text* to *path* as :class:`OutputFile` does: a regular file (a link's
    target, never the link) is replaced atomically; a FIFO or character device is
    written straight into."""
    OutputFile(path, probe=False).write(text)


def _replace_atomically(path: Path, chunks: Iterable[str]) -> None:
    """Temporary file in *path*'s folder (*chunks* written in turn), fsync, rename onto
    *path*."""
    _make_folder(path.parent)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
