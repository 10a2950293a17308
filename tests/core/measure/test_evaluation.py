"""The evaluation module: features shared through the cache, result shape, saved features."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ssl_core.errors import ComponentError, DataError
from ssl_core.interfaces import (
    Dataset,
    Encoder,
    EvaluationResult,
    Evaluator,
    ImageRecord,
    Preprocessing,
    ProbeItem,
    ProbeSet,
)
from ssl_core.measure.evaluation import check_dataset_names, evaluate, save_features, split_config
from ssl_core.measure.features import (
    FeatureCache,
    ImageRows,
    RowImages,
    feature_key_parts,
    rows_key_parts,
)


class Tiny(Encoder):
    feature_dim = 4

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.relu(self.conv(x)).mean(dim=(2, 3))

    def feature_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"pooled": self.forward(x)}


class Folder(Dataset):
    subsets: ClassVar[tuple[str, ...]] = ("train", "test")

    def __init__(self, root: Path) -> None:
        self.root = root
        rng = np.random.default_rng(0)
        self.rows: dict[str, list[ImageRecord]] = {}
        for s in self.subsets:
            (root / s).mkdir(parents=True, exist_ok=True)
            self.rows[s] = []
            for i in range(4):
                p = root / s / f"{i}.png"
                Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(p)
                self.rows[s].append(ImageRecord(p, label=f"c{i % 2}"))

    def records(self, subset: str | None = None) -> list[ImageRecord]:
        return self.rows[subset or "train"]


class MeanEval(Evaluator):
    """Asks for both subsets' features; reports their mean and the shapes it got."""

    dataset_type = "folder"

    def __init__(self, resize: int | None = None, metric: object = None) -> None:
        self.pre = Preprocessing((16, 16), resize=resize)
        self.metric = metric

    def evaluate(self, dataset, features, *, test_dataset=None, progress=None):
        a = features("train", dataset.records("train"), self.pre)
        b = features("test", (test_dataset or dataset).records("test"), self.pre)
        value = self.metric if self.metric is not None else float(a.mean() + b.mean())
        return EvaluationResult({"score": value, "nan": float("nan")}, {"rows": [len(a), len(b)]})


def test_features_are_shared_between_evaluators_through_the_cache(tmp_path: Path) -> None:
    ds, enc, cache = Folder(tmp_path / "data"), Tiny(), FeatureCache(tmp_path / "cache")
    row, used = evaluate(enc, MeanEval(), ds, cache=cache, encoder_id="e", batch_size=2)
    assert enc.calls == 4 and [f["cache"] for f in row["features"]] == ["miss", "miss"]
    assert row["metrics"]["nan"] is None, "NaN metrics become null (valid JSON)"
    assert row["details"] == {"rows": [4, 4]} and row["encoder_id"] == "e"
    again, _ = evaluate(enc, MeanEval(), ds, cache=cache, encoder_id="e", batch_size=2)
    assert enc.calls == 4, "a second evaluator on the same images reuses the features"
    assert [f["cache"] for f in again["features"]] == ["hit", "hit"]
    assert again["metrics"] == row["metrics"]
    evaluate(enc, MeanEval(resize=18), ds, cache=cache, encoder_id="e", batch_size=2)
    assert enc.calls == 8, "another preprocessing is another entry"
    assert used[0].features.shape == (4, 4)


def test_rows_key_ignores_name_and_labels_but_not_pixels_or_preprocessing(tmp_path: Path) -> None:
    recs = Folder(tmp_path).records("train")
    pre = Preprocessing((16, 16))
    key = FeatureCache.key(rows_key_parts("e", ImageRows("a", recs, pre)))
    relabelled = [ImageRecord(r.path, label="x") for r in recs]
    assert key == FeatureCache.key(rows_key_parts("e", ImageRows("b", relabelled, pre)))
    assert key != FeatureCache.key(rows_key_parts("e", ImageRows("a", recs, Preprocessing((16, 16), 20))))
    boxed = [ImageRecord(r.path, box=(0, 0, 5, 5)) for r in recs]
    assert key != FeatureCache.key(rows_key_parts("e", ImageRows("a", boxed, pre)))
    # a probe set over the same images, same size, shares the entry
    ps = ProbeSet("p", [ProbeItem(r, "t", "c") for r in recs], (16, 16))
    assert FeatureCache.key(feature_key_parts("e", ps)) == key


