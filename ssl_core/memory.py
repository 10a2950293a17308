"""Refuse allocations that cannot fit before making them, instead of being OOM-killed."""

from __future__ import annotations

import os

from ssl_core.errors import SslcError


def available_bytes() -> int | None:
    """Memory the kernel says can still be allocated (MemAvailable), None when unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def ensure_fits(nbytes: int, what: str, hint: str) -> None:
    """Raise an SslcError naming `what` when `nbytes` exceeds the available memory.

    `what` names the allocation and the parameter that sizes it (for example
    "the negatives queue (objective.queue_size=100000000)"); `hint` says how to shrink it.
    """
    free = available_bytes()
    if free is not None and nbytes > free:
        raise SslcError(f"{what} needs {_gib(nbytes)}, but only {_gib(free)} of memory is "
                        "available", hint)
