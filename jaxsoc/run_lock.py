"""One training process per run folder: an advisory lock a run holds while it trains.

Two processes training in one folder (a `--resume` started while the run still trains, two
starts of the same `--name`) interleave their `metrics.jsonl` lines and prune each other's
checkpoints: the second then reads a checkpoint the first has just deleted and calls it damaged.
`acquire` takes an exclusive `flock` on `<run>/.training.lock` (the file names the holder's pid)
or refuses in one line; the kernel drops the lock when its process exits, however it exits, so a
crashed or killed run never leaves its folder locked. In a multi-process group only process 0
takes it (it alone writes the logs; every process checkpoints, as one orbax group).
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

from jaxsoc.config import ConfigError

LOCK_NAME = ".training.lock"

try:  # POSIX; elsewhere runs are not locked (nothing refuses a second process there)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


class RunLock:
    """A held lock on one run folder (`acquire`); `release` once the run stops."""

    def __init__(self, path: Path, fd: int | None):
        self.path, self._fd = path, fd

    def release(self) -> None:
        """Removes the lock file and drops the lock (a second call does nothing)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still held: no other process holds this file
        finally:
            os.close(self._fd)
            self._fd = None


def acquire(run_dir: str | os.PathLike) -> RunLock:
    """The lock of the existing folder `run_dir`; ConfigError naming the holder when another
    process trains there. A folder this process cannot write to, or whose filesystem has no
    `flock` (some network mounts), is not locked: the run goes on as before the lock existed."""
    path = Path(run_dir) / LOCK_NAME
    if fcntl is None:  # pragma: no cover
        return RunLock(path, None)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                return RunLock(path, None)
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise ConfigError(f"{run_dir} is being trained by another process (pid {holder}): wait for it to "
                                  "stop (or stop it) before resuming or replacing this run") from None
            path.unlink(missing_ok=True)  # no flock here (ENOLCK, EOPNOTSUPP, ...): nothing to hold
            return RunLock(path, None)
        # A holder removes the file as it releases: the lock just taken may be on that removed
        # file while a new one stands at the path. Only the file at the path counts.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return RunLock(path, fd)


def check_free(run_dir: str | os.PathLike) -> None:
    """ConfigError when another process trains in the existing folder `run_dir` (`acquire`)."""
    acquire(run_dir).release()
