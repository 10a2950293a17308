"""aggressive-crop: the official MoCo-v2 pipeline in order (PIL blur included), reproducible
views under torch's seed, clear data errors, and the plugin contract."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from torchvision import transforms

import sslc_plugins.aggressive_crop as plugin
from ssl_core import ComponentError, DataError, Dataset, ImageRecord
from ssl_core.testing import (
    check_pair_sampler,
    check_params_reject_unknown_keys,
    check_registers_cleanly,
    fresh_host,
)
from sslc_plugins.aggressive_crop import (
    AggressiveCrop,
    AggressiveCropParams,
    GaussianBlur,
    ToNormalizedTensor,
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
    t = AggressiveCrop(AggressiveCropParams()).transform.transforms
    assert [type(x) for x in t] == [
        transforms.RandomResizedCrop, transforms.RandomApply, transforms.RandomGrayscale,
        transforms.RandomApply, transforms.RandomHorizontalFlip, ToNormalizedTensor,
    ]
    crop, jitter, gray, blur, flip, norm = t
    assert tuple(crop.size) == (224, 224) and crop.scale == (0.2, 1.0)
    (cj,) = jitter.transforms
    assert isinstance(cj, transforms.ColorJitter) and jitter.p == 0.8
    assert cj.brightness == cj.contrast == cj.saturation == pytest.approx((0.6, 1.4))
    assert cj.hue == pytest.approx((-0.1, 0.1))
    assert gray.p == 0.2
    (gb,) = blur.transforms
    assert isinstance(gb, GaussianBlur) and blur.p == 0.5 and gb.sigma == (0.1, 2.0)
    assert flip.p == 0.5
    assert norm.mean == (0.485, 0.456, 0.406) and norm.std == (0.229, 0.224, 0.225)


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_fused_normalisation_equals_totensor_then_normalize(mode: str) -> None:
    img = noise(37).convert(mode)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    ours = ToNormalizedTensor(mean, std)(img)
    ref = transforms.Normalize(mean, std)(transforms.ToTensor()(img.convert("RGB")))
    assert ours.dtype == torch.float32 and ours.is_contiguous() and ours.shape == (3, 37, 37)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


def noise(size: int = 48, seed: int = 0) -> Image.Image:
    """Per-pixel noise: any blur, even sigma 0.1, changes it."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def test_blur_is_pils_gaussian_blur_with_sigma_from_torch() -> None:
    img, blur = noise(), GaussianBlur((0.1, 2.0))
    for seed in range(5):
        torch.manual_seed(seed)
        out = blur(img)
        torch.manual_seed(seed)
        sigma = blur.draw_sigma()
        expected = img.filter(ImageFilter.GaussianBlur(radius=sigma))
        assert np.array_equal(np.asarray(out), np.asarray(expected)), sigma
        # Python's `random` (what the official class draws from) plays no part.
        random.seed(seed + 100)
        torch.manual_seed(seed)
        assert np.array_equal(np.asarray(blur(img)), np.asarray(expected))


def test_blur_sigma_draws_cover_the_range_uniformly() -> None:
    blur = GaussianBlur((0.1, 2.0))
    torch.manual_seed(0)
    sigmas = np.array([blur.draw_sigma() for _ in range(2000)])
    assert sigmas.min() >= 0.1 and sigmas.max() <= 2.0
    assert sigmas.min() < 0.12 and sigmas.max() > 1.98  # both ends are reached
    # Uniform on [0.1, 2.0]: each of 4 equal bins holds ~500 of 2000 (binomial sd ~19).
    counts, _ = np.histogram(sigmas, bins=4, range=(0.1, 2.0))
    assert all(abs(c - 500) < 80 for c in counts), counts
    assert abs(sigmas.mean() - 1.05) < 0.05


