"""Exclusive locks on directories: one run per run directory, one renderer per world.

Two `sslc run` into one run directory would both "succeed" while overwriting each
other's results. `dir_lock(directory)` holds an exclusive `flock` on
`directory/.sslc.lock` and writes who holds it (pid, host, command, start time) into
that file, so a second holder gets a `LockedError` (exit 2) naming the first.

The kernel drops an `flock` when its process dies, however it dies (SIGKILL included),
so a lock left by a killed run is free: the next holder takes it over and says so.
Where `flock` is not available (Windows, some network file systems) the file's pid is
checked instead: a holder on this host whose pid is gone is stale and taken over.
Locks are re-entrant within one process, so a caller and a callee may both lock.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

from ssl_core.errors import LockedError, PathError
from ssl_core.kit.atomic import read_json

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".sslc.lock"
_held: dict[Path, list[int]] = {}  # lock file -> [fd, depth] for locks this process holds


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) a lock."""

    pid: int
    host: str
    command: str
    since: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} (since {self.since}): {self.command}"


def _me() -> Holder:
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
    return Holder(pid=os.getpid(), host=socket.gethostname(), command=command[:300],
                  since=time.strftime("%Y-%m-%d %H:%M:%S"))


def read_holder(lock_file: Path) -> Holder | None:
    """The holder recorded in a lock file, or None when it is empty or unreadable."""
    data = read_json(lock_file)
    try:
        return None if data is None else Holder(
            pid=int(data["pid"]), host=str(data["host"]), command=str(data.get("command", "?")),
            since=str(data.get("since", "?")))
    except (ValueError, KeyError, TypeError):
        return None


def _alive(holder: Holder) -> bool:
    """Whether the holder may still run: always True for another host (we cannot tell)."""
    if holder.host != socket.gethostname():
        return True
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _try_flock(fd: int) -> bool | None:
    """True when locked, False when another process holds it, None when flock is unsupported."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # ENOLCK, EOPNOTSUPP: a file system without flock
        return None
    return True


def _locked_error(what: str, lock_file: Path, holder: Holder | None, hint: str | None) -> LockedError:
    who = holder.describe() if holder else "another process (it has not written its details yet)"
    return LockedError(f"{what} is in use by {who}",
                       hint or f"wait for that process to finish or use another directory; if it is gone "
                               f"(e.g. it ran on another machine), delete {lock_file}")


def dir_lock(directory: str | os.PathLike[str], *, what: str = "directory", hint: str | None = None,
             wait_s: float = 0.0) -> AbstractContextManager[Holder | None]:
    """Hold an exclusive lock on `directory` (created if missing) for the block, through
    `directory/.sslc.lock`: `with dir_lock(run_dir, what="run directory"): ...`.

    Raises `LockedError` if another live process holds it after `wait_s` seconds. Yields
    the holder of a stale lock that was taken over (a killed run), else None."""
    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    return file_lock(directory / LOCK_NAME, what=f"{what} {directory}", hint=hint, wait_s=wait_s)


@contextmanager
def file_lock(lock_file: str | os.PathLike[str], *, what: str, hint: str | None = None,
              wait_s: float = 0.0, optional: bool = False) -> Iterator[Holder | None]:
    """Hold an exclusive lock through `lock_file` (its folder must exist); `what` names the
    locked thing in messages. For a directory that must stay untouched while it is written
    (a world being rendered), lock a sibling file: `file_lock(root.with_name(root.name +
    ".lock"), what=f"world {root}")`. With `optional`, a lock file that cannot be created
    (a read-only cache) means no lock rather than an error."""
    lock_file = Path(lock_file).expanduser().resolve()
    if lock_file in _held:
        _held[lock_file][1] += 1
        try:
            yield None
        finally:
            _held[lock_file][1] -= 1
        return
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if optional:
            yield None
            return
        raise PathError(f"cannot create the lock file {lock_file} for {what}: {exc.strerror or exc}",
                        "check the folder's permissions") from None
    try:
        deadline = time.monotonic() + wait_s
        while True:
            got = _try_flock(fd)
            previous = read_holder(lock_file)
            if got is None:  # no flock here: trust the pid in the file
                got = previous is None or previous.pid == os.getpid() or not _alive(previous)
            if got:
                break
            if time.monotonic() >= deadline:
                raise _locked_error(what, lock_file, previous, hint)
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        stale = previous if previous is not None and previous.pid != os.getpid() else None
        if stale is not None:
            from ssl_core.kit.progress import say

            say(f"[dim]{what}: taking over the lock left by {stale.describe()}, which is no "
                "longer running[/dim]", soft_wrap=True)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(asdict(_me())) + "\n").encode(), 0)
        _held[lock_file] = [fd, 1]
        try:
            yield stale
        finally:
            del _held[lock_file]
            os.ftruncate(fd, 0)  # an empty file means: free, released cleanly
    finally:
        os.close(fd)  # closing drops the flock


def world_lock(root: str | os.PathLike[str]) -> AbstractContextManager[Holder | None]:
    """One renderer per world: `with world_lock(world.root): world.prepare(...)`.

    The lock file sits beside the root (the root itself is the renderer's to write); a
    cache that cannot hold it (read-only, the world already rendered) is only read: no lock."""
    root = Path(root).expanduser()
    with suppress(OSError):
        root.parent.mkdir(parents=True, exist_ok=True)
    return file_lock(root.with_name(root.name + ".lock"), what=f"world {root}", optional=True,
                     hint="another sslc is rendering this world; wait for it to finish, then run again")
