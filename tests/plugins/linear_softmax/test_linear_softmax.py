"""`linear-softmax`: MoCo's linear schedule on cached features; top-1 and top-5."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from helpers import require_plugins

from ssl_core import Dataset, ImageRecord, Preprocessing
from ssl_core.errors import DataError
from ssl_core.plugin.host import get_registry
from sslc_plugins.linear_softmax import top_k_accuracy


@pytest.fixture(autouse=True)
def _plugins() -> None:
    require_plugins("linear-softmax")


class Labelled(Dataset):
    subsets: ClassVar[tuple[str, ...]] = ("train", "val")

    def __init__(self, per_class: int = 10, classes: int = 6, seed: int = 0) -> None:
        self.root = Path("/nowhere")
        rng = np.random.default_rng(seed)
        self.rows = {s: [ImageRecord(Path(f"/nowhere/{s}/{i}.png"), label=f"c{i % classes}",
                                     meta={"x": rng.normal(size=8)})
                         for i in range(per_class * classes)] for s in self.subsets}

    def records(self, subset: str | None = None) -> list[ImageRecord]:
        return self.rows[subset or "train"]


def blob_features(name: str, records, pre: Preprocessing) -> np.ndarray:
    """Class centre (one-hot, scaled) plus noise: linearly separable."""
    assert pre == Preprocessing((32, 32), resize=36)
    out = []
    for r in records:
        centre = np.zeros(8)
        centre[int(r.meta.get("true", r.label)[1:])] = 3.0  # the image's true class
        out.append(centre + 0.3 * r.meta["x"])
    return np.asarray(out, dtype=np.float32)


def _evaluator(**params):
    cfg = {"type": "linear-softmax", "image_size": 32, "resize": 36, "epochs": 20,
           "milestones": [12, 16], "batch_size": 16, "lr": 1.0, **params}
    return get_registry().create("evaluator", cfg)


def test_separable_features_give_full_accuracy() -> None:
    result = _evaluator().evaluate(Labelled(), blob_features)
    assert result.metrics == {"top1": 100.0, "top5": 100.0}
    assert result.details["classes"] == 6 and result.details["val_subset"] == "val"


def test_shuffled_labels_fall_to_chance() -> None:
    ds = Labelled()
    rng = np.random.default_rng(1)
    ds.rows["val"] = [ImageRecord(r.path, label=f"c{rng.integers(6)}", meta={**r.meta, "true": r.label})
                      for r in ds.rows["val"]]
    result = _evaluator().evaluate(ds, blob_features)
    assert result.metrics["top1"] < 50 and result.metrics["top5"] < 100


def test_second_dataset_is_the_test_set_and_is_deterministic() -> None:
    a = _evaluator().evaluate(Labelled(seed=0), blob_features, test_dataset=Labelled(seed=3))
    b = _evaluator().evaluate(Labelled(seed=0), blob_features, test_dataset=Labelled(seed=3))
    assert a.metrics == b.metrics and a.details["val_subset"] == "train"


def test_unseen_val_class_and_missing_val_subset_are_data_errors() -> None:
    ds = Labelled()
    ds.rows["val"][0] = ImageRecord(Path("/x.png"), label="zebra", meta={"x": np.zeros(8)})
    with pytest.raises(DataError, match="zebra"):
        _evaluator().evaluate(ds, blob_features)
    with pytest.raises(DataError, match="no subset 'val' to test on"):
        _evaluator(train_subset="val").evaluate(ds, blob_features)


def test_top_k_accuracy() -> None:
    logits = np.array([[0.1, 0.9, 0.0], [0.8, 0.05, 0.15], [0.2, 0.3, 0.5]])
    y = np.array([1, 2, 0])
    assert top_k_accuracy(logits, y, 1) == pytest.approx(100 / 3)
    assert top_k_accuracy(logits, y, 2) == pytest.approx(200 / 3)
    assert top_k_accuracy(logits, y, 3) == 100.0


def test_a_loss_gone_nan_stops_with_an_error_not_an_accuracy() -> None:
    """A diverged classifier's top-1 would be reported as a number (issue 20, item 5)."""
    from sslc_plugins.linear_softmax import LinearSoftmaxParams, train_linear

    x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    x[3, 1] = np.inf
    y = np.arange(8) % 2
    with pytest.raises(DataError, match=r"training loss is nan at epoch 1") as info:
        train_linear(x, y, 2, LinearSoftmaxParams(epochs=2, batch_size=4, device="cpu",
                                                  milestones=[1]))
    assert "lr" in (info.value.hint or "")
