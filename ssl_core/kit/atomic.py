"""Write files so that a reader (or a crash) never sees half of one.

A write that fails for the machine's reasons (disk full, quota, file-size limit, an output
folder that is a file) raises `PathError` naming the file, and leaves neither a partial
file nor the temporary one; a file already at the path is kept as it was.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from ssl_core.errors import PathError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: OSErrors of a write that are the machine's state (space, quota, size limit), not a bug
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}
_WRITE_HINT = ("free space there (or raise the file-size limit, `ulimit -f`), or write "
               "somewhere else (--output, --run-dir, SSLC_CACHE_DIR)")


def _parent_that_is_a_file(target: Path) -> Path | None:
    for parent in reversed(target.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def check_output_path(path: str | os.PathLike[str], option: str) -> None:
    """Refuse, before any work, an output path that cannot be written because a folder on
    its way is a file (`-o file.yaml/x.pth`) or that is itself a folder."""
    target = Path(path)
    blocker = _parent_that_is_a_file(target)
    if blocker is not None:
        raise PathError(f"{option} {target}: {blocker} is a file, not a folder",
                        f"give {option} a path inside a folder (or a new one)")
    if target.is_dir():
        raise PathError(f"{option} {target} is a folder", f"give {option} a file name")


def _make_parent(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = _parent_that_is_a_file(target)
        raise PathError(f"cannot write {target}: {blocker or target.parent} is a file, not a folder",
                        "choose an output path inside a folder (or a new one)") from None


def _disk_error(exc: BaseException) -> OSError | None:
    """The OSError of the disk behind `exc` (itself, or what torch's RuntimeError was raised
    while handling: torch.save writing to a file object chains it), or None for a bug."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno in _WRITE_ERRNOS:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _write_failure(exc: BaseException) -> str | None:
    """Why the write failed when it is the machine's doing (None when it is a bug)."""
    disk = _disk_error(exc)
    if disk is not None:
        return disk.strerror or str(disk)
    text = str(exc)
    if isinstance(exc, RuntimeError) and ("PytorchStreamWriter failed" in text
                                          or "file write failed" in text):
        return text.splitlines()[0]
    return None


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    target = Path(path)
    _make_parent(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; results are for sharing
        os.replace(tmp_path, target)
    except (OSError, RuntimeError) as exc:
        reason = _write_failure(exc)
        if reason is None:
            raise
        kept = " (the file already there is unchanged)" if target.exists() else ""
        raise PathError(f"cannot write {target}: {reason}{kept}", _WRITE_HINT) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _write(path: str | os.PathLike[str], mode: str, writer: Callable[[IO[Any]], object]) -> None:
    with atomic_path(path) as tmp, open(tmp, mode) as fh:
        writer(fh)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    _write(path, "w", lambda fh: fh.write(text))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    _write(path, "w", lambda fh: fh.write(json.dumps(obj, indent=2, default=str) + "\n"))


def read_json(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The JSON object `write_json` left at `path`, or None when there is none to trust:
    absent, unreadable, torn (a kill before the atomic rename cannot tear it, another
    writer can) or not an object. For results and caches, which are recomputed then."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def torch_save(path: str | os.PathLike[str], obj: Any) -> None:
    import torch  # here, not at the top: the CLI imports this module and must start fast

    # through a Python file object, so a failed write's OSError (EFBIG, ENOSPC) is chained
    # to torch's RuntimeError instead of lost in its C++ stream
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)
