"""trainer/io.py: writable-output checks, leftovers, and the directory lock between processes."""

import errno
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from trainer.errors import DcignError
from trainer.io import DirectoryLock, check_writable_dir, remove_stale

ROOT = Path(__file__).resolve().parents[1]

def test_a_second_process_is_refused_and_a_stale_lock_taken_over(tmp_path, hold_lock):
    target = tmp_path / "run"
    holder = hold_lock(target)
    try:
        with pytest.raises(DcignError) as e:
            with DirectoryLock(target):
                pass
        assert str(e.value) == (f"{target} is being written by another process "
                                f"(pid {holder.pid})")
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding it: its lock file stays behind
        holder.wait()
    assert (tmp_path / ".run.lock").exists()
    with DirectoryLock(target) as lock:  # the kernel dropped the dead process's lock
        assert (tmp_path / ".run.lock").read_text().strip() == str(os.getpid())
        with pytest.raises(DcignError):  # and it excludes even another lock of this process
            DirectoryLock(target).__enter__()
    assert not lock.file.exists()


def test_wait_takes_the_lock_once_it_is_released(tmp_path, hold_lock):
    holder = hold_lock(tmp_path / "grid")
    killer = subprocess.Popen([sys.executable, "-c",
                               f"import os, time; time.sleep(1); os.kill({holder.pid}, 9)"])
    start = time.perf_counter()
    with DirectoryLock(tmp_path / "grid", wait=True):
        waited = time.perf_counter() - start
    killer.wait()
    holder.wait()
    assert waited > 0.5


def test_check_writable_dir(tmp_path):
    assert check_writable_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # checked, not created: bad input leaves nothing
    afile = tmp_path / "somefile"
    afile.write_text("x")
    with pytest.raises(DcignError, match="is a file, not a folder"):
        check_writable_dir(afile)
    with pytest.raises(DcignError, match=r"cannot write to --out .*somefile/sub"):
        check_writable_dir(afile / "sub")
    assert afile.read_text() == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["somefile"]  # the probe file is gone


def test_check_writable_dir_on_a_read_only_file_system(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(DcignError) as e:
        check_writable_dir(tmp_path, "--grid-dir")
    assert str(e.value) == f"cannot write to --grid-dir {tmp_path} (read-only file system)"


def test_remove_stale(tmp_path):
    (tmp_path / ".x.123.partial").mkdir()
    (tmp_path / ".x.123.partial" / "images.npy").write_bytes(b"0")
    (tmp_path / ".checkpoint-9.tmp").write_text("")
    (tmp_path / "keep").mkdir()
    removed = remove_stale(tmp_path, ".x.*.partial", ".checkpoint-*.tmp")
    assert sorted(p.name for p in removed) == [".checkpoint-9.tmp", ".x.123.partial"]
    assert [p.name for p in tmp_path.iterdir()] == ["keep"]


def test_orphaned_staging_folders_go_and_live_ones_stay(tmp_path):
    from trainer.io import owned_temp_dir, remove_orphaned_temp_dirs

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs, as a killed report's
    orphan = tmp_path / f".report.{dead.pid}.x1y2.tmp"
    orphan.mkdir()
    (orphan / "index.html").write_text("half a page")
    live = owned_temp_dir(tmp_path, "report")  # this process's: another report still writing
    other = tmp_path / ".reports.1.tmp"  # another name's
    other.mkdir()
    remove_orphaned_temp_dirs(tmp_path, "report")
    assert not orphan.exists() and live.is_dir() and other.is_dir()
    assert live.name.startswith(f".report.{os.getpid()}.")
