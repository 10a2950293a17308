"""`sslc report RUN_DIR` re-renders a run's report from what the directory holds, without
recomputing anything; anything but a run directory is one clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import assert_user_error, require_plugins, write_aloi_views

RECIPE = """\
name: rerender
data_root: {root}
models:
  a: {{encoder: {{type: resnet18, small_input: true}}}}
  b: {{encoder: {{type: resnet18, small_input: true}}, init_seed: 1}}
probes:
  viewpoint: {{type: aloi-viewpoint, image_size: 16}}
probe_settings: {{top_k: [3], num_workers: 0, resamples: 50}}
report:
  baseline: a
  paper: {{b: {{viewpoint: {{top3: 50.0}}}}}}
"""


@pytest.fixture
def finished_run(sslc, tmp_path: Path) -> Path:
    """A real run of two random-init encoders on one probe (no training: quick)."""
    pytest.importorskip("matplotlib")
    require_plugins("aloi", "aloi-viewpoint", "resnet18")
    write_aloi_views(tmp_path / "aloi")
    recipe = tmp_path / "rerender.yaml"
    recipe.write_text(RECIPE.format(root=tmp_path))
    run_dir = tmp_path / "run"
    res = sslc("run", str(recipe), "--run-dir", str(run_dir), "--quiet")
    assert res.code == 0, res.err
    return run_dir


def test_report_rerenders_what_the_run_wrote_without_recomputing(sslc, finished_run: Path) -> None:
    run_dir = finished_run
    doc = json.loads((run_dir / "report.json").read_text())
    md = (run_dir / "report.md").read_text()
    assert doc["plots"] == ["plots/ris.png"] and (run_dir / "plots" / "ris.png").is_file()
    assert doc["setting"] == "default (real data)" and doc["device"] == "cpu"
    assert isinstance(doc["run"]["wall_time_s"], float) and doc["run"]["wall_time_s"] > 0
    assert doc["run"]["stages"] == ["train", "probe", "evaluate", "report"]
    assert md.splitlines()[6].startswith("| default (real data) | `cpu` | ")  # the header, on top
    results = sorted(run_dir.glob("probes/*/*.json"))
    stamps = [p.stat().st_mtime_ns for p in results]

    (run_dir / "report.md").unlink()
    (run_dir / "plots" / "ris.png").unlink()
    res = sslc("report", str(run_dir), "--quiet")
    assert res.code == 0, res.err
    assert res.out == ""
    assert json.loads((run_dir / "report.json").read_text()) == doc
    assert (run_dir / "report.md").read_text() == md
    assert (run_dir / "plots" / "ris.png").read_bytes()[:4] == b"\x89PNG"
    assert [p.stat().st_mtime_ns for p in results] == stamps  # nothing measured again

    as_json = sslc("report", str(run_dir), "--json")
    assert as_json.code == 0, as_json.err
    assert json.loads(as_json.out) == doc

    shown = sslc("report", str(run_dir))
    assert shown.code == 0, shown.err
    assert "profile: default (real data)" in shown.out and "wall time: " in shown.out
    assert "(paper 50.00)" in shown.out and "report.md" in shown.out


def test_report_of_something_that_is_not_a_run_directory(sslc, tmp_path: Path) -> None:
    assert_user_error(sslc("report", str(tmp_path / "nowhere")), "does not exist")
    a_file = tmp_path / "report.json"
    a_file.write_text("{}")
    assert_user_error(sslc("report", str(a_file)), "is not a directory")
    assert_user_error(sslc("report", str(tmp_path)), "is not a run directory", "recipe.resolved.yaml")
    (tmp_path / "recipe.resolved.yaml").write_text("name: [unclosed")
    assert_user_error(sslc("report", str(tmp_path)), "recipe.resolved.yaml cannot be read")
    assert not (tmp_path / "report.md").exists()
