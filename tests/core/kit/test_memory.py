"""Allocations that cannot fit are refused before they are made, naming what sizes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import require_plugins
from PIL import Image

from ssl_core.errors import SslcError
from ssl_core.interfaces import ImageRecord, ProbeItem, ProbeSet
from ssl_core.kit.memory import available_bytes, ensure_fits


def test_available_memory_is_read() -> None:
    free = available_bytes()
    assert free is None or free > 0


def test_ensure_fits_names_the_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ssl_core.kit.memory.available_bytes", lambda: 1000)
    ensure_fits(999, "a small thing", "hint")
    with pytest.raises(SslcError, match="the queue .* needs .* GiB") as err:
        ensure_fits(2**40, "the queue (queue_size=1)", "lower queue_size")
    assert err.value.hint == "lower queue_size"


def test_feature_matrix_that_cannot_fit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    require_plugins("resnet18")
    from ssl_core.measure.features import extract_features
    from ssl_core.plugin.host import get_registry

    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(path)
    ps = ProbeSet("big-probe", [ProbeItem(ImageRecord(path), "t", "c")] * 3, (8, 8))
    encoder = get_registry().create("encoder", {"type": "resnet18", "small_input": True})
    monkeypatch.setattr("ssl_core.kit.memory.available_bytes", lambda: 1000)
    with pytest.raises(SslcError, match="features of probe 'big-probe' \\(3 rows x 512\\)"):
        extract_features(encoder, ps, device="cpu", progress=False)
