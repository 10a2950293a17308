"""`sslc export`: a trained encoder in the official MoCo layout or as a torchvision state dict."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from helpers import require_plugins

from ssl_core.models.checkpoints import SSLC_FORMAT_VERSION, load_encoder
from ssl_core.plugin.host import get_registry


def _run_model_dir(tmp_path: Path, small_input: bool = False) -> tuple[Path, dict]:
    """A run's model directory holding a training checkpoint as the trainer writes it."""
    require_plugins("resnet18", "moco-queue")
    torch.manual_seed(5)
    config = {"type": "resnet18", "small_input": small_input}
    enc = get_registry().create("encoder", config)
    model_dir = tmp_path / "run" / "models" / "moco"
    model_dir.mkdir(parents=True)
    torch.save({"sslc_format": SSLC_FORMAT_VERSION, "step": 3, "done": True, "encoder": config,
                "encoder_state_dict": enc.state_dict()}, model_dir / "checkpoint.pt")
    return model_dir, enc.state_dict()


def test_torchvision_export_loads_in_plain_torchvision(sslc, tmp_path: Path) -> None:
    model_dir, trunk = _run_model_dir(tmp_path)
    out = tmp_path / "resnet18.pth"
    res = sslc("export", str(model_dir), "--format", "torchvision", "-o", str(out), "--quiet")
    assert res.code == 0, res.err
    net = torchvision.models.resnet18()
    net.load_state_dict(torch.load(out, weights_only=True))  # strict
    for k, v in trunk.items():
        assert torch.equal(net.state_dict()[k], v), k


def test_moco_export_reads_like_the_official_lincls(sslc, tmp_path: Path) -> None:
    model_dir, trunk = _run_model_dir(tmp_path)
    out = tmp_path / "moco.pth.tar"
    res = sslc("export", str(model_dir), "--format", "moco", "-o", str(out), "--json")
    assert res.code == 0, res.err
    # what the official main_lincls.py does with a pretrained checkpoint (transcribed)
    checkpoint = torch.load(out, map_location="cpu", weights_only=True)
    state_dict = checkpoint["state_dict"]
    for k in list(state_dict.keys()):
        if k.startswith("module.encoder_q") and not k.startswith("module.encoder_q.fc"):
            state_dict[k[len("module.encoder_q."):]] = state_dict[k]
        del state_dict[k]
    model = torchvision.models.__dict__[checkpoint["arch"]]()
    msg = model.load_state_dict(state_dict, strict=False)
    assert set(msg.missing_keys) == {"fc.weight", "fc.bias"}
    for k, v in trunk.items():
        assert torch.equal(model.state_dict()[k], v), k
    # and sslc reads it back as the moco layout
    enc, report = load_encoder(out)
    assert report.format == "moco" and report.arch == "resnet18"


def test_export_errors_are_clean(sslc, tmp_path: Path) -> None:
    model_dir, _ = _run_model_dir(tmp_path, small_input=True)
    res = sslc("export", str(model_dir), "--format", "torchvision", "-o", str(tmp_path / "x.pth"))
    assert res.code == 2 and "small_input" in res.err and not (tmp_path / "x.pth").exists()
    res = sslc("export", str(model_dir), "--format", "onnx", "-o", str(tmp_path / "x.pth"))
    assert res.code == 2 and "onnx" in res.err
    res = sslc("export", str(tmp_path), "--format", "moco", "-o", str(tmp_path / "x.pth"))
    assert res.code == 2 and "checkpoint.pt" in res.err


@pytest.mark.parametrize("fmt", ["moco", "torchvision"])
def test_export_is_atomic_into_new_folders(sslc, tmp_path: Path, fmt: str) -> None:
    model_dir, _ = _run_model_dir(tmp_path)
    out = tmp_path / "deep" / "er" / f"{fmt}.pth"
    assert sslc("export", str(model_dir), "--format", fmt, "-o", str(out), "--quiet").code == 0
    assert out.is_file() and not list(out.parent.glob("*.tmp*"))