def test_resize_then_center_crop(tmp_path: Path) -> None:
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, :10] = 255  # a white left quarter, outside the centre crop
    Image.fromarray(arr).save(tmp_path / "a.png")
    rows = ImageRows("x", [ImageRecord(tmp_path / "a.png")], Preprocessing((10, 10), resize=10))
    x = RowImages(rows)[0]
    assert tuple(x.shape) == (3, 10, 10)
    assert float(x.max()) < 0, "the shorter side goes to 10 (20 x 10), the centre 10 x 10 is black"


def test_save_features_writes_what_was_used(tmp_path: Path) -> None:
    ds = Folder(tmp_path / "data")
    _, used = evaluate(Tiny(), MeanEval(), ds, cache=None, encoder_id="e")
    out = save_features(tmp_path / "f.npz", used)
    with np.load(out, allow_pickle=False) as z:
        assert z["train.feat"].shape == (4, 4) and z["test.feat"].dtype == np.float32
        assert list(z["train.paths"]) == [str(r.path) for r in ds.records("train")]
        assert list(z["test.labels"]) == ["c0", "c1", "c0", "c1"]
        assert np.isnan(z["train.boxes"]).all()
        np.testing.assert_array_equal(z["train.feat"], used[0].features)


def test_non_numeric_metric_is_a_component_error(tmp_path: Path) -> None:
    with pytest.raises(ComponentError, match="not a number"):
        evaluate(Tiny(), MeanEval(metric="high"), Folder(tmp_path), cache=None, encoder_id="e")


def test_split_config_and_unknown_dataset_names() -> None:
    cfg = split_config({"type": "voc07-svm", "dataset": "voc", "model": "m", "n_jobs": 2})
    assert cfg.component == {"type": "voc07-svm", "n_jobs": 2}
    assert (cfg.model, cfg.dataset, cfg.test_dataset) == ("m", "voc", None)
    check_dataset_names(cfg, ["voc"], "evaluations.svm")
    with pytest.raises(DataError, match=r"evaluations.svm.dataset: no dataset named 'voc'"):
        check_dataset_names(cfg, ["coco"], "evaluations.svm")


# -- feature maps through the same path ------------------------------------------------------


class TinyMaps(Tiny):
    """Tiny with a spatial map: "grid" is the conv output at half resolution."""

    def feature_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls += 1
        grid = torch.nn.functional.avg_pool2d(torch.relu(self.conv(x)), 2)
        return {"grid": grid, "pooled": grid.mean(dim=(2, 3))}


class MapEval(Evaluator):
    """Asks for the train subset's maps with the given preprocessing; reports their mean."""

    def __init__(self, pre: Preprocessing) -> None:
        self.pre = pre

    def evaluate(self, dataset, features, *, test_dataset=None, progress=None):
        maps = features("train", dataset.records("train"), self.pre)
        return EvaluationResult({"mean": float(maps.astype(np.float64).mean())},
                                {"shape": list(maps.shape), "dtype": str(maps.dtype)})


