"""`segmentation`: mIoU and pixel accuracy against sklearn, masks read as the ADE20K contract
says, and a head on a random-init ResNet-18's maps that learns colour regions."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from helpers import require_plugins
from PIL import Image

from ssl_core import Dataset, ImageRecord
from ssl_core.errors import ComponentError, DataError
from ssl_core.measure.evaluation import evaluate
from ssl_core.measure.features import FeatureCache
from ssl_core.testing import check_params_reject_unknown_keys, check_registers_cleanly, fresh_host
from sslc_plugins import segmentation as plugin
from sslc_plugins.resnet import ResNet18, ResNetParams
from sslc_plugins.segmentation import (
    Segmentation,
    SegmentationParams,
    confusion_matrix,
    read_mask,
    resize_nearest,
    segmentation_scores,
)

COLOURS = {1: (210, 40, 40), 2: (40, 190, 50), 3: (40, 60, 210)}  # class -> RGB


class TinyAde(Dataset):
    """ADEChallengeData2016 in miniature: images/{subset}/*.png and annotations/{subset}/*.png
    (uint8, 0 = ignore, classes 1..3). Each image is cut into 2-3 vertical stripes, each filled
    with its class's colour plus noise; the two columns at each cut are unlabelled (0)."""

    subsets: ClassVar[tuple[str, ...]] = ("training", "validation")
    num_classes = 3
    class_names = ("red", "green", "blue")
    ignore_index = 0

    def __init__(self, root: Path, counts: tuple[int, int] = (24, 10), size: tuple[int, int] = (40, 32),
                 seed: int = 0) -> None:
        self.root = root
        rng = np.random.default_rng(seed)
        w, h = size
        for subset, n in zip(self.subsets, counts, strict=True):
            (root / "images" / subset).mkdir(parents=True, exist_ok=True)
            (root / "annotations" / subset).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                regions = np.zeros((h, w), dtype=np.uint8)
                cuts = sorted(rng.choice(np.arange(8, w - 8), size=int(rng.integers(1, 3)), replace=False))
                edges = [0, *cuts, w]
                for lo, hi in zip(edges[:-1], edges[1:], strict=True):
                    regions[:, lo:hi] = rng.integers(1, 4)
                img = np.zeros((h, w, 3), dtype=np.float64)
                for c, rgb in COLOURS.items():
                    img[regions == c] = rgb
                img += rng.normal(0, 20, img.shape)
                mask = regions.copy()
                for cut in cuts:  # the two columns at each border: unlabelled
                    mask[:, cut - 1:cut + 1] = 0
                if rng.random() < 0.5:  # half the images turned 180 degrees
                    img, mask = np.rot90(img, 2), np.rot90(mask, 2)
                name = f"ADE_{subset}_{i:08d}"
                Image.fromarray(np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8))).save(
                    root / "images" / subset / f"{name}.png")
                Image.fromarray(np.ascontiguousarray(mask)).save(root / "annotations" / subset / f"{name}.png")

    def records(self, subset: str | None = None) -> list[ImageRecord]:
        subset = subset or self.subsets[0]
        return [ImageRecord(p, meta={"mask": self.root / "annotations" / subset / p.name})
                for p in sorted((self.root / "images" / subset).glob("*.png"))]


@pytest.fixture(autouse=True)
def _plugins() -> None:
    require_plugins("segmentation")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> TinyAde:
    return TinyAde(tmp_path_factory.mktemp("ade"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> FeatureCache:
    return FeatureCache(tmp_path_factory.mktemp("cache"))


def encoder() -> ResNet18:
    torch.manual_seed(0)
    return ResNet18(ResNetParams(small_input=True))


FAST = {"image_size": 32, "label_size": 32, "layer": "layer2", "epochs": 6, "batch_size": 8,
        "lr": 0.05, "hidden_dim": 32}


def run(ds: Dataset, cache: FeatureCache | None, test_dataset: Dataset | None = None, **params):
    evaluator = Segmentation(SegmentationParams(**{**FAST, **params}))
    row, used = evaluate(encoder(), evaluator, ds, test_dataset=test_dataset, cache=cache,
                         encoder_id="random-resnet18")
    return row, used


# -- the scores -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_miou_and_pixel_accuracy_equal_sklearns(seed: int) -> None:
    from sklearn.metrics import accuracy_score, jaccard_score
    from sklearn.metrics import confusion_matrix as sk_confusion

    rng = np.random.default_rng(seed)
    k = 6
    gt = rng.integers(-1, k - 1, size=(3, 17, 13))  # class k-1 never in the ground truth
    pred = np.where(rng.random(gt.shape) < 0.6, gt, rng.integers(0, k - 2, size=gt.shape))
    pred[pred < 0] = 0
    if seed % 2:
        pred[0, 0, 0] = k - 1  # predicted only: IoU 0, counted in the mean
    cm = confusion_matrix(torch.from_numpy(gt), torch.from_numpy(pred), k).numpy()
    keep = gt >= 0  # the ignore label never counts
    y, p = gt[keep], pred[keep]
    np.testing.assert_array_equal(cm, sk_confusion(y, p, labels=list(range(k))))
    s = segmentation_scores(cm)
    present = sorted(set(y) | set(p))
    assert s["mIoU"] == pytest.approx(100 * jaccard_score(y, p, labels=present, average="macro"))
    np.testing.assert_allclose(s["iou"][present], 100 * jaccard_score(y, p, labels=present, average=None))
    assert s["pixel_acc"] == pytest.approx(100 * accuracy_score(y, p))
    assert s["scored_classes"] == len(present) == (k if seed % 2 else k - 1)
    assert np.isnan(s["iou"][[c for c in range(k) if c not in present]]).all()


def test_miou_is_not_the_mean_over_all_classes() -> None:
    cm = np.array([[5, 0, 0], [0, 5, 0], [0, 0, 0]])  # class 2 absent everywhere
    s = segmentation_scores(cm)
    assert s["mIoU"] == 100.0 and s["scored_classes"] == 2 and np.isnan(s["iou"][2])
    assert s["pixel_acc"] == 100.0


def test_nearest_resize_keeps_classes_and_matches_pil() -> None:
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 5, size=(23, 31)).astype(np.uint8)
    for h, w in ((10, 12), (23, 31), (50, 70), (7, 64)):
        out = resize_nearest(mask, h, w)
        assert out.shape == (h, w) and set(np.unique(out)) <= set(np.unique(mask))
        np.testing.assert_array_equal(out, np.asarray(Image.fromarray(mask).resize((w, h), Image.NEAREST)))


# -- masks ----------------------------------------------------------------------------------


def test_mask_reading_maps_ignore_to_minus_one(world: TinyAde) -> None:
    rec = world.records("validation")[0]
    raw = np.asarray(Image.open(rec.meta["mask"]))
    out = read_mask(rec, 3, 0)
    assert out.shape == raw.shape and out.dtype == np.int16
    np.testing.assert_array_equal(out, raw.astype(np.int16) - 1)
    assert (out == -1).any() and set(np.unique(out)) <= {-1, 0, 1, 2}


def test_mask_of_another_size_names_both_files(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((8, 10, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.ones((8, 9), dtype=np.uint8)).save(tmp_path / "a_mask.png")
    with pytest.raises(DataError, match=r"a_mask\.png is 9 x 8 but its image .*a\.png is 10 x 8"):
        read_mask(ImageRecord(tmp_path / "a.png", meta={"mask": tmp_path / "a_mask.png"}), 3, 0)


@pytest.mark.parametrize("case", ["no-meta", "rgb", "value", "missing"])
def test_bad_masks_are_data_errors_naming_the_file(tmp_path: Path, case: str) -> None:
    Image.fromarray(np.zeros((8, 10, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    mask = tmp_path / "m.png"
    if case == "rgb":
        Image.fromarray(np.ones((8, 10, 3), dtype=np.uint8)).save(mask)
    elif case == "value":
        Image.fromarray(np.full((8, 10), 7, dtype=np.uint8)).save(mask)
    meta = {} if case == "no-meta" else {"mask": mask}
    expected = {"no-meta": r"a\.png has no mask", "rgb": r"m\.png is a RGB image",
                "value": r"m\.png holds value\(s\) 7, outside the classes 1\.\.3",
                "missing": r"cannot read mask .*m\.png"}[case]
    with pytest.raises(DataError, match=expected):
        read_mask(ImageRecord(tmp_path / "a.png", meta=meta), 3, 0)


def test_a_bad_test_mask_fails_before_any_feature_is_extracted(tmp_path: Path) -> None:
    ds = TinyAde(tmp_path, counts=(2, 2))
    bad = ds.records("validation")[1].meta["mask"]
    Image.fromarray(np.ones((5, 5), dtype=np.uint8)).save(bad)
    enc = encoder()
    calls = []
    enc.conv1.register_forward_hook(lambda *a: calls.append(1))  # any use of the trunk
    with pytest.raises(DataError, match=str(bad.name)):
        evaluate(enc, Segmentation(SegmentationParams(**FAST)), ds, cache=None, encoder_id="x")
    assert not calls


def test_a_dataset_without_num_classes_is_a_data_error(world: TinyAde) -> None:
    class NoClasses(Dataset):
        root = world.root

        def records(self, subset=None):
            return world.records(subset)

    with pytest.raises(DataError, match="num_classes"):
        Segmentation(SegmentationParams(**FAST)).evaluate(NoClasses(), lambda *a: None)


def test_a_pooled_layer_is_a_component_error(world: TinyAde) -> None:
    def pooled(name, records, pre):  # what a FeatureFn gives for layer "pooled"
        assert pre.layer == "pooled"
        return np.zeros((len(records), 8), dtype=np.float32)

    with pytest.raises(ComponentError, match="not N x C x h x w"):
        Segmentation(SegmentationParams(**{**FAST, "layer": "pooled"})).evaluate(world, pooled)


# -- learning -------------------------------------------------------------------------------


def test_head_on_random_resnet18_maps_learns_colour_regions(world: TinyAde, cache: FeatureCache) -> None:
    row, used = run(world, cache)
    m, d = row["metrics"], row["details"]
    # chance: ~33% pixel accuracy, ~20-33 mIoU
    assert m["pixel_acc"] > 85 and m["mIoU"] > 70, (m, d["train_loss"])
    assert d["scored_classes"] == 3 and set(d["iou"]) == {"red", "green", "blue"}
    assert d["train_loss"][-1] < 0.5 * d["train_loss"][0]
    assert d["feature_shape"] == [128, 16, 16] and used[0].features.dtype == np.float16
    assert [f["layer"] for f in row["features"]] == ["layer2", "layer2"]
    # every labelled pixel of the test masks, at their own 40 x 32 size, and only those
    labelled = sum(int((np.asarray(Image.open(r.meta["mask"])) != 0).sum())
                   for r in world.records("validation"))
    assert d["labelled_test_pixels"] == labelled < 10 * 40 * 32


def test_seeded_and_cached_the_result_repeats(world: TinyAde, cache: FeatureCache) -> None:
    a, _ = run(world, cache, epochs=2)
    b, _ = run(world, cache, epochs=2)
    assert [f["cache"] for f in b["features"]] == ["hit", "hit"]
    assert a["metrics"] == b["metrics"] and a["details"]["train_loss"] == b["details"]["train_loss"]
    c, _ = run(world, cache, epochs=2, seed=1)
    assert c["details"]["train_loss"] != a["details"]["train_loss"]


def test_label_resolution_scores_at_label_size(world: TinyAde, cache: FeatureCache) -> None:
    row, _ = run(world, cache, epochs=1, test_resolution="label", label_size=16)
    d = row["details"]
    assert d["label_size"] == 16 and d["labelled_test_pixels"] <= 10 * 16 * 16


def test_second_dataset_must_share_the_classes(world: TinyAde, tmp_path: Path, cache: FeatureCache) -> None:
    other = TinyAde(tmp_path, counts=(1, 3), seed=5)
    row, _ = run(world, cache, test_dataset=other, epochs=1)
    assert row["details"]["test_rows"] == 3
    other.num_classes = 4  # type: ignore[misc]
    other.class_names = ("red", "green", "blue", "grey")  # type: ignore[misc]
    with pytest.raises(DataError, match="same class list"):
        run(world, cache, test_dataset=other, epochs=1)


def test_plugin_contract() -> None:
    check_registers_cleanly(plugin, "segmentation")
    registry = fresh_host(plugin, "segmentation").registry
    check_params_reject_unknown_keys("evaluator", "segmentation", registry=registry)
    ev = registry.create("evaluator", {"type": "segmentation", "layer": "layer3"})
    assert isinstance(ev, Segmentation) and ev.dataset_type == "ade20k"
    assert ev.params.label_size == 64 and ev.params.test_resolution == "original"
    for bad in ({"test_resolution": "full"}, {"dropout": 1.0}, {"feature_dtype": "int8"}):
        with pytest.raises(ComponentError):
            registry.create("evaluator", {"type": "segmentation", **bad})


@pytest.mark.gpu
def test_head_trains_and_scores_on_cuda_as_on_cpu(world: TinyAde) -> None:
    """The head's CUDA path (seeding, training, scoring on the device) learns as the CPU
    one does; the two differ only by float rounding in the convolutions."""
    cpu, _ = run(world, None, device="cpu")
    gpu, _ = run(world, None, device="cuda")
    assert gpu["metrics"]["pixel_acc"] > 85 and gpu["metrics"]["mIoU"] > 70
    assert abs(gpu["metrics"]["pixel_acc"] - cpu["metrics"]["pixel_acc"]) < 5


def _maps(n: int, side: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    maps = rng.normal(size=(n, 4, side, side)).astype(np.float32)
    targets = rng.integers(0, 3, size=(n, 4, 4)).astype(np.int64)
    return maps, targets


def test_a_loss_gone_nan_stops_with_an_error_not_an_miou() -> None:
    """A NaN head predicts one class everywhere: its mIoU would be reported as a number."""
    maps, targets = _maps(4, 2)
    maps[1, 0, 0, 0] = np.inf
    with pytest.raises(DataError, match=r"training loss is nan at epoch 1") as info:
        plugin.train_head(maps, targets, 3, plugin.SegmentationParams(epochs=2, batch_size=2,
                                                                       device="cpu"))
    assert "lr" in (info.value.hint or "") and "feature" in (info.value.hint or "")


@pytest.mark.parametrize(("n", "batch_size"), [(4, 1), (1, 4)])
def test_one_value_per_channel_is_one_clear_error(n: int, batch_size: int) -> None:
    """BatchNorm cannot train on one 1x1 map: an error naming batch_size, not a ValueError."""
    maps, targets = _maps(n, 1)
    with pytest.raises(DataError, match="batch_size") as info:
        plugin.train_head(maps, targets, 3, plugin.SegmentationParams(
            epochs=1, batch_size=batch_size, device="cpu"))
    assert "1x1" in info.value.message


def test_batch_size_one_on_spatial_maps_trains() -> None:
    maps, targets = _maps(3, 2)
    head, losses = plugin.train_head(maps, targets, 3, plugin.SegmentationParams(
        epochs=1, batch_size=1, device="cpu"))
    assert np.isfinite(losses).all()
