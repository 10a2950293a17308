"""`alldata.pth` interop with the authors' code.

An `alldata.pth` exported by `sslc probe --save-features` is scored by a plain
transcription of the authors' `measure_invariances.py` (numpy operations on the loaded
dict, the way their script does them) and by sslc's own reader, and both give the RIS
that sslc reports, for probes on the embedded world in the real GOT-10k and ALOI layouts.
Files that are not feature dumps give one clear error.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import oracle_ris, require_plugins

from ssl_core.measure.alldata import load_alldata, numpy_safe_globals
from ssl_core.plugin.host import get_registry


def authors_measure(feat_data: dict[str, Any], neuron_counts: tuple[int, ...] = (10, 25)) -> dict[int, float]:
    """The steps of the authors' measure_invariances.py, transcribed as a test oracle.

    Like their script it uses `feat_data['feat']` directly in numpy expressions
    (`np.sort`, comparisons with numpy thresholds, `np.mean(..., keepdims=True)`) and
    converts `instance` only when it is a list: a file whose `feat` is a torch tensor
    fails here with the TypeError their script raises.
    """
    item_ids = feat_data["instance"]
    classes = np.array(feat_data["classes"] if "classes" in feat_data else feat_data["instance"])
    unique_classes = np.unique(classes)
    if isinstance(item_ids, list):
        item_ids = np.array(item_ids)
    firing_percent = min((1.0 - 1.0 / len(unique_classes)) * 100, 95)
    feat = feat_data["feat"]
    index = int((feat.shape[0] * firing_percent) // 100)
    pos_thresh = np.sort(feat, axis=0)[index:index + 1, :]
    global_firing = np.mean(feat >= pos_thresh, axis=0, keepdims=True)
    neg_thresh = (-np.sort(-feat, axis=0))[index:index + 1, :]
    local = [np.zeros_like(global_firing) for _ in unique_classes]
    count = [np.zeros_like(global_firing) for _ in unique_classes]
    for item in np.unique(item_ids):
        rows = np.where(item_ids == item)[0]
        ci = np.where(unique_classes == classes[rows[0]])[0][0]
        if len(rows) < 3:
            continue
        f = feat_data["feat"][rows]
        above = np.sum(f > pos_thresh, axis=0, keepdims=True)
        below = np.sum(f < neg_thresh, axis=0, keepdims=True)
        fired = np.maximum(above, below)
        some = fired > 0
        local[ci][some] += fired[some] / float(f.shape[0])
        count[ci][some] += 1
    per_class = np.concatenate([local[ci] / (count[ci] + 1e-20) for ci in range(len(unique_classes))])
    scores = np.zeros((len(neuron_counts), len(unique_classes)))
    for ci in range(len(unique_classes)):
        ranked = -np.sort(-(per_class[ci] / global_firing[0]))
        running_mean = np.cumsum(ranked) / (np.arange(len(ranked)) + 1)
        for ni, k in enumerate(neuron_counts):
            scores[ni, ci] = running_mean[k - 1]
    mean = np.mean(scores, axis=1)
    return {k: float(mean[i] * (100 - firing_percent)) for i, k in enumerate(neuron_counts)}


def authors_load(path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """`torch.load(path)` exactly as their script calls it: in their torch (< 2.6) that
    unpickles everything; on torch >= 2.6 the same happens with this variable set."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's note that the variable is set
            return torch.load(path)
    finally:
        monkeypatch.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")


@pytest.fixture(scope="module")
def tiny_world() -> Path:
    require_plugins("synthworld")
    world = get_registry().create("dataset", {"type": "synthworld", "size": "tiny"})
    world.prepare()
    return Path(world.root)


