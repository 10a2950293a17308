"""`--force` redoes only the stages it is given with; the others are reused as they are."""

from __future__ import annotations

from pathlib import Path

from helpers import TINY_TRAIN_RECIPE, require_plugins, write_images


def test_force_with_other_stages_does_not_retrain(sslc, tmp_path: Path) -> None:
    require_plugins("image-folder", "resnet18", "aggressive-crop", "moco-queue")
    write_images(tmp_path / "images", {"a": 8, "b": 8}, size=20)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(TINY_TRAIN_RECIPE.format(name="stages", root=tmp_path, batch_size=8))
    run_dir = tmp_path / "run"
    assert sslc("run", str(recipe), "--run-dir", str(run_dir), "--quiet").code == 0
    ckpt = run_dir / "models" / "m" / "checkpoint.pt"
    # what a SIGKILL in the middle of an atomic checkpoint write leaves behind
    stale = ckpt.parent / ".checkpoint.pt.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    before = (ckpt.read_bytes(), ckpt.stat().st_mtime_ns,
              (run_dir / "models" / "m" / "train.json").read_text())
    res = sslc("run", str(recipe), "--run-dir", str(run_dir), "--stages", "probe,report",
               "--force", "--quiet")
    assert res.code == 0, res.err
    after = (ckpt.read_bytes(), ckpt.stat().st_mtime_ns,
             (run_dir / "models" / "m" / "train.json").read_text())
    assert after == before
    assert not stale.exists()
    # `--force` with train does retrain
    res = sslc("run", str(recipe), "--run-dir", str(run_dir), "--stages", "train", "--force",
               "--quiet")
    assert res.code == 0, res.err
    assert ckpt.stat().st_mtime_ns != before[1]


def test_a_worlds_content_neutral_params_stay_out_of_training_fingerprints(tmp_path: Path) -> None:
    """Rendering fewer ALOI objects changes no file a model trains on: no retraining."""
    require_plugins("synthworld")
    from ssl_core.plugin.host import get_registry
    from ssl_core.recipe.schema import load_recipe
    from ssl_core.run.runner import Runner

    def identity(world: str) -> object:
        recipe = tmp_path / "r.yaml"
        recipe.write_text(f"name: w\nworld: {world}\ndatasets: {{}}\nmodels: {{}}\n")
        loaded = load_recipe(recipe, registry=get_registry())
        return Runner(loaded, get_registry(), run_dir=tmp_path / "run")._world_identity()

    plain = identity("{type: synthworld, size: tiny, parts: [aloi]}")
    assert identity("{type: synthworld, size: tiny, parts: [aloi], aloi_objects: 2}") == plain
    assert identity("{type: synthworld, size: tiny, parts: [aloi], seed: 3}") != plain
