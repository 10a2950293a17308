"""aggressive-crop: the official MoCo-v2 pipeline in order (PIL blur included), reproducible
views under torch's seed, clear data errors, the plugin contract, and the view augmentation
the video samplers and the tracker compose."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from scipy import stats
from torchvision import transforms
from torchvision.transforms import functional as TF

import sslc_plugins.aggressive_crop as plugin
from ssl_core import ComponentError, DataError, Dataset, ImageRecord, ViewAugmentation
from ssl_core.run.seeding import SeededItems
from ssl_core.testing import (
    check_pair_sampler,
    check_params_reject_unknown_keys,
    check_registers_cleanly,
    forbid_host_syncs,
    fresh_host,
)
from sslc_plugins.aggressive_crop import (
    AggressiveCrop,
    AggressiveCropParams,
    GaussianBlur,
    MocoV2ViewParams,
    MocoV2Views,
    ToNormalizedTensor,
    gpu,
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
    # uint8 views finished on the device pass the same contract once on_device has run
    check_pair_sampler(registry.create("pair-sampler", {"type": "aggressive-crop", "size": 16,
                                                        "augment_on": "gpu"}),
                       FolderDataset(folder))
    for bad in ({"scale": [0.9, 0.2]}, {"blur_sigma": [0.0, 2.0]}, {"blur_kernel": 5},
                {"jitter_p": 1.5}, {"sizee": 3}):
        with pytest.raises(ComponentError):
            registry.create("pair-sampler", {"type": "aggressive-crop", **bad})
        with pytest.raises(ComponentError):
            registry.create("view-augmentation", {"type": "aggressive-crop", **bad})


# -- the view augmentation ---------------------------------------------------------------------
def test_view_augmentation_is_registered_and_is_the_samplers_pipeline() -> None:
    regs = check_registers_cleanly(plugin, "aggressive-crop")
    assert {(r.kind, r.name) for r in regs} == {("pair-sampler", "aggressive-crop"),
                                                ("view-augmentation", "aggressive-crop")}
    registry = fresh_host(plugin, "aggressive-crop").registry
    check_params_reject_unknown_keys("view-augmentation", "aggressive-crop", registry=registry)
    views = registry.create("view-augmentation", {"type": "aggressive-crop", "size": 24})
    assert isinstance(views, ViewAugmentation) and views.size == 24
    with pytest.raises(ComponentError, match="subset"):  # the sampler's, not the views'
        registry.create("view-augmentation", {"type": "aggressive-crop", "subset": "x"})
    sampler = AggressiveCrop(AggressiveCropParams(size=24))
    img = photo()
    for seed in range(3):
        torch.manual_seed(seed)
        view = views(img)
        torch.manual_seed(seed)
        assert torch.equal(view, sampler.transform(img))
        assert view.shape == (3, 24, 24) and view.dtype == torch.float32


def test_draw_crop_then_finish_makes_the_pipelines_draws() -> None:
    """What a sampler that draws the crop itself (the region tracker) gets: the same view as
    the whole pipeline under the same seed, and the flip it drew."""
    views = MocoV2Views(MocoV2ViewParams(size=20, blur_p=0.7))
    img = photo()
    flips = set()
    for seed in range(8):
        torch.manual_seed(seed)
        whole = views(img)
        torch.manual_seed(seed)
        crop = views.draw_crop(img)
        part, flipped = views.finish(img, crop)
        assert torch.equal(whole, part), seed
        top, left, h, w = crop
        assert top >= 0 and left >= 0 and top + h <= img.height and left + w <= img.width
        flips.add(flipped)
    assert flips == {True, False}
    # the flip it reports is the one applied: mirror the same draws without a flip
    plain = MocoV2Views(MocoV2ViewParams(size=20, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0,
                                         flip_p=1.0))
    torch.manual_seed(0)
    flipped_view, flipped = plain.finish(img, (0, 0, img.height, img.width))
    unflipped = MocoV2Views(MocoV2ViewParams(size=20, jitter_p=0.0, grayscale_p=0.0,
                                             blur_p=0.0, flip_p=0.0))
    torch.manual_seed(0)
    view, not_flipped = unflipped.finish(img, (0, 0, img.height, img.width))
    assert flipped and not not_flipped and torch.equal(flipped_view, view.flip(-1))


def test_on_device_batch_finishes_prepared_views_like_the_sampler() -> None:
    views = MocoV2Views(MocoV2ViewParams(size=16, augment_on="gpu"))
    img = photo()
    items = []
    for seed in range(3):
        torch.manual_seed(seed)
        q, qp = views.prepare(img)
        k, kp = views.prepare(img)
        assert q.dtype == torch.uint8 and q.shape == (3, 16, 16)
        items.append({"query": q, "key": k, "query_params": qp, "key_params": kp, "index": seed})
    batch = torch.utils.data.default_collate(items)
    out = views.on_device_batch(dict(batch))
    assert set(out) == {"query", "key", "index"}
    assert out["query"].dtype == torch.float32 and out["key"].shape == (3, 3, 16, 16)
    sampler = AggressiveCrop(AggressiveCropParams(size=16, augment_on="gpu"))
    expected = sampler.on_device(dict(batch))
    assert torch.equal(out["query"], expected["query"]) and torch.equal(out["key"], expected["key"])
    # cpu views, or a batch without drawn parameters, pass through
    assert MocoV2Views(MocoV2ViewParams(size=16)).on_device_batch(batch) is batch
    assert views.on_device_batch({"query": out["query"]})["query"] is out["query"]


# -- augment_on: gpu -----------------------------------------------------------------------
# Workers crop and draw; `on_device` does the pixels. Run here on CPU tensors.



IMAGENET_STD = (0.229, 0.224, 0.225)


def photo(w: int = 80, h: int = 60, seed: int = 0) -> Image.Image:
    """Smooth colours, a patch and noise: every jitter, blur and flip changes it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / w
    img = np.stack([np.sin(6 * xx), np.cos(5 * yy), np.sin(4 * xx * yy)], -1) * 100 + 128
    img[h // 6:h // 2, w // 4:w // 2] = rng.integers(0, 256, 3)
    return Image.fromarray(np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8))


