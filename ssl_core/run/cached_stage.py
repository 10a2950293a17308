"""One stage result on disk: skipped when its fingerprint matches, else computed and
written atomically. Every probe and evaluation result goes through here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ssl_core.kit.atomic import read_json, write_json


def read_result(path: Path, fp: str | None = None) -> dict[str, Any] | None:
    """A stored result: with `fp`, only one computed from the same inputs."""
    data = read_json(path)
    if data is None:
        return None
    return data if fp is None or data.get("fingerprint") == fp else None


def cached_stage(path: Path, fp: str, compute: Callable[[], dict[str, Any]], *, redo: bool,
                 label: str, log: Callable[[str], None]) -> dict[str, Any]:
    """The result at `path` if it was computed from inputs with fingerprint `fp` (and `redo`
    is off), else `compute()` (which records `fp` in the result), written atomically."""
    cached = None if redo else read_result(path, fp)
    if cached is not None:
        log(f"[dim]{label}: up to date, skipped[/dim]")
        return cached
    result = compute()
    write_json(path, result)
    return result
