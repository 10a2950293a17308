"""`sslc evaluate` on a VOC2007 tree in the released layout: random and torchvision
checkpoints, --save-features, and bad inputs as one clean message with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from evalkit import standard_voc
from helpers import require_plugins

# folds=2: the tiny VOC tree has 2 positives for some classes, too few for 3 folds (refused)
FAST = ["--option", "image_size=32", "--option", "n_jobs=1", "--option", "costs=[0.1, 1.0]",
        "--option", "folds=2", "--workers", "0", "--batch-size", "8", "--device", "cpu"]


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    standard_voc(tmp_path / "voc")
    return tmp_path / "voc"


def test_random_resnet18_on_voc_prints_map(sslc, voc: Path) -> None:
    require_plugins("resnet18")
    res = sslc("evaluate", "--checkpoint", "random:resnet18", "--evaluator", "voc07-svm",
               "--data", str(voc), "--json", *FAST)
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert 0 <= doc["metrics"]["mAP"] <= 100
    assert doc["source"]["format"] == "random" and doc["dataset"] == "voc2007"
    assert [f["name"] for f in doc["features"]] == ["trainval", "test"]
    assert set(doc["details"]["ap"]) == {"chair", "diningtable", "dog"}
    # the cropped-box benchmark through the same command; the trainval crops are new images
    res = sslc("evaluate", "--checkpoint", "random:resnet18", "--evaluator", "voc07-svm",
               "--data", str(voc), "--dataset", "voc2007-cropped-boxes", "--json", *FAST)
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert "mAP" in doc["metrics"] and doc["features"][0]["rows"] == 8


def test_torchvision_state_dict_and_save_features(sslc, voc: Path, tmp_path: Path) -> None:
    require_plugins("resnet18", "torchvision")
    import torchvision

    torch.manual_seed(1)
    ckpt = tmp_path / "resnet18-torchvision.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), ckpt)
    out = tmp_path / "feats.npz"
    res = sslc("evaluate", "--checkpoint", str(ckpt), "--evaluator", "voc07-svm", "--data", str(voc),
               "--json", "--save-features", str(out), *FAST)
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["source"]["format"] == "torchvision" and "mAP" in doc["metrics"]
    assert doc["features_file"] == str(out)
    with np.load(out, allow_pickle=False) as z:
        assert z["trainval.feat"].shape == (8, 512) and z["test.feat"].shape == (8, 512)
        assert z["test.paths"][0].endswith("JPEGImages/000009.jpg")
    # the same weights again: features come from the cache, the numbers are the same
    again = json.loads(sslc("evaluate", "--checkpoint", str(ckpt), "--evaluator", "voc07-svm",
                            "--data", str(voc), "--json", *FAST).out)
    assert [f["cache"] for f in again["features"]] == ["hit", "hit"]
    assert again["metrics"] == doc["metrics"]


def _clean_error(res, *needles: str) -> None:
    assert res.code == 2, (res.out, res.err)
    assert "Traceback" not in res.err
    for needle in needles:
        assert needle in res.err, res.err


def test_bad_inputs_are_one_clean_message(sslc, voc: Path) -> None:
    (voc / "VOCdevkit/VOC2007/Annotations/000002.xml").unlink()
    base = ["--checkpoint", "random:resnet18", "--data", str(voc), *FAST]
    _clean_error(sslc("evaluate", "--evaluator", "voc07-svm", *base), "000002.xml", "_trainval.txt")
    _clean_error(sslc("evaluate", "--evaluator", "voc07-svm", "--dataset", "voc2008", *base),
                 "unknown dataset 'voc2008'", "voc2007")
    _clean_error(sslc("evaluate", "--evaluator", "voc07-svn", *base),
                 "unknown evaluator 'voc07-svn'", "voc07-svm")
    _clean_error(sslc("evaluate", "--evaluator", "voc07-svm", "--option", "cost=1", *base),
                 "unknown parameter")
