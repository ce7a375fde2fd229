"""Durable atomic file writes: every file tformer writes (models, trainer state, checkpoints,
tokenizer files, plots) goes through here, so that a crash or a power loss leaves either
the old file or the complete new one, never a name pointing at data that never reached
the disk.

The recipe (POSIX): write a temporary file in the same directory, fsync it, rename it over
the target, fsync the directory (the rename itself lives in the directory's data). Without
the first fsync the rename can reach the disk before the data does; without the second the
rename itself can be lost.

tempfile creates its files 0600 and its directories 0700, and that mode survives the rename:
both are given the mode an ordinary open()/mkdir() would (0666/0777 less the umask) before
the rename, so that a model written by one account can be read by another as the user's
umask allows."""
from __future__ import annotations

import errno
import os
import tempfile
import threading

_NO_DIRECTORY_FSYNC = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}
_TMP_PREFIX = ".tmp-"  # checkpoints prune names starting with this as debris of killed runs
_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where Linux says it (/proc/self/status,
    kernel 4.7+); elsewhere set and restored at once (under a lock)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def chmod_as_created(path, directory: bool = False) -> None:
    """Gives `path` the mode open() (0666) or mkdir() (0777) would have given it under the
    current umask: tempfile's 0600/0700 would otherwise survive the rename."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def make_temp_directory(prefix: str, dir) -> str:
    """tempfile.mkdtemp(prefix, dir) with the mode mkdir() gives under the umask (mkdtemp's is
    0700): for directories that are renamed into place (checkpoints)."""
    tmp = tempfile.mkdtemp(prefix=prefix, dir=dir)
    chmod_as_created(tmp, directory=True)
    return tmp


def fsync_file(path) -> None:
    """Forces the data of the file at `path` to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(path) -> None:
    """Forces the entries of directory `path` (creations, renames) to the disk. A no-op
    where directories cannot be opened (Windows, which has no such need)."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as e:
        # some network and FUSE filesystems cannot flush a directory: nothing more can be
        # done there, and refusing to save would lose more than it protects
        if e.errno not in _NO_DIRECTORY_FSYNC:
            raise
    finally:
        os.close(fd)


def replace_durably(src, dst) -> None:
    """os.replace(src, dst) whose result survives a power loss: `src` must already be on
    the disk (written by atomic_write, or fsynced); the directory of `dst` is fsynced."""
    os.replace(src, dst)
    fsync_directory(os.path.dirname(os.path.abspath(dst)))


def atomic_write(path, write) -> None:
    """Calls write(tmp) with a temporary path next to `path`, fsyncs what it wrote and
    renames it over `path` durably; on any error the temporary file is removed and `path`
    is left as it was."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=directory)
    os.close(fd)
    try:
        write(tmp)
        chmod_as_created(tmp)  # write() may have replaced the file: its mode is set afterwards
        fsync_file(tmp)
        replace_durably(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path, data: bytes) -> None:
    """Writes `data` to `path` with atomic_write."""
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, write)


__all__ = ["atomic_write", "atomic_write_bytes", "chmod_as_created", "current_umask", "fsync_directory", "fsync_file",
           "make_temp_directory", "replace_durably"]
