"""jaxsoc.run_lock: one training process per run folder (the engine's use: tests/test_engine.py)."""
from __future__ import annotations

import errno
import os

import pytest

from jaxsoc import run_lock
from jaxsoc.config import ConfigError


def test_a_held_folder_is_refused_naming_the_holder_and_free_again_after_release(tmp_path):
    held = run_lock.acquire(tmp_path)
    assert (tmp_path / run_lock.LOCK_NAME).read_text() == str(os.getpid())
    with pytest.raises(ConfigError, match=rf"^{tmp_path} is being trained by another process \(pid {os.getpid()}\)"):
        run_lock.acquire(tmp_path)  # flock is per open file: a second open conflicts, in one process too
    with pytest.raises(ConfigError):
        run_lock.check_free(tmp_path)
    held.release()
    held.release()  # a second release does nothing
    assert list(tmp_path.iterdir()) == []  # the file goes with the lock
    run_lock.check_free(tmp_path)
    assert list(tmp_path.iterdir()) == []  # a check leaves nothing either


def test_a_stale_lock_file_left_by_a_killed_run_locks_nothing(tmp_path):
    (tmp_path / run_lock.LOCK_NAME).write_text("12345")  # its process is gone: the kernel dropped the lock
    run_lock.acquire(tmp_path).release()


def test_a_filesystem_without_flock_trains_unlocked_and_leaves_no_file(tmp_path, monkeypatch):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")  # NFS without lockd, some parallel filesystems

    monkeypatch.setattr(run_lock.fcntl, "flock", no_locks)
    held = run_lock.acquire(tmp_path)
    held.release()
    assert list(tmp_path.iterdir()) == []
