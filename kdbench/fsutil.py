"""Atomic file writes: a reader sees the old file or the new one, never a partial one.

A write goes to `.kdbench-tmp-<pid>-*` in the target's folder, is fsynced, then renamed
over the target. A process killed mid-write leaves its temporary file behind; the pid
in the name lets the next run remove it safely (`clean_stale_tmp`) without touching
the temporary files of a writer that is still alive.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Iterator

TMP_PREFIX = ".kdbench-tmp-"
#: A temporary file whose writer cannot be identified counts as stale after this long.
UNKNOWN_WRITER_STALE_S = 3600.0

_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path in `path`'s folder; on success fsync it and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp_path, path)
        with contextlib.suppress(OSError):  # make the rename itself durable
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _writer_alive(name: str) -> bool | None:
    """Whether the process named in a temporary file's name still runs (None: unknown)."""
    pid_text = name[len(TMP_PREFIX):].split("-", 1)[0]
    if not pid_text.isdigit():
        return None
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clean_stale_tmp(root: Path) -> list[Path]:
    """Remove temporary files under `root` left by writers that died; return them.

    A file whose writer is alive is left alone (it may be another run writing into the
    same folder); one whose writer cannot be identified is removed once it is an hour old.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    removed = []
    now = time.time()
    for f in root.rglob(f"{TMP_PREFIX}*"):
        if not f.is_file() or f.is_symlink():
            continue
        alive = _writer_alive(f.name)
        try:
            if alive is None and now - f.stat().st_mtime < UNKNOWN_WRITER_STALE_S:
                continue
            if alive:
                continue
            f.unlink()
        except OSError:
            continue
        removed.append(f)
    return removed


def writable_dir_problem(path: Path) -> str | None:
    """Why files could not be written in folder `path`, or None when they can.

    Nothing is left behind: the folder is not created, and the probe (a temporary
    folder in the nearest existing ancestor) is removed at once.
    """
    path = existing = Path(path)
    try:
        if path.exists() and not path.is_dir():
            return "it is a file, not a folder"
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            return f"{existing} is a file, not a folder"
        probe = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=existing)
        os.rmdir(probe)
    except OSError as exc:
        return f"cannot create files in {existing} ({exc.strerror or exc})"
    return None
