"""Interrupted training resumes to exactly the weights (and training log) of an uninterrupted
run; unchanged stages are skipped; checkpoints load with weights_only=True."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import require_plugins, tiny_train_recipe, write_images


def make_recipe(tmp_path: Path, workers: int = 0) -> Path:
    require_plugins("image-folder", "resnet18", "aggressive-crop", "moco-queue")
    if not (tmp_path / "images").exists():
        write_images(tmp_path / "images", {"a": 20, "b": 20}, size=40)
    path = tmp_path / "recipe.yaml"
    path.write_text(tiny_train_recipe(
        "resume", tmp_path, sampler={"size": 32},
        objective={"queue_size": 32, "dim": 16, "momentum": 0.9},
        train={"epochs": 3, "lr": 0.05, "num_workers": workers, "checkpoint_every": 2, "seed": 3}))
    return path


def final_state(run_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run_dir / "models" / "m" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["done"]
    return ckpt["objective_state_dict"]


def metrics(run_dir: Path) -> list[dict]:
    lines = (run_dir / "models" / "m" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ssl_core.cli", *args]


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_gives_identical_weights(tmp_path: Path) -> None:
    recipe = make_recipe(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cli("run", str(recipe), "--stages", "train", "--run-dir", str(tmp_path / "a"), "--quiet"),
                   check=True, env=env)
    reference = final_state(tmp_path / "a")

    run_b = tmp_path / "b"
    ckpt = run_b / "models" / "m" / "checkpoint.pt"
    proc = subprocess.Popen(cli("run", str(recipe), "--stages", "train", "--run-dir", str(run_b), "--quiet"),
                            env=env)
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    partial = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert not partial["done"] and 0 < partial["step"] < 15

    subprocess.run(cli("run", str(recipe), "--stages", "train", "--run-dir", str(run_b), "--quiet"),
                   check=True, env=env)
    resumed = final_state(run_b)
    assert json.loads((run_b / "models" / "m" / "train.json").read_text())["resumed_from_step"] > 0
    assert reference.keys() == resumed.keys()
    for key in reference:
        assert torch.equal(reference[key], resumed[key]), key
    # the log continues where the checkpoint was: each step once, the same values
    log_a, log_b = metrics(tmp_path / "a"), metrics(run_b)
    assert [r["step"] for r in log_b if r["event"] == "step"] == list(range(1, 16))
    assert [(r["event"], r["step"], r["loss"], r.get("acc1")) for r in log_a] == \
        [(r["event"], r["step"], r["loss"], r.get("acc1")) for r in log_b]


@pytest.mark.slow
def test_same_seed_same_weights_and_unchanged_stage_is_skipped(sslc, tmp_path: Path) -> None:
    recipe = make_recipe(tmp_path)
    args = ("run", str(recipe), "--stages", "train", "--set", "models.m.train.epochs=1")
    assert sslc(*args, "--run-dir", str(tmp_path / "a")).code == 0
    assert sslc(*args, "--run-dir", str(tmp_path / "b")).code == 0
    a, b = final_state(tmp_path / "a"), final_state(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)

    again = sslc(*args, "--run-dir", str(tmp_path / "a"))
    assert again.code == 0 and "up to date, skipped" in again.err
    forced = sslc(*args, "--run-dir", str(tmp_path / "a"), "--force")
    assert forced.code == 0 and "skipped" not in forced.err
    changed = sslc(*args, "--run-dir", str(tmp_path / "a"), "--set", "models.m.train.lr=0.01")
    assert changed.code == 0 and "skipped" not in changed.err
    c = final_state(tmp_path / "a")
    assert not all(torch.equal(a[k], c[k]) for k in a)
