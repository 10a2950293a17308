"""Where sslc keeps things it can rebuild (rendered worlds, feature caches)."""

from __future__ import annotations

import os
from pathlib import Path

from ssl_core.errors import PathError


def cache_dir() -> Path:
    """`$SSLC_CACHE_DIR`, else `$XDG_CACHE_HOME/sslc`, else `~/.cache/sslc`.

    A cache path that exists as a file is a user error (exit 2), raised here so every user
    of the cache reports it the same way instead of failing later in a write."""
    env = os.environ.get("SSLC_CACHE_DIR")
    if env:
        path, source = Path(env).expanduser(), f"SSLC_CACHE_DIR={env}"
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
        path, source = base / "sslc", f"the cache directory {base / 'sslc'}"
    for part in (path, *path.parents):
        try:
            is_dir = part.is_dir()
            exists = is_dir or part.exists()
        except OSError:  # unreadable: whoever writes there reports it
            break
        if exists:
            if not is_dir:
                raise PathError(f"{source}: {part} is a file, not a directory",
                                "point SSLC_CACHE_DIR at a directory (it is created if missing), "
                                "or unset it to use ~/.cache/sslc")
            break
    return path
