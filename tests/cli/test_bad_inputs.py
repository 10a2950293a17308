"""Every user mistake: exit code 2, one message naming the problem and the fix, no traceback."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from helpers import TINY_TRAIN_RECIPE, assert_user_error, require_plugins, write_images


@pytest.fixture
def recipe(tmp_path: Path):
    require_plugins("image-folder", "resnet18", "aggressive-crop", "moco-queue")
    write_images(tmp_path / "images", {"a": 4, "b": 4}, size=20)

    def make(text: str = TINY_TRAIN_RECIPE, **replace: str) -> Path:
        body = text.format(name="bad", root=tmp_path, batch_size=4)
        for old, new in replace.items():
            assert old in body, old
            body = body.replace(old, new)
        path = tmp_path / "recipe.yaml"
        path.write_text(body)
        return path

    return make


def test_missing_recipe_file(sslc, tmp_path: Path) -> None:
    assert_user_error(sslc("validate", str(tmp_path / "nope.yaml")), "recipe file not found", "nope.yaml")


def test_bad_yaml(sslc, tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("name: x\nmodels: {a: [1, 2\n")
    assert_user_error(sslc("validate", str(path)), "invalid YAML", "r.yaml:")


def test_recipe_not_a_mapping(sslc, tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("- a\n- b\n")
    assert_user_error(sslc("validate", str(path)), "must be a YAML mapping")


def test_unknown_component(sslc, recipe) -> None:
    assert_user_error(sslc("validate", str(recipe(**{"type: resnet18": "type: resnet19"}))),
                      "unknown encoder 'resnet19'", "models.m.encoder", "did you mean 'resnet18'", "pip install")


def test_misspelled_parameter(sslc, recipe) -> None:
    assert_user_error(sslc("validate", str(recipe(**{"queue_size: 16": "queue_sise: 16"}))),
                      "queue_sise", "unknown parameter", "recipe.yaml:11")


def test_wrong_type(sslc, recipe) -> None:
    assert_user_error(sslc("validate", str(recipe(**{"epochs: 1": "epochs: many"}))),
                      "models.m.train.epochs", "integer", "recipe.yaml:12")


def test_missing_required_section(sslc, tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("name: x\n")
    assert_user_error(sslc("validate", str(path)), "models", "required key is missing")


def test_unknown_profile(sslc, recipe) -> None:
    assert_user_error(sslc("validate", str(recipe()), "--profile", "cluster"), "no profile 'cluster'")


def test_set_unknown_path(sslc, recipe) -> None:
    assert_user_error(sslc("validate", str(recipe()), "--set", "models.x.train.epochs=3"),
                      "--set models.x.train.epochs", "keys there: m")


def test_set_without_equals(sslc, recipe) -> None:
    assert_user_error(sslc("validate", str(recipe()), "--set", "models.m.train.epochs"), "expected dotted.key=value")


def test_extends_missing_base(sslc, tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("extends: base.yaml\nname: x\n")
    assert_user_error(sslc("validate", str(path)), "base recipe", "base.yaml", "not found")


def test_train_names_unknown_dataset(sslc, recipe) -> None:
    assert_user_error(sslc("validate", str(recipe(**{"dataset: train": "dataset: trian"}))),
                      "no dataset named 'trian'", "datasets in this recipe: train")


def test_missing_dataset_path(sslc, recipe, tmp_path: Path) -> None:
    path = recipe(**{"root: images}": "root: imagez}"})
    assert_user_error(sslc("run", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"), "imagez")


def test_queue_not_divisible_by_batch(sslc, recipe, tmp_path: Path) -> None:
    path = recipe(**{"batch_size: 4": "batch_size: 3"})
    assert_user_error(sslc("run", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"), "16", "3")


def test_batch_larger_than_dataset(sslc, recipe, tmp_path: Path) -> None:
    path = recipe(**{"batch_size: 4": "batch_size: 16"})
    assert_user_error(sslc("run", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"),
                      "fewer than batch_size=16", "lower train.batch_size")


@pytest.mark.parametrize("workers", [0, 1])
def test_unreadable_image(sslc, recipe, tmp_path: Path, workers: int) -> None:
    bad = tmp_path / "images" / "a" / "a_0.png"
    bad.write_bytes(bad.read_bytes()[:40])  # a truncated PNG
    path = recipe(**{"num_workers: 0": f"num_workers: {workers}"})
    result = sslc("run", str(path), "--run-dir", str(tmp_path / "run"), "--quiet")
    assert_user_error(result, "a_0.png")
    assert "Original Traceback" not in result.err


def test_amp_on_cpu(sslc, recipe, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("amp is valid where CUDA exists")
    path = recipe(**{"num_workers: 0": "num_workers: 0\n      precision: amp"})
    assert_user_error(sslc("run", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"), "amp needs a CUDA device")


def test_cuda_device_without_cuda(sslc, recipe, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert_user_error(sslc("run", str(recipe()), "--device", "cuda", "--run-dir", str(tmp_path / "r")),
                      "no CUDA device")


def test_unknown_stage(sslc, recipe) -> None:
    result = sslc("run", str(recipe()), "--stages", "train,dance")
    assert result.code == 2 and "dance" in result.err and "Traceback" not in result.err


def test_broken_plugin_strict(sslc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "fake_cli_broken.py").write_text("import does_not_exist\n")
    info = site / "fake_cli_broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-cli-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[sslc.plugins]\ncli-broken = fake_cli_broken\n")
    monkeypatch.syspath_prepend(str(site))
    result = sslc("plugins", env={"SSLC_STRICT_PLUGINS": "1", "SSLC_LOAD_PLUGINS": "cli-broken"})
    assert_user_error(result, "plugin 'cli-broken' failed to import", "does_not_exist", "SSLC_STRICT_PLUGINS")
    # without strict mode the failure is listed and the command works
    result = sslc("plugins", "--json", env={"SSLC_STRICT_PLUGINS": "0", "SSLC_LOAD_PLUGINS": "cli-broken,resnet"})
    assert result.code == 0 and '"cli-broken"' in result.out and "resnet18" in result.out


def test_checkpoint_of_unknown_layout(sslc, recipe, tmp_path: Path) -> None:
    import torch

    ckpt = tmp_path / "weird.pth"
    torch.save({"weights": {"a": torch.zeros(2)}}, ckpt)
    text = textwrap.dedent(f"""\
        name: ck
        models:
          m:
            encoder: {{type: resnet18}}
            checkpoint: {{path: {ckpt}}}
        """)
    path = tmp_path / "ck.yaml"
    path.write_text(text)
    assert_user_error(sslc("run", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"), "weird.pth")


def test_duplicate_key(sslc, recipe) -> None:
    path = recipe(**{"epochs: 1": "epochs: 1\n      epochs: 7"})
    assert_user_error(sslc("validate", str(path)), "written twice", "lines 12 and 13", "recipe.yaml:13")


def test_set_value_error_names_set(sslc, recipe) -> None:
    assert_user_error(sslc("validate", str(recipe()), "--set", "models.m.train.epochs=many"),
                      "from --set models.m.train.epochs=many", "integer")


def test_recipe_name_with_a_path(sslc, recipe) -> None:
    assert_user_error(sslc("validate", str(recipe(**{"name: bad": "name: ../../etc"}))), "plain name")


def test_zero_top_k(sslc, recipe) -> None:
    path = recipe(**{"num_workers: 0": "num_workers: 0\nprobe_settings: {top_k: [0]}"})
    assert_user_error(sslc("validate", str(path)), "probe_settings.top_k", "at least 1")