@pytest.fixture()
def one_photo(tmp_path: Path) -> FolderDataset:
    root = tmp_path / "photo"
    root.mkdir()
    photo().save(root / "a.png")
    return FolderDataset(root)


def gpu_sampler(**kw) -> AggressiveCrop:
    return AggressiveCrop(AggressiveCropParams(augment_on="gpu", **kw))


def finish(sampler: AggressiveCrop, items: list[dict]) -> dict:
    return sampler.on_device(torch.utils.data.default_collate(items))


def seeded(pairs, seed: int, index: int = 0) -> dict:
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # torch.manual_seed, minus its CUDA book-keeping
        return pairs[index]


def test_gpu_path_gives_the_cpu_paths_views_under_the_same_seed(one_photo: FolderDataset) -> None:
    """Same seed, same parameters: only PIL's 8-bit rounding between steps (and its rounded
    contrast mean) separates the two, a few grey levels at most."""
    cpu = AggressiveCrop(AggressiveCropParams(size=32)).pairs(one_photo)
    sampler = gpu_sampler(size=32)
    views = sampler.pairs(one_photo)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    means = []
    for seed in range(40):
        a = seeded(cpu, seed)
        b = finish(sampler, [seeded(views, seed)])
        for name in ("query", "key"):
            diff = ((b[name][0] - a[name]) * std).abs()  # in [0, 1] pixel units
            assert diff.max() < 0.06, (seed, name, float(diff.max()))
            means.append(float(diff.mean()))
    assert max(means) < 0.012 and np.mean(means) < 0.007, (max(means), np.mean(means))


def draws(n: int, img: Image.Image, **kw) -> np.ndarray:
    """Parameters of `n` views, each drawn under its own seed as the trainer seeds items."""
    views = MocoV2Views(MocoV2ViewParams(size=8, augment_on="gpu", **kw))
    out = []
    for seed in range(n):
        torch.default_generator.manual_seed(seed)
        out.append(gpu.unpack([views.prepare(img)[1]])[0])
    return np.stack(out)


