"""Memory: refuse allocations that cannot fit before making them, instead of being
OOM-killed; and keep arrays within a byte budget (`BudgetedCache`)."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any, Generic, TypeVar

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


T = TypeVar("T")


def nbytes(value: Any) -> int:
    """Bytes held by a numpy array or a torch tensor."""
    size = getattr(value, "nbytes", None)
    return int(size) if size is not None else int(value.numel() * value.element_size())


class BudgetedCache(Generic[T]):
    """Arrays or tensors by key within `budget` bytes, least recently used out first; one
    larger than the whole budget is not kept. Thread-safe (DataLoader threads, probes)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._items: OrderedDict[str, T] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

    def reset_lock(self) -> None:
        """A new lock, for a forked child (the parent's may have been held at the fork)."""
        self._lock = threading.Lock()

    def get(self, key: str) -> T | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: T) -> None:
        size = nbytes(value)
        with self._lock:
            if size > self.budget or key in self._items:
                return
            self._items[key] = value
            self._held += size
            while self._held > self.budget:
                self._held -= nbytes(self._items.popitem(last=False)[1])

    def pop(self, key: str) -> None:
        with self._lock:
            value = self._items.pop(key, None)
            if value is not None:
                self._held -= nbytes(value)
