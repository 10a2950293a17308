"""The shipped recipes validate in every profile, and the paper profile of Table 1 runs end to
end on checkpoints written in the three released layouts (random weights, tiny world)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
from helpers import require_plugins

from ssl_core.plugin.host import get_registry
from ssl_core.recipe.schema import load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
@pytest.mark.parametrize("profile", ["synthetic", "paper"])
def test_shipped_recipes_validate(recipe: Path, profile: str) -> None:
    loaded = load_recipe(recipe, profile=profile)
    assert loaded.recipe.models and (loaded.recipe.probes or loaded.recipe.evaluations)


def test_table4_longer_profile_doubles_every_budget_and_changes_nothing_else() -> None:
    path = Path(__file__).resolve().parents[1] / "recipes" / "paper_table4.yaml"
    base = load_recipe(path, profile="synthetic").recipe
    longer = load_recipe(path, profile="longer").recipe
    assert list(longer.models) == list(base.models)
    for name, model in base.models.items():
        doubled = longer.models[name]
        assert model.train is not None and doubled.train is not None
        assert doubled.train.epochs == 2 * model.train.epochs, name
        assert doubled.train.model_copy(update={"epochs": model.train.epochs}) == model.train, name
    assert longer.probes == base.probes and longer.world == base.world


def write_release_checkpoints(folder: Path) -> None:
    """Random ResNet-50 weights in the torchvision, official MoCo v2 and VISSL (PIRL) layouts."""
    folder.mkdir()
    torch.manual_seed(0)
    sup = torchvision.models.resnet50(weights=None).state_dict()
    torch.save(sup, folder / "resnet50-0676ba61.pth")
    trunk = {k: v for k, v in torchvision.models.resnet50(weights=None).state_dict().items()
             if not k.startswith("fc.")}
    moco = {f"module.encoder_q.{k}": v for k, v in trunk.items()}
    moco.update({"module.encoder_q.fc.0.weight": torch.zeros(2048, 2048),
                 "module.encoder_q.fc.2.weight": torch.zeros(128, 2048),
                 "module.queue": torch.zeros(128, 65536)})
    torch.save({"epoch": 200, "arch": "resnet50", "state_dict": moco, "optimizer": {}},
               folder / "moco_v2_200ep_pretrain.pth.tar")
    trunk = {f"_feature_blocks.{k}": v for k, v in
             torchvision.models.resnet50(weights=None).state_dict().items() if not k.startswith("fc.")}
    vissl = {"phase_idx": 199, "classy_state_dict": {"base_model": {"model": {
        "trunk": trunk, "heads": {"0.clf.0.weight": torch.zeros(128, 2048)}}}}}
    torch.save(vissl, folder / "pirl_r50_vissl.torch")


@pytest.mark.slow
def test_table1_paper_profile_runs_on_released_layouts(sslc, tmp_path: Path, monkeypatch) -> None:
    require_plugins("synthworld", "resnet50", "got10k-occlusion", "pascal3d-instance", "aloi-viewpoint")
    world = get_registry().create("dataset", {"type": "synthworld", "size": "tiny"})
    world.prepare()
    monkeypatch.chdir(tmp_path)
    write_release_checkpoints(tmp_path / "checkpoints")
    recipe = RECIPES[[p.name for p in RECIPES].index("paper_table1.yaml")]
    sizes = [f"--set=probes.{p}.image_size=32" for p in
             ("occlusion", "viewpoint", "illumination-direction", "illumination-color")]
    result = sslc("run", str(recipe), "--profile", "paper", f"--set=data_root={world.root}",
                  *sizes, "--run-dir", str(tmp_path / "run"), "--json", "--quiet")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["profile"] == "paper"
    assert set(report["probes"]) == {"supervised-r50", "moco-v2", "pirl"}
    for model in report["probes"].values():
        for probe in ("occlusion", "viewpoint", "illumination-direction", "illumination-color"):
            assert 0 < model[probe]["top10"] <= 100
    assert report["paper"]["moco-v2"]["viewpoint"]["top10"] == 85.15
    md = (tmp_path / "run" / "report.md").read_text()
    assert "(85.15)" in md  # the paper's number printed beside the measured one