def _old_rows_key_parts(encoder_id: str, rows: ImageRows) -> dict:
    """The pooled-feature key exactly as written before feature maps existed."""
    from ssl_core.kit.imageio import IMAGENET_MEAN, IMAGENET_STD
    from ssl_core.measure.features import PREPROCESS_VERSION, images_fingerprint

    pre = rows.preprocessing
    return {"precision": "fp32", "encoder_id": encoder_id, "encoder_class": None,
            "rows": len(rows.records), "images": images_fingerprint(rows.records),
            "preprocess": {"image_size": list(pre.image_size), "resize": pre.resize,
                           "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                           "version": PREPROCESS_VERSION}}


def test_pooled_keys_are_unchanged_and_layers_get_their_own(tmp_path: Path) -> None:
    recs = Folder(tmp_path).records("train")
    for pre in (Preprocessing((16, 16)), Preprocessing((16, 16), resize=20),
                Preprocessing((16, 16), layer="pooled", dtype="float32")):
        rows = ImageRows("a", recs, pre)
        assert rows_key_parts("e", rows) == _old_rows_key_parts("e", rows), \
            "pooled float32 keys must stay as they were: existing caches stay valid"
    keys = {FeatureCache.key(rows_key_parts("e", ImageRows("a", recs, pre))) for pre in (
        Preprocessing((16, 16)), Preprocessing((16, 16), layer="layer3"),
        Preprocessing((16, 16), layer="layer4"), Preprocessing((16, 16), layer="layer3", dtype="float16"))}
    assert len(keys) == 4, "each (layer, dtype) is its own cache entry"


def test_feature_maps_are_extracted_once_and_cached(tmp_path: Path) -> None:
    ds, enc, cache = Folder(tmp_path / "data"), TinyMaps(), FeatureCache(tmp_path / "cache")
    pre = Preprocessing((16, 16), layer="grid")
    row, used = evaluate(enc, MapEval(pre), ds, cache=cache, encoder_id="e", batch_size=3)
    maps = used[0].features
    assert maps.shape == (4, 4, 8, 8) and maps.dtype == np.float32 and enc.calls == 2
    entry = row["features"][0]
    assert (entry["layer"], entry["shape"], entry["cache"]) == ("grid", [4, 8, 8], "miss")
    # the very maps the encoder gives, in record order
    batch = torch.stack([RowImages(ImageRows("x", ds.records("train"), pre))[i] for i in range(4)])
    with torch.no_grad():
        np.testing.assert_allclose(maps, enc.feature_maps(batch)["grid"].numpy(), rtol=1e-5, atol=1e-6)
    calls = enc.calls
    again, used2 = evaluate(enc, MapEval(pre), ds, cache=cache, encoder_id="e", batch_size=3)
    assert enc.calls == calls and again["features"][0]["cache"] == "hit"
    np.testing.assert_array_equal(used2[0].features, maps)
    # pooled features of the same images are another entry, with the old row shape
    pooled, _ = evaluate(enc, MapEval(Preprocessing((16, 16))), ds, cache=cache, encoder_id="e")
    assert pooled["details"]["shape"] == [4, 4] and "layer" not in pooled["features"][0]


def test_float16_maps_stay_float16_in_the_cache_and_saved_file(tmp_path: Path) -> None:
    ds, enc, cache = Folder(tmp_path / "data"), TinyMaps(), FeatureCache(tmp_path / "cache")
    full, _ = evaluate(enc, MapEval(Preprocessing((16, 16), layer="grid")), ds, cache=cache,
                       encoder_id="e")
    pre = Preprocessing((16, 16), layer="grid", dtype="float16")
    row, used = evaluate(enc, MapEval(pre), ds, cache=cache, encoder_id="e")
    assert row["details"]["dtype"] == "float16" and row["features"][0]["cache"] == "miss"
    assert abs(row["metrics"]["mean"] - full["metrics"]["mean"]) < 1e-3
    again, used2 = evaluate(enc, MapEval(pre), ds, cache=cache, encoder_id="e")
    assert again["features"][0]["cache"] == "hit" and used2[0].features.dtype == np.float16
    with np.load(save_features(tmp_path / "f.npz", used), allow_pickle=False) as z:
        assert z["train.feat"].dtype == np.float16 and z["train.feat"].shape == (4, 4, 8, 8)


def test_unknown_or_flat_layer_is_a_component_error_naming_the_choices(tmp_path: Path) -> None:
    ds = Folder(tmp_path)
    with pytest.raises(ComponentError, match="no feature map 'layer9'") as err:
        evaluate(TinyMaps(), MapEval(Preprocessing((16, 16), layer="layer9")), ds, cache=None,
                 encoder_id="e")
    assert "grid, pooled" in (err.value.hint or "")

    class FlatNamed(TinyMaps):
        def feature_maps(self, x):
            return {**super().feature_maps(x), "vector": torch.zeros(len(x), 3)}

    with pytest.raises(ComponentError, match="not N x C x h x w") as err:
        evaluate(FlatNamed(), MapEval(Preprocessing((16, 16), layer="vector")), ds, cache=None,
                 encoder_id="e")
    assert "grid" in (err.value.hint or "")


def test_maps_that_cannot_fit_name_the_layer_and_what_to_lower(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ssl_core.errors import SslcError

    ds = Folder(tmp_path)
    monkeypatch.setattr("ssl_core.kit.memory.available_bytes", lambda: 1000)  # pooled: 4 x 4 x 4 B fit
    evaluate(TinyMaps(), MapEval(Preprocessing((16, 16))), ds, cache=None, encoder_id="e")
    with pytest.raises(SslcError, match=r"grid feature maps of 'train' \(4 rows x 4 x 8 x 8, "
                                        r"float32\) needs") as err:
        evaluate(TinyMaps(), MapEval(Preprocessing((16, 16), layer="grid")), ds, cache=None,
                 encoder_id="e")
    assert "image_size" in (err.value.hint or "") and "layer" in (err.value.hint or "")
