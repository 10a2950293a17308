"""`sslc probe` with several checkpoints: one table models x probes, every score with its
interval, a CSV/Markdown table and a heatmap; features extracted once per (model, image set,
transformation), so the same command again extracts nothing; a checkpoint that cannot be
read is reported and the others are still scored."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import torchvision
from helpers import require_plugins, write_aloi_views, write_images

from ssl_core.plugin.host import get_registry


def _timm_vit(path: Path) -> str | None:
    """A tiny timm ViT saved as safetensors with timm's keys, when the timm encoder exists."""
    pytest.importorskip("timm")
    if "timm" not in get_registry().names("encoder"):
        return None
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0,
                              img_size=32, patch_size=8)
    save_file(model.state_dict(), str(path))
    return "timm:vit_tiny_patch16_224"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[list[str], list[str]]:
    require_plugins("aloi", "aloi-viewpoint", "image-folder", "transform", "resnet18")
    resnet = tmp_path / "resnet18.pth"
    torch.manual_seed(3)
    torch.save(torchvision.models.resnet18().state_dict(), resnet)
    checkpoints = ["--checkpoint", str(resnet), "--checkpoint", "random:resnet18"]
    vit = tmp_path / "vit.safetensors"
    arch = _timm_vit(vit)
    if arch is not None:
        checkpoints += ["--checkpoint", str(vit)]
    data = ["--data", f"aloi={write_aloi_views(tmp_path / 'aloi', views=4)}",
            "--data", f"image-folder={write_images(tmp_path / 'images', {'a': 2, 'b': 2}, 16)}"]
    args = ["--probe", "aloi-viewpoint", "--probe", "transform",
            "--option", "aloi-viewpoint.image_size=32", "--option", "transform.image_size=32",
            "--option", "transform.sweep=hue", "--top-k", "3", "--resamples", "100",
            "--workers", "0", *data]
    return checkpoints, args


def test_several_models_one_table_and_a_rerun_extracts_nothing(sslc, setup, tmp_path: Path) -> None:
    checkpoints, args = setup
    csv_path, plot = tmp_path / "t.csv", tmp_path / "h.png"
    res = sslc("probe", *checkpoints, *args, "-o", str(csv_path), "--plot", str(plot), "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    n = len(checkpoints) // 2
    assert doc["top_k"] == [3] and len(doc["models"]) == n
    for model in doc["models"]:
        assert [r["probe"] for r in model["probes"]] == ["aloi-viewpoint", "transform"]
        for row in model["probes"]:
            iv = row["intervals"]["top3"]
            assert iv["low"] <= row["top3"] <= iv["high"] and row["cache"] == "miss"
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == n * 2 and {r["probe"] for r in rows} == {"aloi-viewpoint", "transform"}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = json.loads(sslc("probe", *checkpoints, *args, "--json").out)
    assert all(r["cache"] == "hit" for m in again["models"] for r in m["probes"])
    assert [[r["top3"] for r in m["probes"]] for m in again["models"]] == \
        [[r["top3"] for r in m["probes"]] for m in doc["models"]]
    table = sslc("probe", *checkpoints, *args)
    assert "top-K RIS" in table.out and "±" in table.out and "random:resnet18" in table.out


def test_a_failing_checkpoint_is_named_and_the_others_are_scored(sslc, setup, tmp_path: Path) -> None:
    checkpoints, args = setup
    broken = tmp_path / "broken.pth"
    broken.write_text("not weights")
    res = sslc("probe", *checkpoints[:4], "--checkpoint", str(broken), *args, "--json")
    assert res.code == 2 and "Traceback" not in res.err
    doc = json.loads(res.out)
    assert [("error" in m) for m in doc["models"]] == [False, False, True]
    assert "broken.pth is not a torch checkpoint" in doc["models"][2]["error"]
    assert "1 of 3 checkpoints could not be probed" in res.err


def test_an_option_for_a_probe_not_given_is_a_usage_error(sslc, setup) -> None:
    checkpoints, args = setup
    res = sslc("probe", *checkpoints[:2], *args, "--option", "aloi-color.x=1")
    assert res.code == 2 and "Traceback" not in res.err
    assert "aloi-color is not one of the --probe names (aloi-viewpoint, transform)" in res.err


def test_checkpoint_key_chooses_the_model_of_a_file_holding_several(sslc, tmp_path: Path) -> None:
    """A DINO-style file (teacher and student) gives the teacher by default and the student
    with --checkpoint-key student: two different encoders."""
    require_plugins("aloi", "aloi-viewpoint", "resnet18")
    torch.manual_seed(0)
    teacher, student = torchvision.models.resnet18(), torchvision.models.resnet18()
    path = tmp_path / "dino.pth"
    torch.save({"teacher": {f"backbone.{k}": v for k, v in teacher.state_dict().items()},
                "student": {f"module.backbone.{k}": v for k, v in student.state_dict().items()},
                "epoch": 1}, path)
    args = ["probe", "--checkpoint", str(path), "--probe", "aloi-viewpoint", "--option",
            "image_size=32", "--data", str(write_aloi_views(tmp_path / "aloi", views=4)), "--top-k", "3",
            "--resamples", "0", "--workers", "0", "--json"]
    default, chosen = (json.loads(sslc(*args, *extra).out)["source"]
                       for extra in ((), ("--checkpoint-key", "student")))
    assert default["load_report"]["prefix"] == "teacher.backbone."
    assert chosen["load_report"]["prefix"] == "student.module.backbone."
    assert default["encoder_id"] != chosen["encoder_id"]
