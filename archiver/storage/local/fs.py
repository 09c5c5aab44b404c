"""Safe file-system access below an archive root: nothing there is trusted.

Whoever can write into the root could plant symbolic links where a run writes - at
``<root>/<id>``, at ``.video.mp4.part``, its sidecar, ``.info.json.tmp`` - to make the
run write, truncate or read files elsewhere. So an item folder is opened with
``O_NOFOLLOW`` (:func:`folder`: one that is a link fails its item, and nothing is done
through it) and every file operation goes through that folder's descriptor (``openat``,
``renameat``, ``unlinkat``). A file made fresh is unlinked first, then created with
``O_CREAT | O_EXCL | O_NOFOLLOW`` (:func:`create_fresh`); an existing one (a partial to
resume, a sidecar, a file to verify) is opened with ``O_NOFOLLOW`` and must be a regular
file (:func:`open_existing`). Renames onto a final name replace whatever entry has that
name, a planted link included, never its target. The root itself may be a link: that is
the user's choice.

Everything here blocks: callers run it in a worker thread.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from ..._os import os_reason
from ...errors import StorageError
from ..names import is_temporary, small_temp_name

HASH_BLOCK = 1024 * 1024

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted under a file's name must fail the fstat check, not hang open().
_EXISTING_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@contextlib.contextmanager
def folder(path: Path, *, create: bool = False) -> Iterator[int | None]:
    """A descriptor of the item folder *path*, never through a symbolic link; None if absent.

    With *create*, the folder (and the root above it) is made if missing. Raises
    :class:`StorageError` naming the path when ``<root>/<id>`` is a link or not a folder.
    """
    fd = _open_folder(path)
    if fd is None and create:
        # Made only when missing, the root only when it is missing too: three failing
        # mkdir calls per item folder, each taking the parent's lock, showed in the
        # small-items profile.
        try:
            os.mkdir(path)  # mkdir never follows a link at the final name
        except FileExistsError:
            pass
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)  # the root: may be a link
            with contextlib.suppress(FileExistsError):
                os.mkdir(path)
        fd = _open_folder(path)
        if fd is None:
            raise FileNotFoundError(errno.ENOENT, "the item folder vanished", str(path))
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


def _open_folder(path: Path) -> int | None:
    try:
        return os.open(path, DIR_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
        kind = "a symbolic link" if path.is_symlink() else "not a directory"
        raise StorageError(f"item folder {path} is {kind}: refusing to use it") from None


@contextlib.contextmanager
def root_folder(path: Path) -> Iterator[int | None]:
    """A descriptor of the archive root *path* (None if absent). Unlike an item folder,
    the root may be a symbolic link: that is the user's choice."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = None
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


def create_fresh(dir_fd: int, name: str) -> int:
    """A new empty file *name*: whatever had the name (a stale temporary, a planted link)
    is unlinked first, never written through.

    The exclusive create is tried first and the name unlinked only if it is taken: the
    usual case (nothing there) then costs one system call, not a failing unlink too."""
    try:
        return os.open(name, _CREATE_FLAGS, 0o644, dir_fd=dir_fd)
    except FileExistsError:
        pass
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)
    return os.open(name, _CREATE_FLAGS, 0o644, dir_fd=dir_fd)


def write_fresh(dir_fd: int, name: str, data: bytes, *, fsync: bool = False) -> None:
    with os.fdopen(create_fresh(dir_fd, name), "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def open_existing(dir_fd: int, name: str, flags: int, *, single_link: bool = False) -> int:
    """Open *name* if it is a regular file - not a link, FIFO or folder - else OSError.

    With *single_link*, a file with other hard links is refused too: appending to it
    would write to whatever else it is.
    """
    if "/" in name or name in ("", ".", ".."):
        raise OSError(errno.EINVAL, "not a file name")  # a name from archive.json
    fd = os.open(name, flags | _EXISTING_FLAGS, dir_fd=dir_fd)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if single_link and info.st_nlink != 1:
            raise OSError(errno.EMLINK, "has other hard links")
    except BaseException:
        os.close(fd)
        raise
    return fd


def regular_size(dir_fd: int, name: str) -> int:
    """The size of *name* if it is a regular file, else 0 (a link is not followed)."""
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return 0
    return info.st_size if stat.S_ISREG(info.st_mode) else 0


def is_regular(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def read_small(path: Path, name: str) -> bytes | None:
    """The bytes of the regular file *name* in the folder *path*, or None (absent, a
    link or not a file; the folder absent or a link)."""
    try:
        with folder(path) as dir_fd:
            if dir_fd is None:
                return None
            with os.fdopen(open_existing(dir_fd, name, os.O_RDONLY), "rb") as f:
                return f.read()
    except (OSError, StorageError):
        return None


def sha256_file(path: Path, name: str) -> str:
    """The SHA-256 of the regular file *name* in the folder *path* (OSError otherwise)."""
    hasher = hashlib.sha256()
    with folder(path) as dir_fd:
        if dir_fd is None:
            raise FileNotFoundError(errno.ENOENT, "no item folder", str(path))
        with os.fdopen(open_existing(dir_fd, name, os.O_RDONLY), "rb") as f:
            while block := f.read(HASH_BLOCK):
                hasher.update(block)
    return hasher.hexdigest()


def remove_temporaries(dir_fd: int) -> None:
    """Unlink every temporary in the folder: a planted link goes, not its target; a
    folder named like one is no temporary of ours and stays."""
    for name in os.listdir(dir_fd):
        if is_temporary(name):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                os.unlink(name, dir_fd=dir_fd)


def write_atomic(dir_fd: int, name: str, data: bytes, *, replace: bool = True) -> bool:
    """Temp file, fsync, rename (or hard-link, keeping an existing regular *name*: then
    False). The caller fsyncs the folder."""
    temp = small_temp_name(name)
    try:
        write_fresh(dir_fd, temp, data, fsync=True)
        if replace:
            os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            return True
        linked = _link_unless_regular(dir_fd, temp, name)
        os.unlink(temp, dir_fd=dir_fd)
        return linked
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        raise


def _link_unless_regular(dir_fd: int, temp: str, name: str) -> bool:
    """Hard-link *temp* as *name*: True. A regular file already there stands (another
    run's record): False. A link or special file planted there is replaced."""
    try:
        os.link(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except FileExistsError:
        if is_regular(dir_fd, name):
            return False
        os.unlink(name, dir_fd=dir_fd)
        os.link(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    return True


def reason(exc: BaseException) -> str:
    """*exc* in words for a message: a link is said to be one."""
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        return "a symbolic link (not followed)"
    if isinstance(exc, StorageError):
        return str(exc)
    return os_reason(exc)


def write_error(path: Path, exc: OSError) -> StorageError:
    """The error an item fails with when writing *path* failed."""
    if exc.errno == errno.ENOSPC:
        return StorageError(f"no space left on device writing {path}")
    return StorageError(f"cannot write {path}: {reason(exc)}")
