"""The report's plots draw the report's numbers: bar heights, error bars, the paper's marks,
loss curves and RIS over training are read back from the matplotlib Figures; the PNGs are
written atomically, listed in report.json and embedded in report.md."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")

from matplotlib.container import BarContainer  # noqa: E402
from PIL import Image  # noqa: E402

from ssl_core.recipe.schema import Recipe  # noqa: E402
from ssl_core.report import plots  # noqa: E402
from ssl_core.report.render import build_report  # noqa: E402
from ssl_core.results.store import LossCurve  # noqa: E402

MODELS = ("moco", "random-init", "pirl")
PROBES = ("occlusion", "illumination-direction", "viewpoint")


def _recipe() -> Recipe:
    return Recipe.model_validate({
        "name": "r", "source": "r.yaml",
        "models": {m: {"encoder": {"type": "resnet18"}} for m in MODELS},
        "probes": {p: {"type": "aloi-viewpoint"} for p in PROBES},
        "evaluations": {"voc07": {"type": "voc07-svm"}, "linear": {"type": "linear-softmax"}},
        "probe_settings": {"top_k": [10, 25]},
        "report": {"baseline": "random-init",
                   "paper": {"moco": {"occlusion": {"top10": 84.19, "top25": 77.88},
                                      "voc07": {"mAP": 71.0}}}},
    })


def _result(top10: float, half: float, seed: int | None = None) -> dict[str, Any]:
    top25 = top10 - 7
    out = {"top10": top10, "top25": top25, "num_rows": 300, "num_trajectories": 60,
           "intervals": {"top10": {"low": top10 - half, "high": top10 + half},
                         "top25": {"low": top25 - half, "high": top25 + half}}}
    return out if seed is None else {**out, "seed": seed}


def _doc() -> dict[str, Any]:
    probes = {
        "moco": {"occlusion": _result(80.0, 1.5), "illumination-direction": _result(70.0, 2.0),
                 "viewpoint": _result(60.0, 1.0)},
        "random-init": {"occlusion": _result(50.0, 1.0), "illumination-direction": _result(55.5, 0.5),
                        "viewpoint": _result(58.0, 2.5)},
        # several seeds: the bar is their mean
        "pirl": {"occlusion": [_result(81.0, 1.0, 0), _result(83.0, 1.0, 1)]},
    }
    evaluations = {
        "moco": {"voc07": {"metrics": {"mAP": 64.5, "classes": 20.0}},
                 "linear": {"metrics": {"top1": 41.0, "top5": 70.0}}},
        "random-init": {"voc07": {"metrics": {"mAP": 20.25, "classes": 20.0}}},
        "pirl": {"linear": [{"metrics": {"top1": 40.0, "top5": 69.0}, "seed": 0},
                            {"metrics": {"top1": 44.0, "top5": 71.0}, "seed": 1}]},
    }
    during = {"moco": [{"probe_every": 2, "seed": None, "epochs": [
        {"epoch": e, "step": 10 * e, "final": e == 5,
         "probes": {"occlusion": _result(60.0 + 4 * e, 2.0), "viewpoint": _result(70.0 - e, 1.0)}}
        for e in (2, 4, 5)]}]}
    return build_report(_recipe(), probes, evaluations, device="cpu", during=during)["json"]


def _bars(ax: Any) -> dict[str, list[float]]:
    """Bar heights per model (the container's label), in group order."""
    return {c.get_label(): list(c.datavalues) for c in ax.containers if isinstance(c, BarContainer)}


def test_ris_bars_are_the_reported_values_with_intervals_and_paper_marks() -> None:
    doc = _doc()
    fig = plots.ris_figure(doc)
    assert fig is not None
    axes = fig.axes
    assert len(axes) == 2  # a panel per K
    for ax, k in zip(axes, (10, 25), strict=True):
        bars = _bars(ax)
        assert list(bars) == list(MODELS)
        for m in MODELS:
            for p, drawn in zip(PROBES, bars[m], strict=True):
                want = doc["probes"][m].get(p, {}).get(f"top{k}")
                if want is None:
                    assert math.isnan(drawn), (m, p)  # not measured: no bar
                else:
                    assert drawn == pytest.approx(want), (m, p)
        # error bars span the bootstrap interval
        moco = next(c for c in ax.containers if isinstance(c, BarContainer) and c.get_label() == "moco")
        segments = moco.errorbar.lines[2][0].get_segments()
        iv = doc["probes"]["moco"]["occlusion"]["intervals"][f"top{k}"]
        assert [segments[0][0][1], segments[0][1][1]] == pytest.approx([iv["low"], iv["high"]])
        # the paper's value: one black diamond, on moco's occlusion bar
        marks = [c for c in ax.collections if c.get_label() == "paper"]
        assert len(marks) == 1
        (x, y), = marks[0].get_offsets()
        assert y == pytest.approx(doc["paper"]["moco"]["occlusion"][f"top{k}"])
        assert x == pytest.approx(moco.patches[0].get_x() + moco.patches[0].get_width() / 2)
    assert doc["probes"]["pirl"]["occlusion"]["top10"] == pytest.approx(82.0)  # the mean of two seeds
    assert _bars(axes[0])["pirl"][0] == pytest.approx(82.0)


def test_models_keep_their_colour_across_plots() -> None:
    doc = _doc()
    ris, down = plots.ris_figure(doc), plots.downstream_figure(doc)
    assert ris is not None and down is not None

    def colours(fig: Any) -> dict[str, tuple[float, ...]]:
        return {c.get_label(): tuple(c.patches[0].get_facecolor()) for ax in fig.axes
                for c in ax.containers if isinstance(c, BarContainer)}

    assert colours(ris) == colours(down)
    assert len(set(colours(ris).values())) == len(MODELS)


def test_downstream_bars_are_the_metrics_with_the_seed_spread() -> None:
    doc = _doc()
    fig = plots.downstream_figure(doc)
    assert fig is not None
    voc, linear = fig.axes
    assert [t.get_text() for t in voc.get_xticklabels()] == ["mAP", "classes"]
    assert _bars(voc)["moco"] == pytest.approx([64.5, 20.0])
    assert _bars(voc)["random-init"] == pytest.approx([20.25, 20.0])
    assert _bars(linear)["pirl"] == pytest.approx([42.0, 70.0])  # means over the two seeds
    pirl = next(c for c in linear.containers if isinstance(c, BarContainer) and c.get_label() == "pirl")
    (low, high) = [p[1] for p in pirl.errorbar.lines[2][0].get_segments()[0]]
    sd = doc["evaluation_spread"]["pirl"]["linear"]["sd"]["top1"]
    assert (low, high) == pytest.approx((42.0 - sd, 42.0 + sd))
    assert [c.get_offsets()[0][1] for c in voc.collections if c.get_label() == "paper"] == [71.0]


def test_loss_curves_and_learning_rate() -> None:
    curves = {"moco": [LossCurve(None, [1, 2, 3, 4], [4.0, 3.0, 2.0, 1.0], [0.03, 0.03, 0.02, 0.02])],
              "pirl": [LossCurve(0, [1, 2], [5.0, 4.0], [0.1, 0.1]), LossCurve(1, [1, 2], [6.0, 2.0], [0.1, 0.1])]}
    fig = plots.loss_figure(curves, list(MODELS))
    assert fig is not None
    moco_ax = next(ax for ax in fig.axes if ax.get_title() == "moco")
    smoothed = next(line for line in moco_ax.get_lines() if line.get_label() == "moco")
    assert list(smoothed.get_ydata()) == plots.smooth([4.0, 3.0, 2.0, 1.0])
    pirl_ax = next(ax for ax in fig.axes if ax.get_title() == "pirl")
    assert {line.get_label() for line in pirl_ax.get_lines()} >= {"pirl seed 0", "pirl seed 1"}
    lr_axes = [ax for ax in fig.axes if ax.get_ylabel() == "learning rate"]
    assert list(lr_axes[0].get_lines()[0].get_ydata()) == [0.03, 0.03, 0.02, 0.02]
    assert plots.loss_figure({}, list(MODELS)) is None


def test_smoothing_is_a_trailing_mean() -> None:
    assert plots.smooth([1.0, 3.0, 5.0, 7.0], window=2) == [1.0, 2.0, 4.0, 6.0]
    assert plots.smooth([2.0]) == [2.0]


def test_ris_during_training_is_a_line_per_probe_over_epochs() -> None:
    doc = _doc()
    fig = plots.during_training_figure(doc)
    assert fig is not None
    assert len(fig.axes) == 2  # one model, two K
    lines = {line.get_gid(): line for ax in fig.axes for line in ax.get_lines()}
    occ = lines["moco/occlusion/top10"]
    assert list(occ.get_xdata()) == [2, 4, 5]
    assert list(occ.get_ydata()) == pytest.approx([68.0, 76.0, 80.0])
    assert list(lines["moco/viewpoint/top25"].get_ydata()) == pytest.approx([61.0, 59.0, 58.0])


def test_labels_break_at_hyphens_only_when_too_wide() -> None:
    assert plots.wrap_label("illumination-direction", 30) == "illumination-direction"
    assert plots.wrap_label("illumination-direction", 14) == "illumination-\ndirection"
    assert plots.wrap_label("instance-viewpoint-x", 12) == "instance-\nviewpoint-x"
    assert plots.wrap_label("instance-viewpoint-x", 10) == "instance-\nviewpoint-\nx"


def test_write_plots_writes_pngs_atomically_and_drops_stale_ones(tmp_path: Path) -> None:
    doc = _doc()
    stale = tmp_path / "plots" / "old.png"
    stale.parent.mkdir()
    stale.write_bytes(b"not a plot")
    curves = {"moco": [LossCurve(None, list(range(1, 51)), [5.0 - i / 20 for i in range(50)], [0.03] * 50)]}
    written, note = plots.write_plots(tmp_path, doc, curves)
    assert note is None
    assert written == ["plots/ris.png", "plots/downstream.png", "plots/loss.png",
                       "plots/ris_during_training.png"]
    for rel in written:
        path = tmp_path / rel
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            width, height = img.size
        assert 400 <= width <= 3000 and 300 <= height <= 2500, (rel, img.size)
        assert 5_000 < path.stat().st_size < 2_000_000
    assert not stale.exists()
    assert not list((tmp_path / "plots").glob(".*.tmp"))  # nothing half-written left behind


def test_report_lists_and_embeds_the_plots(tmp_path: Path) -> None:
    def writer(doc: dict[str, Any]) -> tuple[list[str], str | None]:
        return plots.write_plots(tmp_path, doc, {})

    rep = build_report(_recipe(), {"moco": {"occlusion": _result(80.0, 1.0)}}, {}, device="cpu",
                       plots=writer)
    assert rep["json"]["plots"] == ["plots/ris.png"]
    assert "![Top-K RIS per invariance and model, with 95% intervals](plots/ris.png)" in rep["markdown"]
    assert "plots/downstream.png" not in rep["markdown"]  # nothing evaluated: no plot, no link


def test_importing_the_report_does_not_import_matplotlib() -> None:
    code = "import sys, ssl_core.report.render, ssl_core.cli.app; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
