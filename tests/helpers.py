"""Helpers shared by tests (import as `from helpers import ...`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssl_core.plugins import get_registry


def require_plugins(*names: str) -> None:
    """Skip (never silently pass) when a component from another plugin is not loaded,
    e.g. in the per-plugin nox sessions."""
    reg = get_registry()
    missing = [n for n in names if not any(n in specs for specs in reg.specs.values())]
    if missing:
        pytest.skip(f"needs component(s) {', '.join(missing)} from plugins not loaded here")


def write_images(folder: Path, classes: dict[str, int], size: int = 24) -> Path:
    """An ImageNet-style folder of small random PNGs: {class: count}."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, count in classes.items():
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            arr = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            Image.fromarray(arr).save(folder / cls / f"{cls}_{i}.png")
    return folder
