"""Files and folders written safely: atomic writes, writable-output checks, directory locks.

Atomic writes go to a temporary file in the same directory, are fsynced, then renamed: a reader
sees either the old file or the complete new one, never half a file. A folder that a process
writes for a long time (a run, a data set being rendered) is held with :class:`DirectoryLock`, so
that a second process is refused instead of silently overwriting the first one's work.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator

from trainer.errors import DcignError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The permission bits a plain open()/mkdir() would give (mkstemp/mkdtemp use 0600/0700)."""
    return (0o777 if directory else 0o666) & ~_umask()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(fd, default_mode())
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# -- output folders --------------------------------------------------------------------------------

def check_writable_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """Make sure the folder ``path`` can be created (if missing) and written, creating nothing.

    Called before long work so that an output that cannot be written fails at once, with one
    line, instead of after the work. A probe file is written and removed in ``path`` or, when it
    does not exist yet, in its nearest existing parent. Raises DcignError when ``path`` (or a
    parent) is a file, or the place is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DcignError(f"{what} {path} is a file, not a folder; choose another {what}")
    place = Path(os.path.abspath(path))
    while not place.exists():
        place = place.parent
    try:
        if not place.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{place} is a file")
        fd, probe = tempfile.mkstemp(prefix=".write-check.", suffix=".tmp", dir=place)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise DcignError(f"cannot write to {what} {path} ({_reason(e)})") from None
    return path


def remove_stale(folder: str | os.PathLike, *patterns: str) -> list[Path]:
    """Remove the leftovers matching ``patterns`` in ``folder`` (temporary folders or files a
    killed process left). Call it only while holding the lock that covers them."""
    removed = []
    for pattern in patterns:
        for p in sorted(Path(folder).glob(pattern)):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            removed.append(p)
    return removed


def owned_temp_dir(parent: str | os.PathLike, name: str, tag: str = "") -> Path:
    """A new folder ``.<name>.<pid>.<tag>XXXX.tmp`` in ``parent`` for staging ``name``, with the
    usual permissions: :func:`remove_orphaned_temp_dirs` knows it by the pid in its name."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.{os.getpid()}.{tag}", suffix=".tmp",
                                dir=parent))
    os.chmod(tmp, default_mode(directory=True))  # mkdtemp's 0700 would stick to the result
    return tmp


def remove_orphaned_temp_dirs(parent: str | os.PathLike, name: str) -> None:
    """Remove the staging folders of ``name`` in ``parent`` whose process no longer runs (killed
    while writing); those of live processes (two commands at once) are left alone."""
    for tmp in Path(parent).glob(f".{name}.*.tmp"):
        pid = tmp.name[len(name) + 2:].split(".", 1)[0]
        if pid.isdigit() and tmp.is_dir() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # somebody else's process
        return True
    return True


class DirectoryLock:
    """An exclusive lock on a folder for as long as one process writes it.

    The lock is an ``flock`` on the sibling file ``.<name>.lock``, which holds the owner's pid.
    The kernel drops an ``flock`` when its process ends, however it ends, so a lock file left by a
    killed process blocks no one: the next process takes it over. The folder itself need not
    exist yet (a data set is renamed into place when complete). A second process is refused with
    DcignError naming the owner's pid, or waits with ``wait=True``.
    """

    def __init__(self, path: str | os.PathLike, wait: bool = False):
        self.given = Path(path)  # as the user wrote it, for messages
        self.path = Path(os.path.abspath(path))
        self.file = self.path.parent / f".{self.path.name}.lock"
        self.wait = wait
        self._fd: int | None = None

    def __enter__(self) -> "DirectoryLock":
        check_writable_dir(self.given.parent, "the folder")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                fd = os.open(self.file, os.O_RDWR | os.O_CREAT, default_mode())
            except OSError as e:
                raise DcignError(f"cannot write to {self.given.parent} ({_reason(e)})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
            except BlockingIOError:
                owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise DcignError(f"{self.given} is being written by another process "
                                 f"(pid {owner})") from None
            # the previous owner may have removed the file between our open and our flock: then
            # we hold a lock on a file nobody else sees, and must try again on the new one
            try:
                if os.stat(self.file).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.file)
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def _reason(e: OSError) -> str:
    if e.errno == errno.EROFS:
        return "read-only file system"
    if e.errno == errno.ENOTDIR:
        return "a part of the path is a file"
    return e.strerror or type(e).__name__