def test_drawn_parameter_distributions_are_the_cpu_pipelines() -> None:
    src = photo(120, 90)
    p = draws(3000, src)
    n = len(p)
    for col, prob in ((gpu.JITTER, 0.8), (gpu.GRAY, 0.2), (gpu.BLUR, 0.5), (gpu.FLIP, 0.5)):
        frac = p[:, col].mean()
        assert abs(frac - prob) < 4 * np.sqrt(prob * (1 - prob) / n), (col, frac)
    jit = p[p[:, gpu.JITTER] > 0]
    for k, (lo, hi) in enumerate(((0.6, 1.4), (0.6, 1.4), (0.6, 1.4), (-0.1, 0.1))):
        f = jit[:, gpu.FACTORS + k]
        assert lo <= f.min() < lo + 0.01 and hi - 0.01 < f.max() <= hi, (k, f.min(), f.max())
        assert stats.kstest(f, stats.uniform(lo, hi - lo).cdf).pvalue > 1e-3, k
    orders = {tuple(o) for o in jit[:, gpu.ORDER:gpu.ORDER + 4].astype(int)}
    assert len(orders) == 24  # every order of the four jitter operations occurs
    counts = np.unique(jit[:, gpu.ORDER:gpu.ORDER + 4].astype(int), axis=0, return_counts=True)[1]
    assert stats.chisquare(counts).pvalue > 1e-3
    sig = p[p[:, gpu.BLUR] > 0, gpu.SIGMA]
    assert sig.min() >= 0.1 and sig.max() <= 2.0
    assert stats.kstest(sig, stats.uniform(0.1, 1.9).cdf).pvalue > 1e-3
    # The crop's area fraction and aspect ratio, against torchvision's own RandomResizedCrop.
    i, j, h, w = p[:, gpu.CROP:gpu.CROP + 4].T
    assert np.all(p[:, gpu.SOURCE:gpu.SOURCE + 2] == (120, 90))
    rrc = transforms.RandomResizedCrop(8, scale=(0.2, 1.0))
    torch.manual_seed(12345)
    ref = np.array([rrc.get_params(src, rrc.scale, rrc.ratio) for _ in range(n)],
                   dtype=np.float64)
    for ours, theirs in ((h * w / (120 * 90), ref[:, 2] * ref[:, 3] / (120 * 90)),
                         (w / h, ref[:, 3] / ref[:, 2]), (i, ref[:, 0]), (j, ref[:, 1])):
        assert stats.ks_2samp(ours, theirs).pvalue > 1e-3
    area = h * w / (120 * 90)
    assert area.min() >= 0.2 * 0.99 and area.max() <= 1.0


def test_applied_fractions_on_the_device_match_the_probabilities(one_photo: FolderDataset) -> None:
    """What on_device does, seen in its output: one operation at a time, 300 views each."""
    off = dict(size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0), jitter_p=0.0, grayscale_p=0.0,
               blur_p=0.0, flip_p=0.0)
    plain = finish(gpu_sampler(**off), [gpu_sampler(**off).pairs(one_photo)[0]])["query"][0]
    for name, prob in (("jitter_p", 0.8), ("grayscale_p", 0.2), ("blur_p", 0.5), ("flip_p", 0.5)):
        sampler = gpu_sampler(**{**off, name: prob})
        views = sampler.pairs(one_photo)
        out = finish(sampler, [seeded(views, s) for s in range(150)])
        x = torch.cat([out["query"], out["key"]])
        if name == "grayscale_p":
            changed = (x * torch.tensor(IMAGENET_STD).view(3, 1, 1)
                       + torch.tensor((0.485, 0.456, 0.406)).view(3, 1, 1)).std(1).amax((1, 2)) < 1e-4
        elif name == "flip_p":
            changed = (x - plain.flip(-1)).abs().amax((1, 2, 3)) < 1e-5
        else:
            changed = (x - plain).abs().amax((1, 2, 3)) > 1e-4
        frac = changed.float().mean().item()
        assert abs(frac - prob) < 4 * np.sqrt(prob * (1 - prob) / len(x)), (name, frac)


@pytest.mark.parametrize("op", ["brightness", "contrast", "saturation", "hue"])
def test_batched_jitter_ops_equal_torchvisions_per_image(op: str) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 9, 11, generator=g)
    f = (torch.rand(6, generator=g) - 0.5) * 0.2 if op == "hue" else 0.6 + 0.8 * torch.rand(6, generator=g)
    ours = getattr(gpu, f"adjust_{op}")(x.clone(), f)
    ref = torch.stack([getattr(TF, f"adjust_{op}")(xi, float(fi)) for xi, fi in zip(x, f, strict=True)])
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=0)


def test_hue_shift_is_pils_whole_levels() -> None:
    assert gpu.pil_hue_shift(np.array([0.1, -0.1, 0.0039, 0.05])).tolist() == pytest.approx(
        [25 / 255, -25 / 255, 0.0, 12 / 255])


@pytest.mark.parametrize("sigma", [0.1, 0.6, 1.3, 2.0, 3.5])
def test_device_blur_is_pils_gaussian_blur(sigma: float) -> None:
    """PIL's GaussianBlur is three extended box blurs per axis with repeated edge pixels; the
    device does the same in float, PIL rounds to 8 bits after each pass."""
    img = noise(40, seed=3)
    ref = torch.from_numpy(np.array(img.filter(ImageFilter.GaussianBlur(sigma)))).permute(2, 0, 1).float()
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float()[None] / 255
    kernels = torch.from_numpy(gpu.box_kernels(np.array([sigma, 0.5])))
    out = gpu.box_blur(torch.cat([x, x]), kernels)[0] * 255
    diff = (out - ref).abs()
    assert diff.max() <= 3.0 and diff.mean() < 1.1, (float(diff.max()), float(diff.mean()))