def test_blur_is_applied_about_half_the_time(tmp_path: Path) -> None:
    root = tmp_path / "noise"
    root.mkdir()
    noise(24).save(root / "n.png")
    p = AggressiveCropParams(size=24, scale=(1.0, 1.0), ratio=(1.0, 1.0), jitter_p=0.0,
                             grayscale_p=0.0, flip_p=0.0)
    pairs = AggressiveCrop(p).pairs(FolderDataset(root))
    sharp = AggressiveCrop(p.model_copy(update={"blur_p": 0.0})).pairs(FolderDataset(root))[0]
    assert torch.equal(sharp["query"], sharp["key"])  # nothing else is random here
    torch.manual_seed(0)
    views = [v for _ in range(200) for v in (pairs[0]["query"], pairs[0]["key"])]
    blurred = sum(not torch.equal(v, sharp["query"]) for v in views) / len(views)
    assert 0.42 < blurred < 0.58, blurred  # 400 draws of p 0.5: sd 0.025


def test_small_views_get_the_whole_gaussian(tmp_path: Path) -> None:
    """At 48 px, sigma 2 is blurred in full (PIL), not cut at a ~5-pixel kernel."""
    root = tmp_path / "dot"
    root.mkdir()
    img = np.zeros((48, 48, 3), np.uint8)
    img[24, 24] = 255
    Image.fromarray(img).save(root / "dot.png")
    p = AggressiveCropParams(size=48, scale=(1.0, 1.0), ratio=(1.0, 1.0), jitter_p=0.0,
                             grayscale_p=0.0, flip_p=0.0, blur_p=1.0, blur_sigma=(2.0, 2.0),
                             mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    view = AggressiveCrop(p).pairs(FolderDataset(root))[0]["query"][0]
    expected = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(2.0)))[..., 0]
    torch.testing.assert_close(view, torch.from_numpy(expected / 255).float())
    assert view[24, 29] > 0  # 5 pixels (2.5 sigma) away from the dot there is still light


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
    assert str(broken) in err.value.message and "remove" in err.value.hint


def test_not_an_image_is_a_data_error(folder: Path) -> None:
    (folder / "notes.png").write_text("not a picture")
    ds = AggressiveCrop(AggressiveCropParams(size=16)).pairs(FolderDataset(folder))
    idx = [r.path.name for r in ds.records].index("notes.png")
    with pytest.raises(DataError, match="notes.png"):
        ds[idx]


def test_empty_dataset_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no images"):
        AggressiveCrop(AggressiveCropParams()).pairs(FolderDataset(tmp_path))


def test_views_are_deterministic_under_torch_seed_whatever_random_and_numpy_do(
        folder: Path) -> None:
    ds = AggressiveCrop(AggressiveCropParams(size=32, blur_p=1.0)).pairs(FolderDataset(folder))
    views = []
    for other in (1, 2):
        random.seed(other)
        np.random.seed(other)
        torch.manual_seed(5)
        views.append(ds[2])
    assert torch.equal(views[0]["query"], views[1]["query"])
    assert torch.equal(views[0]["key"], views[1]["key"])


def test_plugin_contract(folder: Path) -> None:
    check_registers_cleanly(plugin, "aggressive-crop")
    registry = fresh_host(plugin, "aggressive-crop").registry
    check_params_reject_unknown_keys("pair-sampler", "aggressive-crop", registry=registry)
    sampler = registry.create("pair-sampler", {"type": "aggressive-crop", "size": 32, "subset": "x"})
    assert isinstance(sampler, AggressiveCrop) and sampler.params.subset == "x"
    check_pair_sampler(registry.create("pair-sampler", {"type": "aggressive-crop", "size": 16}),
                       FolderDataset(folder))
    for bad in ({"scale": [0.9, 0.2]}, {"blur_sigma": [0.0, 2.0]}, {"blur_kernel": 5},
                {"jitter_p": 1.5}, {"sizee": 3}):
        with pytest.raises(ComponentError):
            registry.create("pair-sampler", {"type": "aggressive-crop", **bad})
