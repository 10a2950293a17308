"""`sslc validate --json` shows the recipe as it would run: profile, `extends`, `--set` and
`--seeds` applied, so a run can be checked before it starts."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import TINY_TRAIN_RECIPE, require_plugins


def test_validate_json_prints_the_resolved_recipe(sslc, tmp_path: Path) -> None:
    require_plugins("image-folder", "resnet18", "aggressive-crop", "moco-queue")
    (tmp_path / "images").mkdir()
    base = tmp_path / "base.yaml"
    base.write_text(TINY_TRAIN_RECIPE.format(name="base", root=tmp_path, batch_size=4)
                    + "profiles:\n  long: {models: {m: {train: {epochs: 9}}}}\n")
    child = tmp_path / "child.yaml"
    child.write_text("extends: base.yaml\nname: child\n")
    result = sslc("validate", str(child), "--profile", "long", "--set", "models.m.train.lr=0.5",
                  "--seeds", "4,5", "--json")
    assert result.code == 0, result.err
    resolved = json.loads(result.out)["resolved"]
    assert resolved["name"] == "child" and resolved["profile"] == "long"
    train = resolved["models"]["m"]["train"]
    assert (train["epochs"], train["lr"], train["batch_size"]) == (9, 0.5, 4)
    assert resolved["seeds"] == [4, 5]
    assert resolved["models"]["m"]["train"]["objective"]["queue_size"] == 16
