"""Crash-safe writes. Every file and folder prag writes goes to a temporary name unique to the writer (process
and thread), is fsynced, then renamed into place, so a reader sees the old version or the new one, never half of
one, and two writers never share a temporary file. `remove_stale` clears what a killed writer left behind.
"""
from __future__ import annotations

import os
import re
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_TMP = re.compile(r"\.(?:tmp|old)(\d+)(?:-\d+)?$")


def _sibling(path: Path, kind: str) -> Path:
    """A hidden sibling of `path` owned by this process and thread: .NAME.tmpPID-TID (or .old...)."""
    return path.with_name(f".{path.name}.{kind}{os.getpid()}-{threading.get_ident()}")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary path to write the file at `path` through (for writers that take a path); when the block ends,
    the file is fsynced and renamed into place. If the block raises, nothing at `path` changes."""
    path = Path(path)
    tmp = _sibling(path, "tmp")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes | str) -> None:
    """Replace the file at `path` with `data` (str is written as UTF-8), atomically and durably."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Build a folder in a temporary sibling (yielded), then swap it in for `path` at once. Files written inside
    are fsynced before the swap; if the block raises, nothing at `path` changes."""
    path = Path(path)
    tmp = _sibling(path, "tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        fsync_dir(tmp)
        trash = None
        if path.exists():  # a folder cannot be renamed over a non-empty one: move the old one aside first
            trash = _sibling(path, "old")
            os.replace(path, trash)
        try:
            os.replace(tmp, path)
        except BaseException:
            if trash is not None:
                os.replace(trash, path)
            raise
        fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(folder: Path) -> None:
    """Delete the temporary files and folders in `folder` whose writer process is gone (a live one may still be
    writing). They are never read: only a rename publishes."""
    if not Path(folder).is_dir():
        return
    for p in Path(folder).glob(".*"):
        m = _TMP.search(p.name)
        if m and not _alive(int(m.group(1))):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
