"""RIS against a plain oracle written straight from the 8 steps, plus alldata.pth interop."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from helpers import oracle_ris

from ssl_core.errors import DataError, SslcError
from ssl_core.measure.alldata import AllData, load_alldata, numpy_safe_globals, save_alldata
from ssl_core.measure.ris import RISResult, representation_invariance_score


def _random_case(rng, n_traj, size_range, d, n_classes=None, relu=True, rounding=None):
    sizes = rng.integers(size_range[0], size_range[1] + 1, n_traj)
    traj = np.repeat(np.arange(n_traj), sizes)
    centers = rng.standard_normal((n_traj, d))
    feat = centers[traj] + 0.7 * rng.standard_normal((len(traj), d))
    if relu:
        feat = np.maximum(feat, 0)
    if rounding is not None:
        feat = np.round(feat, rounding)
    perm = rng.permutation(len(traj))
    feat, traj = feat[perm], traj[perm]
    cls = None
    if n_classes is not None:
        cls = rng.integers(0, n_classes, n_traj)[traj]
    return feat.astype(np.float32), traj, cls


def _assert_close(result: RISResult, expected: dict[int, float]) -> None:
    assert set(result.scores) == set(expected)
    for k, v in expected.items():
        assert result.scores[k] == pytest.approx(v, abs=1e-6, rel=1e-9), k


# -- hand-computed cases (check the oracle as well as sslc) -----------------------------------


def test_hand_computed_6x2():
    # Two trajectories, classes None -> C = 2, p = 50, idx = 3.
    # col 0: t_pos = 4, t_neg = 3, G = 1/2; A fires negatively 2/3, B positively 2/3.
    # col 1 (with ties at 0): t_pos = 7, t_neg = 0, G = 1/2; A never fires, B 2/3.
    # scores A = [4/3, 0], B = [4/3, 4/3] -> top1 = 4/3 * 50, top2 = mean(2/3, 4/3) * 50.
    feat = np.array([[1, 0], [2, 0], [3, 7], [4, 0], [5, 8], [6, 9]], dtype=np.float64)
    traj = ["A", "A", "A", "B", "B", "B"]
    expected = {1: 200 / 3, 2: 50.0}
    assert oracle_ris(feat, traj, top_k=(1, 2)) == pytest.approx(expected)
    res = representation_invariance_score(feat, traj, top_k=(1, 2))
    _assert_close(res, expected)
    assert res.percentile == 50.0
    assert (res.num_classes, res.num_trajectories, res.num_skipped, res.num_rows) == (2, 2, 0, 6)


def test_hand_computed_skipped_trajectory_and_empty_class():
    # C = 2 (x, y), p = 50, idx = 7*50//100 = 3: t_pos = t_neg = 4, G = 4/7.
    # a = (1,2,3): 3 rows < 4 -> 1; b = (4,5,6): 2 rows > 4 -> 2/3; c (class y) has 1 row: skipped.
    # L[x] = (1 + 2/3) / 2 = 5/6, L[y] = 0 -> RIS_1 = mean(5/6 / (4/7), 0) * 50.
    feat = np.arange(1, 8, dtype=np.float32)[:, None]
    traj = ["a", "a", "a", "b", "b", "b", "c"]
    classes = ["x", "x", "x", "x", "x", "x", "y"]
    expected = {1: (5 / 6) / (4 / 7) / 2 * 50}
    assert oracle_ris(feat, traj, classes, top_k=(1,)) == pytest.approx(expected)
    res = representation_invariance_score(feat, traj, classes, top_k=(1,))
    _assert_close(res, expected)
    assert (res.num_trajectories, res.num_skipped, res.num_classes) == (2, 1, 2)


def test_trajectory_class_is_its_first_row():
    # Trajectory t0's first row is class 1, so t0 counts for class 1 (as in the authors' script).
    rng = np.random.default_rng(3)
    feat = rng.standard_normal((12, 4))
    traj = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    classes = [1, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2]
    res = representation_invariance_score(feat, traj, classes, top_k=(2,))
    _assert_close(res, oracle_ris(feat, traj, classes, top_k=(2,)))


# -- sslc against the oracle on random features ---------------------------------------------


@pytest.mark.parametrize(
    ("seed", "n_traj", "sizes", "d", "n_classes", "relu", "rounding"),
    [
        (0, 12, (3, 9), 30, None, True, None),  # classes None, C = 12
        (1, 30, (1, 8), 26, 5, True, None),  # short trajectories, shared classes
        (2, 8, (4, 12), 25, 2, False, None),  # C = 2 -> p = 50
        (3, 40, (2, 6), 27, None, True, 1),  # C = 40 -> p caps at 95; heavy ties
        (4, 15, (3, 5), 40, 3, True, 0),  # C = 3 (p is not a round number); extreme ties
        (5, 6, (20, 40), 28, 1, False, None),  # one class -> p = 0
    ],
)
def test_matches_oracle(seed, n_traj, sizes, d, n_classes, relu, rounding):
    rng = np.random.default_rng(seed)
    feat, traj, cls = _random_case(rng, n_traj, sizes, d, n_classes, relu, rounding)
    top_k = (1, 10, 25)
    expected = oracle_ris(feat, traj, cls, top_k=top_k)
    _assert_close(representation_invariance_score(feat, traj, cls, top_k=top_k), expected)
    # Tiny blocks (one neuron at a time) must give the same numbers.
    small = representation_invariance_score(feat, traj, cls, top_k=top_k, max_block_bytes=1)
    _assert_close(small, expected)


def test_percentile_values():
    rng = np.random.default_rng(7)
    feat, traj, _ = _random_case(rng, 4, (3, 3), 12, None)
    assert representation_invariance_score(feat, traj, top_k=(5,)).percentile == 75.0
    feat, traj, _ = _random_case(rng, 30, (3, 3), 12, None)
    assert representation_invariance_score(feat, traj, top_k=(5,)).percentile == 95.0
    feat, traj, cls = _random_case(rng, 6, (3, 4), 12, 2)
    assert representation_invariance_score(feat, traj, cls, top_k=(5,)).percentile == 50.0


def test_string_ids_torch_input_and_row_order():
    rng = np.random.default_rng(11)
    feat, traj, cls = _random_case(rng, 10, (3, 7), 16, 3)
    straj = [f"seq-{t:03d}" for t in traj]
    scls = [["car", "dog", "mug"][c] for c in cls]
    expected = oracle_ris(feat, straj, scls, top_k=(4, 16))
    _assert_close(representation_invariance_score(feat, straj, scls, top_k=(4, 16)), expected)
    _assert_close(
        representation_invariance_score(
            torch.from_numpy(feat), torch.from_numpy(traj), torch.from_numpy(cls), top_k=(4, 16)
        ),
        oracle_ris(feat, traj, cls, top_k=(4, 16)),
    )
    # Rows already grouped by trajectory (the fast in-order path) give the same numbers.
    order = np.argsort(traj, kind="stable")
    grouped = representation_invariance_score(
        feat[order], [straj[i] for i in order], [scls[i] for i in order], top_k=(4, 16)
    )
    _assert_close(
        grouped,
        oracle_ris(feat[order], [straj[i] for i in order], [scls[i] for i in order], top_k=(4, 16)),
    )


def test_mixed_id_types_and_float64():
    rng = np.random.default_rng(12)
    feat = rng.standard_normal((9, 5))
    traj = [1, 1, 1, "b", "b", "b", (2, 3), (2, 3), (2, 3)]
    res = representation_invariance_score(feat, traj, top_k=(2,))
    _assert_close(res, oracle_ris(feat, traj, top_k=(2,)))


def test_as_dict_is_json_friendly():
    rng = np.random.default_rng(5)
    feat, traj, _ = _random_case(rng, 5, (3, 4), 30, None)
    d = representation_invariance_score(feat, traj).as_dict()
    assert set(d) >= {"top10", "top25", "percentile", "num_classes", "num_trajectories"}
    assert all(isinstance(v, int | float) for k, v in d.items() if k not in ("intervals", "bootstrap"))
    assert json.loads(json.dumps(d)) == d
    assert math.isfinite(d["top10"]) and d["top10"] >= d["top25"]


# -- bad input -------------------------------------------------------------------------------


def test_error_length_mismatch():
    with pytest.raises(SslcError, match="trajectories has 5 entries but features have 6 rows") as e:
        representation_invariance_score(np.zeros((6, 30)), [0] * 5)
    assert e.value.hint
    with pytest.raises(SslcError, match="classes has 7 entries"):
        representation_invariance_score(np.zeros((6, 30)), [0] * 6, [0] * 7)


def test_error_too_few_rows():
    with pytest.raises(SslcError, match="at least 3 feature rows"):
        representation_invariance_score(np.zeros((2, 30)), [0, 0], top_k=(1,))


def test_error_k_larger_than_d():
    with pytest.raises(SslcError, match="larger than the feature dimension D = 12") as e:
        representation_invariance_score(np.zeros((6, 12)), [0] * 6)  # default K = 25
    assert "K <= 12" in e.value.hint


def test_error_non_finite_rows():
    feat = np.ones((10, 30))
    feat[2, 5] = np.nan
    feat[7, 1] = np.inf
    feat[7, 2] = -np.inf
    with pytest.raises(SslcError, match="NaN or infinite values in 2 of 10 rows"):
        representation_invariance_score(feat, [0] * 10)


def test_error_no_usable_trajectory():
    with pytest.raises(SslcError, match="no trajectory has at least 3 rows"):
        representation_invariance_score(np.zeros((6, 30)), [0, 0, 1, 1, 2, 2])


def test_error_shapes_and_k():
    with pytest.raises(SslcError, match="2-D"):
        representation_invariance_score(np.zeros(6), [0] * 6)
    with pytest.raises(SslcError, match=">= 1"):
        representation_invariance_score(np.zeros((6, 30)), [0] * 6, top_k=(0,))


# -- alldata.pth interop ---------------------------------------------------------------------


def test_alldata_round_trip_with_paths_and_boxes(tmp_path):
    rng = np.random.default_rng(0)
    feat = rng.standard_normal((6, 8)).astype(np.float32)
    boxes = rng.random((6, 4))
    boxes[2] = np.nan
    paths = [f"obj{i // 3}/img_{i}.png" for i in range(6)]
    out = save_alldata(
        tmp_path / "alldata.pth", feat, [5, 5, 5, 9, 9, 9], ["a"] * 3 + ["b"] * 3, paths, boxes
    )
    with pytest.raises(Exception):  # noqa: B017 - numpy arrays need numpy's globals allowed
        torch.load(out, weights_only=True)
    with torch.serialization.safe_globals(numpy_safe_globals()):
        raw = torch.load(out, weights_only=True)  # weights_only with numpy allowed works
    assert set(raw) == {"feat", "instance", "classes", "paths", "boxes"}
    assert isinstance(raw["feat"], np.ndarray)  # what the authors' measure_invariances.py needs
    assert raw["instance"].dtype == np.int64 and raw["classes"] == ["a"] * 3 + ["b"] * 3
    data = load_alldata(out)
    assert isinstance(data, AllData) and len(data) == 6
    np.testing.assert_array_equal(data.feat, feat)
    assert data.feat.dtype == np.float32
    assert list(data.instance) == [5, 5, 5, 9, 9, 9]
    assert list(data.classes) == ["a"] * 3 + ["b"] * 3
    assert data.paths == paths
    np.testing.assert_array_equal(data.boxes, boxes)  # NaNs compare equal here
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left nothing behind


def test_alldata_with_numpy_arrays_loads_and_scores(tmp_path):
    # As the authors write it: float64 numpy features, float instance ids, numpy scalars.
    rng = np.random.default_rng(1)
    feat, traj, cls = _random_case(rng, 6, (3, 5), 12, 2)
    path = tmp_path / "alldata.pth"
    torch.save(
        {
            "feat": feat.astype(np.float64),
            "instance": traj.astype(np.float64),
            "classes": [f"c{c}" for c in cls],
            "azimuth": [np.uint8(v) for v in range(len(traj))],
        },
        path,
    )
    with pytest.raises(Exception):  # noqa: B017 - torch refuses numpy under weights_only
        torch.load(path, weights_only=True)
    data = load_alldata(path)
    assert data.feat.dtype == np.float64 and data.extra["azimuth"][3] == 3
    res = representation_invariance_score(data.feat, data.instance, data.classes, top_k=(3,))
    _assert_close(
        res, oracle_ris(feat.astype(np.float64), traj, [f"c{c}" for c in cls], top_k=(3,))
    )


def test_alldata_without_classes(tmp_path):
    path = save_alldata(tmp_path / "a.pth", np.ones((3, 2)), np.array([1, 1, 1]), None)
    assert load_alldata(path).classes is None


def test_alldata_errors(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"feat": torch.zeros(4, 3)}, path)
    with pytest.raises(DataError, match="not a feature dump: no 'instance' key") as e:
        load_alldata(path)
    assert str(path) in str(e.value)
    torch.save({"feat": torch.zeros(4, 3), "instance": torch.zeros(3)}, path)
    with pytest.raises(DataError, match="'instance' has 3 entries but 'feat' has 4 rows"):
        load_alldata(path)
    torch.save(
        {"feat": torch.zeros(4, 3), "instance": torch.zeros(4), "boxes": torch.zeros(4, 2)}, path
    )
    with pytest.raises(DataError, match="'boxes' must be N x 4"):
        load_alldata(path)
    with pytest.raises(DataError, match="not found"):
        load_alldata(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="is not a feature dump"):
        load_alldata(tmp_path / "junk.pth")
    with pytest.raises(DataError, match="'paths' has 2 entries"):
        save_alldata(tmp_path / "x.pth", np.ones((3, 2)), [0, 0, 0], None, paths=["a", "b"])


def test_alldata_refuses_non_numpy_globals(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"feat": np.ones((3, 2)), "instance": [0, 0, 0], "obj": AllData}, path)
    with pytest.raises(DataError, match="needs code outside numpy"):
        load_alldata(path)


# -- bootstrap confidence intervals ----------------------------------------------------------


def _class_case(per_class, n_classes=12, d=128, seed=0):
    """Classes with a shared centre, trajectories around it, rows around the trajectory."""
    rng = np.random.default_rng(seed)
    class_centre = rng.standard_normal((n_classes, d))
    n_traj = per_class * n_classes
    traj_class = np.arange(n_traj) % n_classes
    traj_centre = class_centre[traj_class] + 0.8 * rng.standard_normal((n_traj, d))
    traj = np.repeat(np.arange(n_traj), rng.integers(4, 8, n_traj))
    feat = np.maximum(traj_centre[traj] + 0.8 * rng.standard_normal((len(traj), d)), 0)
    return feat.astype(np.float32), traj, traj_class[traj]


@pytest.mark.parametrize("case", ["classes", "each-trajectory-a-class", "mixed"])
def test_interval_contains_score_and_is_reproducible(case):
    rng = np.random.default_rng(3)
    if case == "classes":
        feat, traj, cls = _class_case(5)
    elif case == "each-trajectory-a-class":
        feat, traj, cls = _random_case(rng, 40, (3, 6), 64, None)
    else:  # some classes with one trajectory, some with several, one with none usable
        feat, traj, _ = _random_case(rng, 30, (3, 6), 64, None)
        cls = np.where(traj < 10, traj, traj % 4 + 100)
        feat, traj, cls = np.r_[feat, feat[:2]], np.r_[traj, [999, 999]], np.r_[cls, [7, 7]]
    res = representation_invariance_score(feat, traj, cls, top_k=(5, 10))
    again = representation_invariance_score(feat, traj, cls, top_k=(5, 10))
    other = representation_invariance_score(feat, traj, cls, top_k=(5, 10), bootstrap_seed=1)
    for k, score in res.scores.items():
        low, high = res.intervals[k]
        assert low <= score <= high and low < high, (k, low, score, high)
        assert again.intervals[k] == res.intervals[k]
        assert other.scores[k] == score
    assert other.intervals != res.intervals


def test_interval_narrows_as_trajectories_are_added():
    few = representation_invariance_score(*_class_case(6))
    many = representation_invariance_score(*_class_case(48))
    assert many.half_width(10) < 0.7 * few.half_width(10)
    rng = np.random.default_rng(4)
    one = representation_invariance_score(*_random_case(rng, 40, (3, 6), 64, None))
    rng = np.random.default_rng(4)
    eight = representation_invariance_score(*_random_case(rng, 320, (3, 6), 64, None))
    assert eight.half_width(10) < 0.6 * one.half_width(10)


def test_identical_trajectories_give_a_zero_width_interval():
    # every trajectory of a class is a copy of the others: resampling them changes nothing
    rng = np.random.default_rng(8)
    base = np.maximum(rng.standard_normal((6 * 4, 40)), 0)  # 6 classes x one 4-row trajectory
    feat = np.concatenate([base] * 5)
    traj = np.concatenate([np.repeat(np.arange(6), 4) + 10 * r for r in range(5)])
    cls = np.tile(np.repeat(np.arange(6), 4), 5)
    res = representation_invariance_score(feat, traj, cls, top_k=(3,))
    low, high = res.intervals[3]
    assert low == pytest.approx(res.scores[3], abs=1e-4) and high == pytest.approx(low, abs=1e-4)


def test_bootstrap_settings_and_json_shape():
    rng = np.random.default_rng(5)
    feat, traj, _ = _random_case(rng, 12, (3, 5), 30, None)
    res = representation_invariance_score(feat, traj, resamples=200, bootstrap_seed=7,
                                          confidence=0.9)
    d = res.as_dict()
    assert d["bootstrap"] == {"resamples": 200, "seed": 7, "confidence": 0.9,
                              "method": "centred-percentile", "unit": "trajectory within class"}
    assert set(d["intervals"]) == {"top10", "top25"}
    iv = d["intervals"]["top10"]
    assert iv["low"] <= d["top10"] <= iv["high"]
    assert iv["half_width"] == pytest.approx((iv["high"] - iv["low"]) / 2)
    wider = representation_invariance_score(feat, traj, resamples=200, bootstrap_seed=7,
                                            confidence=0.99)
    assert wider.half_width(10) >= res.half_width(10)
    off = representation_invariance_score(feat, traj, resamples=0)
    assert off.intervals == {} and "intervals" not in off.as_dict()
    assert off.scores == res.scores


@pytest.mark.parametrize("kwargs, match", [
    ({"resamples": -1}, "resamples must be an integer >= 0"),
    ({"resamples": 2.5}, "resamples must be an integer >= 0"),
    ({"bootstrap_seed": -3}, "bootstrap_seed must be an integer >= 0"),
    ({"confidence": 1.0}, "confidence must be between 0 and 1"),
    ({"confidence": 95}, "confidence must be between 0 and 1"),
])
def test_bootstrap_settings_errors(kwargs, match):
    with pytest.raises(SslcError, match=match) as e:
        representation_invariance_score(np.ones((6, 30)), [0] * 6, **kwargs)
    assert e.value.hint
