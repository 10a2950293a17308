"""`voc07-svm`: the AP against a plainly written all-point VOC AP, the protocol's details,
and the evaluator on VOC full images and cropped boxes (features from a stand-in FeatureFn)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from evalkit import standard_voc
from helpers import require_plugins

from ssl_core import EvaluationResult, ImageRecord, Preprocessing, crop_box, load_rgb
from ssl_core.errors import ComponentError
from ssl_core.plugin.host import get_registry
from sslc_plugins.voc07_svm import fit_and_score, l2_normalise, svm_sweep, target_matrix, voc_ap


@pytest.fixture(autouse=True)
def _plugins() -> None:
    require_plugins("voc07-svm")


def plain_voc_ap(scores, positive) -> float:
    """All-point VOC AP written out: rank by score, precision/recall at each rank, make
    precision monotone from the right, add precision x recall step at each new recall."""
    ranked = sorted(zip(scores, positive, strict=True), key=lambda sp: -sp[0])
    npos = sum(1 for p in positive if p)
    tp = fp = 0
    recalls, precisions = [0.0], [0.0]
    for _, is_pos in ranked:
        if is_pos:
            tp += 1
        else:
            fp += 1
        recalls.append(tp / npos)
        precisions.append(tp / (tp + fp))
    recalls.append(1.0)
    precisions.append(0.0)
    for i in range(len(precisions) - 2, -1, -1):
        precisions[i] = max(precisions[i], precisions[i + 1])
    ap = 0.0
    for i in range(1, len(recalls)):
        if recalls[i] != recalls[i - 1]:
            ap += (recalls[i] - recalls[i - 1]) * precisions[i]
    return ap


@pytest.mark.parametrize("seed", range(5))
def test_ap_equals_the_plain_all_point_ap(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    positive = rng.random(n) < 0.3
    positive[0] = True
    scores = rng.normal(size=n) + positive * rng.random()
    assert voc_ap(scores, positive) == pytest.approx(plain_voc_ap(list(scores), list(positive)), abs=1e-12)


def test_ap_is_all_point_not_11_point() -> None:
    # ranks: +, -, + : all-point AP = 0.5 * 1 + 0.5 * 2/3 = 0.8333; 11-point gives 0.8485
    assert voc_ap(np.array([3.0, 2.0, 1.0]), np.array([True, False, True])) == pytest.approx(5 / 6)
    assert np.isnan(voc_ap(np.array([1.0]), np.array([False])))


def test_features_are_l2_normalised_like_the_benchmark() -> None:
    x = l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(x[0], [3 / 5.00001, 4 / 5.00001])
    assert np.isfinite(x).all()


def _blobs(n: int, classes: int, seed: int, dim: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centres = np.random.default_rng(99).normal(size=(classes, dim)) * 2  # same for train and test
    x = centres[y] + rng.normal(size=(n, dim))
    t = -np.ones((n, classes), dtype=np.int8)
    t[np.arange(n), y] = 1
    return x, t


@pytest.mark.slow
def test_sweep_test_ap_excludes_difficult_and_does_not_depend_on_n_jobs() -> None:
    x, t = _blobs(60, 3, 0)
    xt, tt = _blobs(45, 3, 1)
    tt[:6, 0] = 0  # difficult rows for class 0 at test
    t[:4, 1] = 0   # difficult at training: negatives
    costs = [0.01, 1.0, 100.0]
    one = svm_sweep(x, t, xt, tt, costs=costs, n_jobs=1)
    two = svm_sweep(x, t, xt, tt, costs=costs, n_jobs=2)
    np.testing.assert_array_equal(one["ap"], two["ap"])
    np.testing.assert_array_equal(one["cv_ap"], two["cv_ap"])
    assert one["chosen_cost"] == two["chosen_cost"]
    for c in range(3):
        # the chosen cost is the first best cross-validation AP
        assert one["chosen_cost"][c] == costs[int(np.argmax(one["cv_ap"][c]))]
        y = np.where(t[:, c] == 1, 1, -1)
        scores = fit_and_score(l2_normalise(x), y, l2_normalise(xt), one["chosen_cost"][c], 0)
        keep = tt[:, c] != 0
        expected = plain_voc_ap(list(scores[keep]), list(tt[keep, c] == 1))
        assert one["ap"][c] == pytest.approx(expected, abs=1e-12)
    assert (one["ap"] > 0.5).all(), "separable blobs are well classified"


def test_target_matrix_single_label_is_one_vs_rest(tmp_path: Path) -> None:
    recs = [ImageRecord(tmp_path / f"{i}.jpg", label=lab) for i, lab in enumerate("abca")]
    classes, mat = target_matrix(recs)
    assert classes == ["a", "b", "c"]
    assert mat.tolist() == [[1, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, -1, -1]]


def colour_features(name: str, records, pre: Preprocessing) -> np.ndarray:
    """A stand-in for the encoder: mean colour of each (cropped) image, plus the top-left
    colour, as features; checks the preprocessing the evaluator asked for."""
    assert pre == Preprocessing((24, 24))
    out = []
    for r in records:
        arr = np.asarray(crop_box(load_rgb(r.path), r.box, r.path), dtype=np.float64) / 255
        out.append(np.concatenate([arr.mean(axis=(0, 1)), arr[4, 4]]))
    return np.asarray(out, dtype=np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["voc2007", "voc2007-cropped-boxes"])
def test_evaluator_on_full_images_and_cropped_boxes(tmp_path: Path, kind: str) -> None:
    require_plugins("voc2007")
    standard_voc(tmp_path, per_subset=12)
    reg = get_registry()
    ds = reg.create("dataset", {"type": kind, "root": str(tmp_path)})
    ev = reg.create("evaluator", {"type": "voc07-svm", "image_size": 24, "n_jobs": 1,
                                  "costs": [0.1, 1.0, 10.0]})
    assert ev.dataset_type == "voc2007"
    result = ev.evaluate(ds, colour_features)
    assert isinstance(result, EvaluationResult)
    assert result.details["classes"] == ["chair", "diningtable", "dog"]
    assert set(result.details["ap"]) == {"chair", "diningtable", "dog"}
    assert result.metrics["mAP"] == pytest.approx(np.mean(list(result.details["ap"].values())))
    assert result.metrics["mAP"] > 90, "objects painted in their class colour are easy"
    # cropped boxes: 12 objects, the 3 difficult ones left out
    assert result.details["train_rows"] == 12


def test_bad_costs_are_component_errors() -> None:
    with pytest.raises(ComponentError, match="costs"):
        get_registry().create("evaluator", {"type": "voc07-svm", "costs": []})


def test_the_sweep_prints_no_sklearn_warnings_from_its_threads() -> None:
    """Non-convergence at max_iter is the protocol's: parallel fits must not leak it."""
    import warnings

    from sslc_plugins.voc07_svm import svm_sweep

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 16))
    t = np.where(rng.random((60, 4)) < 0.3, 1, -1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        svm_sweep(x, t, x[:20], t[:20], costs=(1e3, 1e4, 1e5), n_jobs=2)
    assert not [w for w in caught if "sklearn" in (w.filename or "") or "Liblinear" in str(w.message)]


def test_folds_above_a_class_s_positives_are_refused_before_fitting() -> None:
    """Every cross-validation AP would be NaN and the first cost would win silently."""
    from ssl_core import DataError

    x, t = _blobs(30, 3, 0)
    t[:, 0] = -1
    t[:2, 0] = 1  # class 0: 2 positives, fewer than 3 folds
    with pytest.raises(DataError, match=r"class 0 .*2 positive.*folds=3") as info:
        svm_sweep(x, t, x, t, costs=[1.0], folds=3, n_jobs=1)
    assert "folds" in (info.value.hint or "")
    t[:, 0] = 1
    t[0, 0] = -1  # one negative: also refused, named as negatives
    with pytest.raises(DataError, match=r"1 negative"):
        svm_sweep(x, t, x, t, costs=[1.0], folds=2, n_jobs=1)


def test_a_one_class_set_is_refused_for_lacking_negatives(tmp_path: Path) -> None:
    from ssl_core import DataError

    recs = [ImageRecord(tmp_path / f"{i}.jpg", label="dog") for i in range(6)]
    ev = get_registry().create("evaluator", {"type": "voc07-svm", "n_jobs": 1, "image_size": 8})

    def feats(name, records, pre):
        return np.random.default_rng(0).normal(size=(len(records), 4)).astype(np.float32)

    with pytest.raises(DataError, match="'dog' has no negative"):
        ev.evaluate(_ListDataset(recs), feats)


class _ListDataset:
    def __init__(self, records) -> None:
        self._records = records

    def records(self, subset: str):
        return self._records
