"""What an earlier attempt left of a file on local disk: :func:`read_partial` reads it
back (size, validator, the hash of its bytes), :func:`resumable` says whether such bytes
may be kept at all. Written by :class:`~.sink.LocalFileSink`."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..base import Partial
from ..names import sidecar_name, temp_name
from . import fs

#: A sidecar is a few hundred bytes; anything much larger was not written by us.
_SIDECAR_MAX = 64 * 1024


def read_partial(folder: Path, name: str) -> Partial | None:
    """The resumable state of *name* in *folder*, or None (nothing usable is there).

    Raises :class:`StorageError` if the item folder is a link. A partial or sidecar
    that is a link is ignored (the new attempt replaces it), never read through.
    """
    with fs.folder(folder) as dir_fd:
        if dir_fd is None:
            return None
        try:
            with os.fdopen(fs.open_existing(dir_fd, sidecar_name(name), os.O_RDONLY,
                                          single_link=True), "rb") as f:
                meta = json.loads(f.read(_SIDECAR_MAX))
            temp = os.fdopen(fs.open_existing(dir_fd, temp_name(name), os.O_RDONLY,
                                            single_link=True), "rb")
        except (OSError, ValueError):
            return None
    with temp:
        try:
            size = os.fstat(temp.fileno()).st_size
            if not isinstance(meta, dict) or not resumable(meta):
                return None  # e.g. kept by an earlier version without a validator
            on_disk = size
            prefix = meta.get("prefix")
            if prefix is not None:
                # Written by position: only the prefix marked checked counts.
                if not isinstance(prefix, int) or isinstance(prefix, bool) or prefix < 0:
                    return None
                size = min(size, prefix)
            if size == 0:
                return None
            hasher = hashlib.sha256()
            head = b""
            left = size
            while left and (block := temp.read(min(fs.HASH_BLOCK, left))):
                if not head:
                    head = block[:4096]
                hasher.update(block)
                left -= len(block)
        except OSError:
            return None
    complete = bool(meta.get("complete")) and meta.get("size") == size \
        and meta.get("sha256") == hasher.hexdigest()
    if not (complete or meta.get("validator")):
        return None  # a "complete" that is not: nothing could guard its resume
    return Partial(name=name, size=size, validator=meta.get("validator"),
                   source=str(meta.get("source", "")), hasher=hasher, head=head,
                   complete=complete and on_disk == size, cut=on_disk > size)


def resumable(meta: dict[str, Any]) -> bool:
    """Whether bytes a sidecar describes may be kept for a later attempt: only if their
    resume can be guarded - a validator to send as If-Range - or needs no request at all
    (the whole file, checked). Without either, a Range request could splice two
    versions of the file: such bytes are dropped (:meth:`LocalFileSink.abort`) and never
    resumed (:func:`read_partial`)."""
    validator = meta.get("validator")
    return (isinstance(validator, str) and validator != "") or meta.get("complete") is True