@pytest.mark.slow
@pytest.mark.parametrize("probe", ["aloi-viewpoint", "got10k-occlusion"])
def test_exported_features_score_the_same_with_the_authors_script(
        sslc, tiny_world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, probe: str) -> None:
    require_plugins(probe, "resnet18")
    out = tmp_path / "alldata.pth"
    result = sslc("probe", "--checkpoint", "random:resnet18", "--probe", probe, "--data", str(tiny_world),
                  "--save-features", str(out), "--json", "--no-cache")
    assert result.code == 0, result.err
    row = json.loads(result.out)["probes"][0]

    # the authors' script, unmodified: plain torch.load, numpy arithmetic on 'feat'
    dump = authors_load(out, monkeypatch)
    assert isinstance(dump["feat"], np.ndarray)
    measured = authors_measure(dump)
    assert row["top10"] == pytest.approx(measured[10], abs=1e-6)
    assert row["top25"] == pytest.approx(measured[25], abs=1e-6)
    # ... which is what the tensor-holding files of earlier versions could not do
    with pytest.raises(TypeError):
        authors_measure({**dump, "feat": torch.from_numpy(dump["feat"])})

    # a safe load needs only numpy's own reconstruction functions allowed
    with pytest.raises(Exception):  # noqa: B017 - torch refuses numpy under plain weights_only
        torch.load(out, weights_only=True)
    with torch.serialization.safe_globals(numpy_safe_globals()):
        safe = torch.load(out, weights_only=True)
    assert sorted(safe) == ["boxes", "classes", "feat", "instance", "paths"]
    assert safe["feat"].shape[0] == len(safe["paths"]) == len(safe["instance"]) == len(safe["classes"])
    assert all(Path(p).exists() for p in safe["paths"])
    data = load_alldata(out)  # sslc's reader, which --features uses
    np.testing.assert_array_equal(data.feat, dump["feat"])
    expected = oracle_ris(data.feat, list(data.instance), list(data.classes))
    assert row["top10"] == pytest.approx(expected[10], abs=1e-6)

    rescored = sslc("probe", "--features", str(out), "--json")
    assert rescored.code == 0, rescored.err
    again = json.loads(rescored.out)["probes"][0]
    assert again["top10"] == pytest.approx(row["top10"], abs=1e-9)


def _error_text(result: Any) -> str:
    text = " ".join((result.err + result.out).split())  # rich wraps long lines
    assert result.code == 2, text
    assert "Traceback" not in text, text
    return text


def test_features_file_that_is_empty(sslc, tmp_path: Path) -> None:
    empty = tmp_path / "alldata.pth"
    empty.touch()
    text = _error_text(sslc("probe", "--features", str(empty)))
    assert f"{empty} is empty" in text and "hint:" in text


@pytest.mark.parametrize("content", ["text", "checkpoint", "tensor"])
def test_features_file_that_is_not_a_dump(sslc, tmp_path: Path, content: str) -> None:
    path = tmp_path / "alldata.pth"
    if content == "text":
        path.write_text("feat instance classes\n1 2 3\n")
    elif content == "checkpoint":
        torch.save({"state_dict": {"conv1.weight": torch.zeros(2, 3, 1, 1)}, "epoch": 3}, path)
    else:
        torch.save(torch.zeros(4, 3), path)
    text = _error_text(sslc("probe", "--features", str(path)))
    assert f"{path} is not a feature dump" in text and "hint:" in text
    assert text.count("is not a feature dump") == 1  # one message, not a chain


def test_authors_numpy_files_are_read_without_unpickling_code(tmp_path: Path) -> None:
    """A file as their extraction scripts write it (float64 numpy feat, float ids, numpy
    scalars in extra keys) loads; a file naming any other class is refused, not run."""
    rng = np.random.default_rng(3)
    path = tmp_path / "alldata.pth"
    torch.save({"feat": rng.standard_normal((9, 4)), "instance": np.repeat([0.0, 1.0, 2.0], 3),
                "classes": ["car"] * 9, "azimuth": [np.float64(v) for v in range(9)]}, path)
    data = load_alldata(path)
    assert data.feat.dtype == np.float64 and float(data.extra["azimuth"][4]) == 4.0
    torch.save({"feat": np.ones((3, 2)), "instance": [0, 0, 0], "evil": Path}, path)
    with pytest.raises(Exception, match="needs code outside numpy") as err:
        load_alldata(path)
    assert type(err.value).__name__ == "DataError"