def test_gpu_output_shape_dtype_and_normalisation_equal_the_cpu_path(folder: Path) -> None:
    off = dict(size=48, scale=(1.0, 1.0), ratio=(1.0, 1.0), jitter_p=0.0, grayscale_p=0.0,
               blur_p=0.0, flip_p=0.0)
    cpu_item = AggressiveCrop(AggressiveCropParams(**off)).pairs(FolderDataset(folder))[0]
    sampler = gpu_sampler(**off)
    item = sampler.pairs(FolderDataset(folder))[0]
    assert item["query"].dtype == torch.uint8 and item["query"].shape == (3, 48, 48)
    assert isinstance(item["query_params"], bytes)
    batch = torch.utils.data.default_collate([item, item])
    assert batch["query_params"] == [item["query_params"]] * 2  # kept on the host as bytes
    out = sampler.on_device(batch)
    assert set(out) == {"query", "key", "index"}
    assert out["query"].dtype == torch.float32 and out["query"].shape == (2, 3, 48, 48)
    torch.testing.assert_close(out["query"][0], cpu_item["query"], atol=1e-5, rtol=0)
    last = dict(batch, query=batch["query"].contiguous(memory_format=torch.channels_last),
                key=batch["key"].contiguous(memory_format=torch.channels_last))
    out_cl = sampler.on_device(last)
    assert out_cl["query"].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out_cl["query"], out["query"])


def test_gpu_path_is_deterministic_under_the_trainers_item_seeds(one_photo: FolderDataset) -> None:
    sampler = gpu_sampler(size=16)
    items = SeededItems(sampler.pairs(one_photo), seed=7)
    a = finish(sampler, [items[(0, 0)], items[(3, 0)]])
    torch.manual_seed(999)  # the global RNG plays no part on either side
    b = finish(sampler, [items[(0, 0)], items[(3, 0)]])
    for name in ("query", "key"):
        assert torch.equal(a[name], b[name])
    assert not torch.equal(a["query"][0], a["query"][1])  # another epoch, other views
    loader = torch.utils.data.DataLoader(items, batch_size=2, num_workers=1,
                                         sampler=[(0, 0), (3, 0)])
    c = sampler.on_device(next(iter(loader)))  # through a worker process: same views
    assert torch.equal(a["query"], c["query"]) and torch.equal(a["key"], c["key"])


def test_augment_on_is_validated_and_cpu_mode_leaves_batches_alone(folder: Path) -> None:
    with pytest.raises(ValueError):
        AggressiveCropParams(augment_on="tpu")  # type: ignore[arg-type]
    sampler = AggressiveCrop(AggressiveCropParams(size=16))
    batch = torch.utils.data.default_collate([sampler.pairs(FolderDataset(folder))[0]])
    assert sampler.on_device(batch) is batch


def test_on_device_never_waits_for_the_device(one_photo: FolderDataset) -> None:
    """Constants are cached on the device and the plan goes through `to_device`: on a GPU the
    host launches this batch's kernels while the step before still runs."""
    sampler = gpu_sampler(size=16)
    views = sampler.pairs(one_photo)
    batch = torch.utils.data.default_collate([seeded(views, s) for s in range(24)])
    params = gpu.unpack(list(batch["query_params"]) + list(batch["key_params"]))
    assert params[:, gpu.JITTER].any() and params[:, gpu.BLUR].any() and params[:, gpu.GRAY].any()
    first = sampler.on_device(batch)  # warm-up: makes the device constants
    with forbid_host_syncs():
        again = sampler.on_device(batch)
    assert torch.equal(first["query"], again["query"])


@pytest.mark.gpu
def test_on_device_on_cuda_equals_cpu(one_photo: FolderDataset) -> None:
    sampler = gpu_sampler(size=32)
    views = sampler.pairs(one_photo)
    batch = torch.utils.data.default_collate([seeded(views, s) for s in range(16)])
    ref = sampler.on_device(batch)
    on_cuda = {k: v.cuda() if torch.is_tensor(v) else v for k, v in batch.items()}
    cuda = sampler.on_device(on_cuda)
    assert cuda["query"].is_cuda
    with forbid_host_syncs():  # warmed up: no blocking copy, no read-back
        sampler.on_device(on_cuda)
    torch.testing.assert_close(cuda["query"].cpu(), ref["query"], atol=1e-4, rtol=0)
    torch.testing.assert_close(cuda["key"].cpu(), ref["key"], atol=1e-4, rtol=0)
