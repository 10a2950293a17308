"""`train.probe_every: N`: the runner probes the training encoder after every N-th epoch and
the last, keeps the results per epoch, resumes without redoing what was measured, and
leaves the trained weights exactly as a run without it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import (
    TINY_TRAIN_RECIPE,
    assert_user_error,
    require_plugins,
    write_aloi_views,
    write_images,
)

from ssl_core.errors import RecipeError
from ssl_core.recipe.schema import load_recipe

#: the tiny training recipe with two ALOI probes on the data root's aloi/ folder
PROBES = """\
probes:
  viewpoint: {type: aloi-viewpoint, image_size: 16}
  colour: {type: aloi-illumination-color, image_size: 16}
probe_settings: {top_k: [3], num_workers: 0, resamples: 50}
"""
LAMPS = (110, 120, 130, 140, 150, 160)


def make_recipe(tmp_path: Path, name: str = "pe") -> Path:
    require_plugins("image-folder", "aloi", "aloi-viewpoint", "aloi-illumination-color", "resnet18",
                    "aggressive-crop", "moco-queue")
    if not (tmp_path / "images").exists():
        write_images(tmp_path / "images", {"a": 8, "b": 8}, size=20)  # 2 steps an epoch
        write_aloi_views(tmp_path / "aloi", lamps=LAMPS, seed=1)
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(TINY_TRAIN_RECIPE.format(name=name, root=tmp_path, batch_size=8) + PROBES)
    return recipe


def _during(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "models" / "m" / "probes_during_training.json").read_text())


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run_dir / "models" / "m" / "checkpoint.pt", map_location="cpu", weights_only=True)
    return ckpt["encoder_state_dict"]


@pytest.mark.slow  # three short trainings with probes (about 30 s on 2 cores)
def test_probes_the_expected_epochs_and_resumes_without_redoing_them(sslc, tmp_path: Path) -> None:
    recipe = make_recipe(tmp_path)
    run_dir = tmp_path / "run"
    every = ("--set", "models.m.train.epochs=3", "--set", "models.m.train.probe_every=2")
    # a colour image that cannot be read: the run stops while probing epoch 2, after the
    # viewpoint probe (the first) was measured and kept
    broken = tmp_path / "aloi" / "aloi_red2_col" / "2" / "2_i130.png"
    good = broken.read_bytes()
    broken.write_bytes(b"not a png")
    first = sslc("run", str(recipe), "--run-dir", str(run_dir), *every, "--quiet")
    assert_user_error(first, "2_i130.png")
    kept = _during(run_dir)
    assert [e["epoch"] for e in kept["epochs"]] == [2]
    assert list(kept["epochs"][0]["probes"]) == ["viewpoint"]
    assert kept["epochs"][0]["step"] == 4 and kept["epochs"][0]["final"] is False
    assert 0 < kept["epochs"][0]["probes"]["viewpoint"]["top3"] <= 100
    assert not (run_dir / "models" / "m" / "train.json").exists()  # training did not finish

    broken.write_bytes(good)  # the user fixes the data and runs the same command again
    again = sslc("run", str(recipe), "--run-dir", str(run_dir), *every, "--quiet")
    assert again.code == 0, again.err
    during = _during(run_dir)
    assert [(e["epoch"], e["step"], e["final"]) for e in during["epochs"]] == [(2, 4, False), (3, 6, True)]
    epoch2, epoch3 = during["epochs"]
    # epoch 2's viewpoint result is the one measured before, not measured again ...
    assert epoch2["probes"]["viewpoint"] == kept["epochs"][0]["probes"]["viewpoint"]
    # ... its colour probe, cut short, was completed, and the last epoch has both
    assert list(epoch2["probes"]) == ["viewpoint", "colour"] and list(epoch3["probes"]) == ["viewpoint", "colour"]
    train = json.loads((run_dir / "models" / "m" / "train.json").read_text())
    assert train["steps"] == 6 and train["resumed_from_step"] == 4  # saved before probing epoch 2
    # the last epoch's probes are the final encoder's: what the probe stage measured
    for probe in ("viewpoint", "colour"):
        final = json.loads((run_dir / "probes" / "m" / f"{probe}.json").read_text())
        assert epoch3["probes"][probe]["top3"] == final["top3"]
        assert epoch3["probes"][probe]["encoder_id"] == final["encoder_id"]
    report = json.loads((run_dir / "report.json").read_text())
    points = report["during_training"]["m"]["probes"]["viewpoint"]
    assert [(p["epoch"], p["top3"]) for p in points] == [(2, epoch2["probes"]["viewpoint"]["top3"]),
                                                         (3, epoch3["probes"]["viewpoint"]["top3"])]
    if importlib.util.find_spec("matplotlib") is not None:
        assert "plots/ris_during_training.png" in report["plots"]
    assert "invariance during training" in (run_dir / "report.md").read_text()
    # `sslc report` re-renders the same report from these files (the run's own report code)
    (run_dir / "report.md").unlink()
    assert sslc("report", str(run_dir), "--quiet").code == 0
    assert json.loads((run_dir / "report.json").read_text()) == report

    # a rerun finds everything done: nothing trained or probed again
    stamp = (run_dir / "models" / "m" / "probes_during_training.json").stat().st_mtime_ns
    assert sslc("run", str(recipe), "--run-dir", str(run_dir), *every, "--quiet").code == 0
    assert (run_dir / "models" / "m" / "probes_during_training.json").stat().st_mtime_ns == stamp

    # probing (and the interruption) left the weights as a plain run trains them; and
    # probe_every is not part of the training's fingerprint
    plain = tmp_path / "plain"
    res = sslc("run", str(recipe), "--run-dir", str(plain), "--set", "models.m.train.epochs=3",
               "--stages", "train", "--quiet")
    assert res.code == 0, res.err
    assert not (plain / "models" / "m" / "probes_during_training.json").exists()
    a, b = _weights(run_dir), _weights(plain)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((plain / "models" / "m" / "train.json").read_text())["fingerprint"] == train["fingerprint"]


def test_probe_every_must_be_positive(tmp_path: Path) -> None:
    recipe = make_recipe(tmp_path)
    with pytest.raises(RecipeError, match="probe_every"):
        load_recipe(recipe, overrides=["models.m.train.probe_every=0"])
    loaded = load_recipe(recipe, overrides=["models.m.train.probe_every=2"])
    assert loaded.recipe.models["m"].train is not None
    assert loaded.recipe.models["m"].train.probe_every == 2


@pytest.mark.slow  # two spawned ranks
def test_under_torchrun_rank_zero_probes_while_the_other_rank_waits(tmp_path: Path) -> None:
    import os
    import shutil
    import subprocess
    import sys

    here = Path(sys.executable).parent / "sslc"  # the console script (a pyenv shim is not Python)
    sslc_script = str(here) if here.is_file() else shutil.which("sslc")
    if sslc_script is None:
        pytest.skip("the sslc console script is not installed")
    recipe = make_recipe(tmp_path, "ddp")
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           sslc_script, "run", str(recipe), "--run-dir", str(run_dir), "--quiet",
           "--set", "models.m.train.epochs=2", "--set", "models.m.train.probe_every=1"]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    train = json.loads((run_dir / "models" / "m" / "train.json").read_text())
    assert train["world_size"] == 2 and train["steps"] == 4
    during = _during(run_dir)
    assert [(e["epoch"], e["final"], list(e["probes"])) for e in during["epochs"]] == [
        (1, False, ["viewpoint", "colour"]), (2, True, ["viewpoint", "colour"])]
    final = json.loads((run_dir / "probes" / "m" / "viewpoint.json").read_text())
    assert during["epochs"][1]["probes"]["viewpoint"]["top3"] == final["top3"]
