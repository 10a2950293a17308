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
from ssl_core.evaluation import check_dataset_names, evaluate, save_features, split_config
from ssl_core.features import (
    FeatureCache,
    ImageRows,
    RowImages,
    feature_key_parts,
    rows_key_parts,
)
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
    # a probe set over the same images keeps its own (unchanged) key
    ps = ProbeSet("p", [ProbeItem(r, "t", "c") for r in recs], (16, 16))
    assert set(feature_key_parts("e", ps)) == {"precision", "encoder_id", "encoder_class", "probe",
                                               "rows", "probe_set", "preprocess"}
    assert "resize" not in feature_key_parts("e", ps)["preprocess"]


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
