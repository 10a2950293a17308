"""`sslc probe` on bad inputs: one clear message naming the file or key, exit 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from helpers import require_plugins
from PIL import Image


def check(result, *needles: str) -> None:
    text = " ".join((result.err + result.out).split())  # rich wraps long lines
    assert result.code == 2, text
    assert "Traceback" not in text, text
    for needle in needles:
        assert needle in text, f"{needle!r} not in: {text}"


def aloi_view(root: Path, objects: int = 2) -> Path:
    for obj in range(1, objects + 1):
        folder = root / "aloi_red2_view" / str(obj)
        folder.mkdir(parents=True)
        for angle in range(0, 360, 5):
            Image.new("RGB", (192, 144), (obj * 40, angle % 255, 90)).save(folder / f"{obj}_r{angle}.png")
    return root


def test_dataset_root_with_the_wrong_layout(sslc, tmp_path: Path) -> None:
    require_plugins("aloi-viewpoint")
    (tmp_path / "data" / "something-else").mkdir(parents=True)
    check(sslc("probe", "--checkpoint", "random:resnet18", "--probe", "aloi-viewpoint",
               "--data", str(tmp_path / "data")), "aloi_red2_view")


def test_checkpoint_of_an_unknown_layout(sslc, tmp_path: Path) -> None:
    require_plugins("aloi-viewpoint")
    ckpt = tmp_path / "mystery.pth"
    torch.save({"weights": {"layer.w": torch.zeros(3)}}, ckpt)
    check(sslc("probe", "--checkpoint", str(ckpt), "--probe", "aloi-viewpoint",
               "--data", str(aloi_view(tmp_path / "data"))), "mystery.pth", "--format")


def test_truncated_image(sslc, tmp_path: Path) -> None:
    require_plugins("aloi-viewpoint")
    root = aloi_view(tmp_path / "data")
    bad = root / "aloi_red2_view" / "2" / "2_r40.png"
    bad.write_bytes(bad.read_bytes()[:60])
    check(sslc("probe", "--checkpoint", "random:resnet18", "--probe", "aloi-viewpoint",
               "--data", str(root), "--no-cache", "--workers", "0"), "2_r40.png")


def test_mat_file_without_viewpoint(sslc, tmp_path: Path) -> None:
    require_plugins("pascal3d-instance")
    root = tmp_path / "PASCAL3D+_release1.1"
    for folder in ("Images/car_imagenet", "Annotations/car_imagenet", "Image_sets"):
        (root / folder).mkdir(parents=True)
    ids = ["n001", "n002", "n003"]
    for image_id in ids:
        Image.new("RGB", (64, 48), (120, 30, 30)).save(root / "Images/car_imagenet" / f"{image_id}.JPEG")
        objects = np.zeros((1, 1), dtype=[("class", "O"), ("bbox", "O"), ("truncated", "O")])
        objects[0, 0] = ("car", np.array([[5.0, 5.0, 40.0, 30.0]]), 0)
        record = {"filename": f"{image_id}.JPEG", "objects": objects}
        scipy.io.savemat(root / "Annotations/car_imagenet" / f"{image_id}.mat", {"record": record})
    (root / "Image_sets" / "car_imagenet_train.txt").write_text("\n".join(ids[:2]) + "\n")
    (root / "Image_sets" / "car_imagenet_val.txt").write_text(ids[2] + "\n")
    check(sslc("probe", "--checkpoint", "random:resnet18", "--probe", "pascal3d-instance",
               "--data", str(tmp_path)), "n001.mat", "viewpoint")


def test_unknown_probe_name(sslc, tmp_path: Path) -> None:
    require_plugins("aloi-viewpoint")
    check(sslc("probe", "--checkpoint", "random:resnet18", "--probe", "aloi-viewpiont",
               "--data", str(tmp_path)), "unknown invariance-probe 'aloi-viewpiont'",
          "did you mean 'aloi-viewpoint'")


@pytest.mark.parametrize("arch", ["resnet19"])
def test_unknown_random_architecture(sslc, tmp_path: Path, arch: str) -> None:
    require_plugins("aloi-viewpoint")
    check(sslc("probe", "--checkpoint", f"random:{arch}", "--probe", "aloi-viewpoint",
               "--data", str(aloi_view(tmp_path / "data"))), "resnet19", "resnet18")
