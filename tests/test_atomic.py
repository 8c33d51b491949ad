"""Crash-safe writes: atomic_write, atomic_file, atomic_dir, remove_stale."""
import os
import subprocess
import sys
import threading

import pytest

from prag.atomic import atomic_dir, atomic_file, atomic_write, remove_stale


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "f.json"
    atomic_write(p, "one")
    atomic_write(p, b"two")
    assert p.read_bytes() == b"two" and os.listdir(tmp_path) == ["f.json"]


def test_concurrent_writers_never_share_a_temporary_file(tmp_path):
    p = tmp_path / "f.txt"
    payloads = [str(i) * 100_000 for i in range(8)]
    threads = [threading.Thread(target=lambda s=s: [atomic_write(p, s) for _ in range(20)]) for s in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert p.read_text() in payloads  # whole, one writer's bytes
    assert os.listdir(tmp_path) == ["f.txt"]


def test_a_failed_write_changes_nothing(tmp_path):
    p = tmp_path / "f.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(p) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


def test_atomic_dir_swaps_a_whole_folder_in(tmp_path):
    d = tmp_path / "d"
    with atomic_dir(d) as tmp:
        (tmp / "a").write_text("1")
    with atomic_dir(d) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(os.listdir(d)) == ["b"] and os.listdir(tmp_path) == ["d"]
    with pytest.raises(RuntimeError), atomic_dir(d) as tmp:
        (tmp / "c").write_text("3")
        raise RuntimeError("crash")
    assert sorted(os.listdir(d)) == ["b"] and os.listdir(tmp_path) == ["d"]


def test_remove_stale_keeps_live_writers_files(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    (tmp_path / f".x.tmp{dead}-1").mkdir()
    (tmp_path / f".y.old{dead}").write_text("")
    (tmp_path / f".z.tmp{os.getpid()}-1").write_text("")  # this process: alive
    (tmp_path / "keep").write_text("")
    remove_stale(tmp_path)
    assert sorted(os.listdir(tmp_path)) == [f".z.tmp{os.getpid()}-1", "keep"]
