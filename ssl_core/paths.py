"""Where sslc keeps things it can rebuild (rendered worlds, feature caches)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$SSLC_CACHE_DIR`, else `$XDG_CACHE_HOME/sslc`, else `~/.cache/sslc`."""
    env = os.environ.get("SSLC_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "sslc"
