"""A recipe's `seeds` trains and probes each trained model once per seed, shares what does
not depend on the seed, reports mean and spread, and skips what is done on a rerun."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import require_plugins

RECIPE = """\
name: seeds
world: {{type: synthworld, size: tiny}}
seeds: [0, 1]
datasets:
  train: {{type: image-folder, root: imagenet/train}}
  aloi: {{type: aloi, root: aloi}}
models:
  moco:
    encoder: {{type: resnet18, small_input: true}}
    train:
      dataset: train
      pair_sampler: {{type: aggressive-crop, size: 16}}
      objective: {{type: moco-queue, queue_size: 32, dim: 8}}
      epochs: 1
      batch_size: 16
      max_steps: 2
      num_workers: 0
  random-init:
    encoder: {{type: resnet18, small_input: true}}
probes:
  viewpoint: {{type: aloi-viewpoint, dataset: aloi, image_size: 16}}
probe_settings: {{top_k: [5], num_workers: 0, resamples: 200}}
report: {{baseline: random-init}}
"""


@pytest.mark.slow
def test_two_seeds_give_per_seed_results_and_a_mean(sslc, tmp_path: Path) -> None:
    require_plugins("synthworld", "image-folder", "aloi-viewpoint", "resnet18",
                    "aggressive-crop", "moco-queue")
    recipe = tmp_path / "seeds.yaml"
    recipe.write_text(RECIPE.format())
    run_dir = tmp_path / "run"
    res = sslc("run", str(recipe), "--run-dir", str(run_dir), "--json")
    assert res.code == 0, res.err
    for seed in (0, 1):
        result = json.loads((run_dir / f"seed-{seed}" / "probes" / "moco" / "viewpoint.json")
                            .read_text())
        assert result["seed"] == seed and 0 < result["top5"] <= 100
        train = json.loads((run_dir / f"seed-{seed}" / "models" / "moco" / "train.json").read_text())
        assert train["steps"] == 2
    # the untrained baseline does not depend on the seed: measured once, at the top
    assert (run_dir / "probes" / "random-init" / "viewpoint.json").is_file()
    assert not (run_dir / "seed-0" / "probes" / "random-init").exists()
    a = json.loads((run_dir / "seed-0" / "probes" / "moco" / "viewpoint.json").read_text())
    b = json.loads((run_dir / "seed-1" / "probes" / "moco" / "viewpoint.json").read_text())
    assert a["encoder_id"] != b["encoder_id"]  # two seeds, two trained encoders
    moco = json.loads((run_dir / "report.json").read_text())["probes"]["moco"]["viewpoint"]
    assert moco["seeds"] == [0, 1]
    assert moco["per_seed"]["top5"] == [a["top5"], b["top5"]]
    assert moco["top5"] == pytest.approx((a["top5"] + b["top5"]) / 2)  # the mean over seeds
    assert moco["sd"]["top5"] >= 0
    assert "sd" not in json.loads((run_dir / "report.json").read_text())["probes"]["random-init"][
        "viewpoint"]  # measured once
    # a rerun skips everything: same results, nothing retrained
    stamp = (run_dir / "seed-1" / "models" / "moco" / "checkpoint.pt").stat().st_mtime_ns
    again = sslc("run", str(recipe), "--run-dir", str(run_dir), "--json")
    assert again.code == 0, again.err
    assert (run_dir / "seed-1" / "models" / "moco" / "checkpoint.pt").stat().st_mtime_ns == stamp
    first, second = json.loads(res.out), json.loads(again.out)
    first.pop("run"), second.pop("run")  # this run's wall time and start
    assert second == first
