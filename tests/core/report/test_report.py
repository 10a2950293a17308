"""The report: intervals in every table, baseline comparisons, multi-seed summaries, claims."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rich.console import Console

from ssl_core.errors import RecipeError
from ssl_core.measure.estimates import compare, top_key
from ssl_core.measure.estimates import estimate as _estimate
from ssl_core.recipe.schema import Recipe
from ssl_core.report.render import build_report


def cell(result, k):  # the report's cell: one top-K estimate
    return _estimate(result, top_key(k))


def _recipe(report: dict[str, Any] | None = None) -> Recipe:
    return Recipe.model_validate({
        "name": "r", "source": "r.yaml",
        "models": {"moco": {"encoder": {"type": "resnet18"}},
                   "random-init": {"encoder": {"type": "resnet18"}}},
        "probes": {"occlusion": {"type": "got10k-occlusion"}, "viewpoint": {"type": "aloi-viewpoint"}},
        "report": report or {},
    })


def _result(top10: float, half: float, seed: int | None = None, top25: float | None = None) -> dict:
    top25 = top10 - 5 if top25 is None else top25
    out = {"top10": top10, "top25": top25, "num_rows": 300, "num_trajectories": 60,
           "intervals": {"top10": {"low": top10 - half, "high": top10 + half},
                         "top25": {"low": top25 - half, "high": top25 + half}},
           "bootstrap": {"resamples": 1000, "seed": 0, "confidence": 0.95}}
    if seed is not None:
        out["seed"] = seed
    return out


def _render(table: Any) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def test_intervals_in_markdown_terminal_and_json() -> None:
    probes = {"moco": {"occlusion": _result(60.0, 1.5), "viewpoint": _result(50.0, 1.0)},
              "random-init": {"occlusion": _result(55.0, 1.0), "viewpoint": _result(49.5, 1.0)}}
    rep = build_report(_recipe({"baseline": "random-init"}), probes, {}, device="cpu")
    md = rep["markdown"]
    assert "60.00 [58.50, 61.50] ▲" in md  # beyond both intervals
    assert "50.00 [49.00, 51.00] |" in md  # overlapping: no mark
    assert "moco, occlusion (top-10): +5.00, higher, beyond the intervals" in md
    assert "moco, viewpoint (top-10): +0.50, no difference beyond the intervals" in md
    assert "60.00 ±1.50 ▲" in _render(rep["table"])
    doc = json.loads(json.dumps(rep["json"]))
    occ = doc["probes"]["moco"]["occlusion"]
    assert occ["intervals"]["top10"] == {"low": 58.5, "high": 61.5}
    assert occ["rows"] == 300 and occ["trajectories"] == 60
    cmp = doc["comparisons"]["moco"]["occlusion"]["top10"]
    assert cmp["verdict"] == "higher" and cmp["beyond_interval"] is True
    assert doc["comparisons"]["moco"]["viewpoint"]["top10"]["verdict"] == "within"
    assert "random-init" not in doc["comparisons"]


def test_lower_beyond_intervals_and_no_interval() -> None:
    lower = compare(cell(_result(40.0, 1.0), 10), cell(_result(45.0, 1.0), 10))
    assert lower["verdict"] == "lower" and lower["difference"] == pytest.approx(-5.0)
    bare = {"top10": 40.0, "top25": 30.0}
    assert compare(cell(bare, 10), cell(_result(60.0, 1.0), 10))["verdict"] == "within"


def test_several_seeds_give_mean_sd_and_per_seed_values() -> None:
    seeds = [_result(60.0, 1.0, seed=0), _result(62.0, 1.0, seed=1), _result(64.0, 1.0, seed=2)]
    probes = {"moco": {"occlusion": seeds, "viewpoint": [_result(50.0, 1.0, seed=0)]},
              "random-init": {"occlusion": _result(55.0, 0.5), "viewpoint": _result(50.0, 1.0)}}
    rep = build_report(_recipe({"baseline": "random-init"}), probes, {}, device="cpu")
    occ = rep["json"]["probes"]["moco"]["occlusion"]
    assert occ["top10"] == pytest.approx(62.0)
    assert occ["sd"]["top10"] == pytest.approx(2.0)
    assert occ["per_seed"]["top10"] == [60.0, 62.0, 64.0] and occ["seeds"] == [0, 1, 2]
    assert occ["intervals"]["top10"] == {"low": 61.0, "high": 63.0}
    # +7 is beyond the intervals and beyond 2 sd = 4
    cmp = rep["json"]["comparisons"]["moco"]["occlusion"]["top10"]
    assert cmp["verdict"] == "higher" and cmp["beyond_seed_spread"] is True
    assert "62.00 [61.00, 63.00], sd 2.00 over 3 seeds ▲" in rep["markdown"]
    assert "sd 2.00, 3 seeds" in _render(rep["table"])
    # a list of one is a single result
    assert "sd" not in rep["json"]["probes"]["moco"]["viewpoint"]


def test_beyond_intervals_but_within_the_seed_spread_is_no_difference() -> None:
    seeds = [_result(57.0, 0.5, seed=0), _result(63.0, 0.5, seed=1)]  # mean 60, sd 4.24
    cmp = compare(cell(seeds, 10), cell(_result(55.0, 0.5), 10))
    assert cmp["beyond_interval"] is True and cmp["beyond_seed_spread"] is False
    assert cmp["verdict"] == "within"


def test_claims_supported_contradicted_undecided() -> None:
    claims = [
        {"claim": "crops give occlusion invariance", "model": "moco", "probe": "occlusion",
         "direction": "higher"},
        {"claim": "instance discrimination hurts viewpoint", "model": "moco", "probe": "viewpoint",
         "direction": "lower"},
        {"claim": "occlusion at top-25 drops", "model": "moco", "probe": "occlusion", "k": 25,
         "direction": "lower"},
    ]
    probes = {"moco": {"occlusion": _result(60.0, 1.0), "viewpoint": _result(50.0, 1.0)},
              "random-init": {"occlusion": _result(55.0, 1.0), "viewpoint": _result(50.5, 1.0)}}
    rep = build_report(_recipe({"baseline": "random-init", "claims": claims}), probes, {},
                       device="cpu")
    verdicts = [c["verdict"] for c in rep["json"]["claims"]]
    assert verdicts == ["supported", "cannot decide", "contradicted"]
    assert "**supported**: crops give occlusion invariance" in rep["markdown"]
    assert "**cannot decide**: instance discrimination hurts viewpoint" in rep["markdown"]


@pytest.mark.parametrize("report, match", [
    ({"claims": [{"claim": "x", "model": "moco", "probe": "occlusion", "direction": "higher"}]},
     "has no baseline"),
    ({"baseline": "random-init", "claims": [{"claim": "x", "model": "moco", "probe": "occlusion",
                                             "direction": "up"}]}, "direction"),
    ({"baselin": "random-init"}, "baselin"),
])
def test_bad_report_sections_are_recipe_errors(report, match, tmp_path) -> None:
    """A malformed `report` section fails when the recipe is loaded, naming its YAML line."""
    import yaml

    from ssl_core.recipe.schema import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({
        "name": "r", "models": {"moco": {"encoder": {"type": "resnet18"}}}, "report": report}))
    with pytest.raises(RecipeError, match=match) as e:
        load_recipe(path)
    assert e.value.hint and "r.yaml:" in str(e.value)


def test_names_not_in_the_run_cannot_decide() -> None:
    """A profile or --set may drop a model or probe: the finished run still gets its report."""
    claims = [{"claim": "a", "model": "moco", "probe": "depth", "direction": "higher"},
              {"claim": "b", "model": "pirl", "probe": "occlusion", "direction": "higher"},
              {"claim": "c", "model": "moco", "probe": "occlusion", "direction": "higher", "k": 5}]
    probes = {"moco": {"occlusion": _result(60.0, 1.0)},
              "random-init": {"occlusion": _result(50.0, 1.0)}}
    rep = build_report(_recipe({"baseline": "random-init", "claims": claims}), probes, {},
                       device="cpu")
    reasons = [(c["verdict"], c["reason"]) for c in rep["json"]["claims"]]
    assert reasons == [("cannot decide", "probe 'depth' not in this run"),
                       ("cannot decide", "model 'pirl' not in this run"),
                       ("cannot decide", "top-5 not measured")]
    gone = build_report(_recipe({"baseline": "supervised"}), probes, {}, device="cpu")
    assert gone["json"]["comparisons"] == {}
    assert "baseline `supervised` is not in this run" in gone["markdown"]


def test_old_results_without_intervals_still_report() -> None:
    probes = {"moco": {"occlusion": {"top10": 61.0, "top25": 50.0, "num_rows": 10}}}
    rep = build_report(_recipe({"title": "T"}), probes, {}, device="cpu")
    assert "| occlusion | 61.00 | 50.00 | - | - |" in rep["markdown"]
    assert rep["json"]["probes"]["moco"]["occlusion"]["intervals"] == {}


def test_report_names_the_devices_that_computed_the_results() -> None:
    """A rerun on another device that reuses every result must not claim it computed them."""
    a, b = _result(60.0, 1.0), _result(55.0, 1.0)
    a["device"], b["device"] = "cuda:0", "cpu"
    rep = build_report(_recipe(), {"moco": {"occlusion": a}, "random-init": {"occlusion": b}},
                       {}, device="mps")
    assert rep["json"]["device"] == "cpu, cuda:0"
    assert "| `cpu, cuda:0` |" in rep["markdown"]  # in the header
    rep = build_report(_recipe(), {"moco": {"occlusion": _result(60.0, 1.0)}}, {}, device="cpu")
    assert rep["json"]["device"] == "cpu"  # old results without a device: the run's


def test_header_has_profile_devices_and_wall_time_everywhere() -> None:
    info = {"recipe": "r", "profile": "synthetic", "wall_time_s": 125.4, "total_wall_time_s": 400.0,
            "invocations": 2, "started": "2025-01-02T03:04:05+0000", "stages": ["probe", "report"],
            "device": "cpu"}
    recipe = _recipe().model_copy(update={"world": {"type": "synthworld"}})
    rep = build_report(recipe, {"moco": {"occlusion": _result(60.0, 1.0)}}, {}, device="cpu",
                       run_info=info)
    doc = rep["json"]
    assert list(doc)[:8] == ["recipe", "title", "profile", "setting", "device", "devices", "world_size", "run"]
    assert doc["setting"] == "default (synthetic world)" and doc["run"]["wall_time_s"] == 125.4
    assert doc["run"]["stages"] == ["probe", "report"] and doc["run"]["invocations"] == 2
    md = rep["markdown"].splitlines()
    assert md[4:7] == ["| profile | device | wall time |", "|---|---|---|",
                       "| default (synthetic world) | `cpu` | 2 min 05 s (stages probe, report; started "
                       "2025-01-02T03:04:05+0000); 6 min 40 s over 2 runs |"]
    text = _render(rep["table"]).splitlines()
    assert text[1:4] == ["profile: default (synthetic world)", "device: cpu",
                         "wall time: 2 min 05 s (stages probe, report; started "
                         "2025-01-02T03:04:05+0000); 6 min 40 s over 2 runs"]
    paper = _recipe().model_copy(update={"profile": "paper"})
    assert build_report(paper, {}, {}, device="cuda:0")["json"]["setting"] == "paper (real data)"
    unknown = build_report(_recipe(), {}, {}, device="cuda:0")
    assert unknown["json"]["run"]["wall_time_s"] is None and "unknown (not recorded)" in unknown["markdown"]


def test_downstream_with_seeds_and_paper_values() -> None:
    recipe = Recipe.model_validate({
        "name": "r", "source": "r.yaml",
        "models": {"moco": {"encoder": {"type": "resnet18"}}, "random-init": {"encoder": {"type": "resnet18"}}},
        "evaluations": {"voc07": {"type": "voc07-svm"}},
        "report": {"paper": {"moco": {"voc07": {"mAP": 71.0}}}},
    })
    evaluations = {"moco": {"voc07": [{"metrics": {"mAP": 60.0}, "seed": 0},
                                      {"metrics": {"mAP": 64.0}, "seed": 1}]},
                   "random-init": {"voc07": {"metrics": {"mAP": 20.0}, "device": "cpu"}}}
    rep = build_report(recipe, {}, evaluations, device="cpu")
    doc = rep["json"]
    assert doc["evaluations"] == {"moco": {"voc07": {"mAP": 62.0}}, "random-init": {"voc07": {"mAP": 20.0}}}
    spread = doc["evaluation_spread"]["moco"]["voc07"]
    assert spread["seeds"] == [0, 1] and spread["per_seed"]["mAP"] == [60.0, 64.0]
    assert spread["sd"]["mAP"] == pytest.approx(2.8284, abs=1e-4)
    assert "| voc07 | mAP | 62.00, sd 2.83 over 2 seeds (71.00) | 20.00 |" in rep["markdown"]
    terminal = _render(rep["table"])
    assert "voc07 mAP" in terminal and "(paper 71.00)" in terminal and "(sd 2.83, 2 seeds)" in terminal


def test_ris_during_training_section() -> None:
    during = {"moco": [{"probe_every": 1, "seed": None, "epochs": [
        {"epoch": 1, "step": 5, "final": False, "probes": {
            "occlusion": {**_result(52.0, 1.0), "config": {"type": "got10k-occlusion"}},
            # measured under another probe configuration than the recipe's now: left out
            "viewpoint": {**_result(40.0, 1.0), "config": {"type": "aloi-viewpoint", "image_size": 8}}}},
        {"epoch": 2, "step": 10, "final": True, "probes": {"occlusion": _result(57.0, 1.0)}}]}]}
    rep = build_report(_recipe(), {}, {}, device="cpu", during=during)
    points = rep["json"]["during_training"]["moco"]["probes"]
    assert list(points) == ["occlusion"]
    assert [(p["epoch"], p["step"], p["final"], p["top10"]) for p in points["occlusion"]] == [
        (1, 5, False, 52.0), (2, 10, True, 57.0)]
    assert points["occlusion"][0]["intervals"]["top10"] == {"low": 51.0, "high": 53.0}
    md = rep["markdown"]
    assert "## moco: invariance during training (top-10 RIS, %) (`probe_every: 1`)" in md
    assert "| 2 | 57.00 [56.00, 58.00] |" in md


def test_a_missing_or_unreadable_seed_result_is_shown_as_partial(tmp_path, capsys) -> None:
    """With one seed's probe result missing (and another's truncated), the value says
    `1 of 3 seeds` instead of passing for a one-seed number, and the unreadable file is named."""
    from ssl_core.report.render import render_report

    recipe = Recipe.model_validate({
        "name": "r", "source": "r.yaml", "seeds": [0, 1, 2],
        "datasets": {"train": {"type": "image-folder", "root": "x"}},
        "models": {"moco": {"encoder": {"type": "resnet18"}, "train": {
            "dataset": "train", "pair_sampler": {"type": "aggressive-crop"},
            "objective": {"type": "moco-queue"}}}},
        "probes": {"viewpoint": {"type": "aloi-viewpoint"}},
    })
    (tmp_path / "run_info.json").write_text(json.dumps({"recipe": "r", "seeds": [0, 1, 2]}))
    first = tmp_path / "seed-0" / "probes" / "moco" / "viewpoint.json"
    first.parent.mkdir(parents=True)
    first.write_text(json.dumps({**_result(48.0, 2.0), "seed": 0}))
    torn = tmp_path / "seed-2" / "probes" / "moco" / "viewpoint.json"
    torn.parent.mkdir(parents=True)
    torn.write_text('{"top10": 4')  # seed 1's result is missing altogether
    report = render_report(tmp_path, recipe, write=False)
    assert "48.00 [46.00, 50.00], 1 of 3 seeds" in report["markdown"]
    assert report["json"]["probes"]["moco"]["viewpoint"]["seeds_run"] == 3
    assert report["json"]["unreadable"] == [str(torn)]
    assert "seed-2/probes/moco/viewpoint.json is not a readable result" in capsys.readouterr().err.replace("\n", "")
