"""Atomic writes: a failure while writing leaves the previous file whole and no debris."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ssl_core.kit.atomic import atomic_path, torch_save, write_json


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    write_json(target, {"top10": 1.0})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"top10": ')  # half a document, then a crash
        raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"top10": 1.0}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_torch_save_loads_with_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "ckpt.pt"
    torch_save(path, {"w": torch.ones(2), "step": 3})
    assert torch.load(path, weights_only=True)["step"] == 3
    assert path.stat().st_mode & 0o044  # readable by others, as an ordinary file
