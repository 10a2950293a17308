"""aggressive-crop: the MoCo-v2 pipeline in order, reproducible views, clear data errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from ssl_core import Dataset, ImageRecord
from ssl_core.errors import ComponentError, DataError
from ssl_core.registry import Registry, make_spec
from sslc_plugins.aggressive_crop import (
    AggressiveCrop,
    AggressiveCropParams,
    blur_kernel_size,
    register_pair_samplers,
)


class FolderDataset(Dataset):
    """Every image file of a folder, sorted: a minimal real dataset for the sampler."""

    def __init__(self, root: Path, boxes: dict[str, tuple] | None = None) -> None:
        self.root = root
        self.boxes = boxes or {}

    def records(self, subset: str | None = None) -> list[ImageRecord]:
        return [ImageRecord(path=p, box=self.boxes.get(p.name))
                for p in sorted(self.root.iterdir()) if p.suffix in (".png", ".jpg")]


def scene(seed: int, size: int = 48) -> Image.Image:
    """A structured colour image (gradients plus a square) so different crops differ."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([xx, yy, 1 - xx * yy], axis=-1) * 255
    x0, y0 = rng.integers(0, size // 2, 2)
    img[y0:y0 + size // 3, x0:x0 + size // 3] = rng.integers(0, 256, 3)
    return Image.fromarray(img.astype(np.uint8))


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    root.mkdir()
    for i in range(3):
        scene(i).save(root / f"img{i}.png")
    scene(7).save(root / "photo.jpg", quality=90)
    return root


def test_pipeline_matches_moco_v2_order_and_values() -> None:
    t = AggressiveCrop().transform.transforms
    assert [type(x) for x in t] == [
        v2.RandomResizedCrop, v2.RandomApply, v2.RandomGrayscale, v2.RandomApply,
        v2.RandomHorizontalFlip, v2.ToImage, v2.ToDtype, v2.Normalize,
    ]
    crop, jitter, gray, blur, flip, _, _, norm = t
    assert tuple(crop.size) == (224, 224) and crop.scale == (0.2, 1.0)
    (cj,) = jitter.transforms
    assert isinstance(cj, v2.ColorJitter) and jitter.p == 0.8
    assert cj.brightness == cj.contrast == cj.saturation == pytest.approx((0.6, 1.4))
    assert cj.hue == pytest.approx((-0.1, 0.1))
    assert gray.p == 0.2
    (gb,) = blur.transforms
    assert isinstance(gb, v2.GaussianBlur) and blur.p == 0.5
    assert list(gb.sigma) == [0.1, 2.0] and gb.kernel_size == (23, 23)
    assert flip.p == 0.5
    assert norm.mean == [0.485, 0.456, 0.406] and norm.std == [0.229, 0.224, 0.225]


def test_blur_kernel_is_about_a_tenth_and_odd() -> None:
    assert [blur_kernel_size(s) for s in (224, 64, 32, 16)] == [23, 7, 3, 3]


def test_pairs_are_two_different_views_of_one_image(folder: Path) -> None:
    ds = AggressiveCrop(AggressiveCropParams(size=32)).pairs(FolderDataset(folder))
    assert len(ds) == 4
    item = ds[1]
    assert set(item) == {"query", "key", "index"} and item["index"] == 1
    assert item["query"].shape == item["key"].shape == (3, 32, 32)
    assert item["query"].dtype == torch.float32
    assert not torch.equal(item["query"], item["key"])
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["query"].shape == (4, 3, 32, 32) and batch["index"].tolist() == [0, 1, 2, 3]


def test_views_are_reproducible_under_manual_seed(folder: Path) -> None:
    ds = AggressiveCrop(AggressiveCropParams(size=32)).pairs(FolderDataset(folder))
    torch.manual_seed(0)
    a = ds[0]
    torch.manual_seed(0)
    b = ds[0]
    torch.manual_seed(1)
    c = ds[0]
    assert torch.equal(a["query"], b["query"]) and torch.equal(a["key"], b["key"])
    assert not torch.equal(a["query"], c["query"])


def test_identity_settings_give_the_normalised_image(folder: Path) -> None:
    p = AggressiveCropParams(size=48, scale=(1.0, 1.0), ratio=(1.0, 1.0), jitter_p=0.0,
                             grayscale_p=0.0, blur_p=0.0, flip_p=0.0)
    item = AggressiveCrop(p).pairs(FolderDataset(folder))[0]
    raw = torch.from_numpy(np.array(scene(0))).permute(2, 0, 1).float() / 255
    mean = torch.tensor(p.mean).view(3, 1, 1)
    std = torch.tensor(p.std).view(3, 1, 1)
    torch.testing.assert_close(item["query"], (raw - mean) / std, atol=1e-5, rtol=1e-5)


def test_record_box_is_cropped_first(tmp_path: Path) -> None:
    root = tmp_path / "boxes"
    root.mkdir()
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, :40] = (255, 0, 0)
    img[:, 40:] = (0, 0, 255)
    Image.fromarray(img).save(root / "halves.png")
    p = AggressiveCropParams(size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0), jitter_p=0.0,
                             grayscale_p=0.0, blur_p=0.0, flip_p=0.0,
                             mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    ds = AggressiveCrop(p).pairs(FolderDataset(root, {"halves.png": (40.0, 0.0, 80.0, 40.0)}))
    view = ds[0]["query"]
    assert torch.allclose(view[2], torch.ones(16, 16)) and view[:2].abs().max() < 1e-6
    bad = AggressiveCrop(p).pairs(FolderDataset(root, {"halves.png": (90.0, 0.0, 95.0, 40.0)}))
    with pytest.raises(DataError, match="halves.png"):
        bad[0]


def test_grey_and_rgba_images_become_rgb(tmp_path: Path) -> None:
    root = tmp_path / "modes"
    root.mkdir()
    scene(1).convert("L").save(root / "a.png")
    scene(2).convert("RGBA").save(root / "b.png")
    ds = AggressiveCrop(AggressiveCropParams(size=16)).pairs(FolderDataset(root))
    assert ds[0]["query"].shape == ds[1]["key"].shape == (3, 16, 16)


def test_truncated_jpeg_is_a_data_error_naming_the_file(folder: Path) -> None:
    good = (folder / "photo.jpg").read_bytes()
    broken = folder / "photo.jpg"
    broken.write_bytes(good[: len(good) // 2])
    ds = AggressiveCrop(AggressiveCropParams(size=16)).pairs(FolderDataset(folder))
    idx = [r.path.name for r in ds.records].index("photo.jpg")
    with pytest.raises(DataError) as err:
        ds[idx]
    assert str(broken) in err.value.message
    assert "remove" in err.value.hint and "replace" in err.value.hint


def test_not_an_image_is_a_data_error(folder: Path) -> None:
    (folder / "notes.png").write_text("not a picture")
    ds = AggressiveCrop(AggressiveCropParams(size=16)).pairs(FolderDataset(folder))
    idx = [r.path.name for r in ds.records].index("notes.png")
    with pytest.raises(DataError, match="notes.png"):
        ds[idx]


def test_empty_dataset_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no images"):
        AggressiveCrop().pairs(FolderDataset(tmp_path))


def test_registered_params_are_validated() -> None:
    reg = Registry()

    def register(name, factory, params=None, summary=""):
        reg.add(make_spec("pair-sampler", "aggressive-crop", None, name, factory, params, summary))

    register_pair_samplers(register=register)
    sampler = reg.create("pair-sampler", {"type": "aggressive-crop", "size": 32, "subset": "x"})
    assert isinstance(sampler, AggressiveCrop) and sampler.params.subset == "x"
    assert sampler.describe()["size"] == 32
    for bad in ({"scale": [0.9, 0.2]}, {"blur_kernel": 4}, {"jitter_p": 1.5}, {"sizee": 3}):
        with pytest.raises(ComponentError):
            reg.create("pair-sampler", {"type": "aggressive-crop", **bad})
