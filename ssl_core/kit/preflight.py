"""Checks made before the first long stage, so a bad path fails in a second, not after training.

`ensure_writable_dir` is for places sslc cannot work without (the run directory): it
raises a `PathError` naming the path and what is wrong with it. `cache_usable` is for
caches: a cache that cannot be written is not worth losing finished work over, so it
warns and returns False, and the caller goes on without caching.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from ssl_core.errors import PathError, SslcError


def _file_in_the_way(path: Path) -> Path | None:
    """The first existing component of `path` (itself or an ancestor) that is not a directory."""
    for part in (path, *path.parents):
        try:
            if part.is_dir():
                return None
            if part.exists():
                return part
        except OSError:
            return None
    return None


def _reason(exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    return exc.strerror or str(exc)


def ensure_writable_dir(path: str | os.PathLike[str], what: str, *, option: str | None = None) -> Path:
    """Create `path` if needed and prove a file can be written in it; returns the path.

    `what` names the directory in messages ("run directory"); `option` is the command-line
    option that chose it, named in the hint."""
    directory = Path(path).expanduser()
    choose = f"choose another {option}" if option else "choose another directory"
    blocker = _file_in_the_way(directory)
    if blocker is not None:
        raise PathError(f"{what} {directory}: {blocker} is a file, not a directory",
                        f"{choose}, or move the file {blocker} away")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PathError(f"cannot create {what} {directory}: {_reason(exc)}",
                        f"{choose}, or create it with write permission for this user") from None
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".sslc-write-test-"):
            pass
    except OSError as exc:
        raise PathError(f"{what} {directory} is not writable: {_reason(exc)}",
                        f"{choose}, or give this user write permission there") from None
    return directory


def cache_usable(path: str | os.PathLike[str], what: str = "cache") -> bool:
    """True when `path` is (or can be made) a writable directory; otherwise warn and return
    False so the caller continues without caching."""
    try:
        ensure_writable_dir(path, what)
    except SslcError as exc:
        from ssl_core.kit.progress import console

        console.print(f"[yellow]warning:[/yellow] {exc.message}; continuing without the {what}",
                      highlight=False, markup=True, soft_wrap=True)
        return False
    return True
