"""Issue 20 (hardening, round two), the CLI side: meaningless numbers refused (bootstrap
intervals of too few resamples, unfinished checkpoints exported), writers that fail half-way
(file-size limit, an output folder that is a file), wrong hints, and checkpoints given as
a run's model directory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import assert_user_error, require_plugins
from PIL import Image

from ssl_core.errors import PathError
from ssl_core.kit.atomic import torch_save, write_json
from ssl_core.models.checkpoints import SSLC_FORMAT_VERSION
from ssl_core.plugin.host import get_registry


def _model_dir(tmp_path: Path, *, done: bool = True, small_input: bool = False) -> Path:
    """A run's model directory holding a training checkpoint as the trainer writes it."""
    require_plugins("resnet18", "moco-queue")
    config = {"type": "resnet18", "small_input": small_input}
    enc = get_registry().create("encoder", config)
    model_dir = tmp_path / "run" / "models" / "moco"
    model_dir.mkdir(parents=True)
    torch.save({"sslc_format": SSLC_FORMAT_VERSION, "step": 3, "done": done, "encoder": config,
                "encoder_state_dict": enc.state_dict()}, model_dir / "checkpoint.pt")
    return model_dir


# -- numbers that mean nothing --------------------------------------------------------


@pytest.mark.parametrize("n", ["1", "10"])
def test_probe_refuses_too_few_resamples_for_a_95_interval(sslc, tmp_path: Path, n: str) -> None:
    res = sslc("probe", "--checkpoint", "random:resnet18", "--probe", "aloi-viewpoint",
               "--data", str(tmp_path), "--resamples", n)
    assert_user_error(res, "--resamples", "0")
    assert not list(tmp_path.iterdir()), "refused before any work"


def test_export_of_an_unfinished_checkpoint_needs_allow_unfinished(sslc, tmp_path: Path) -> None:
    model_dir = _model_dir(tmp_path, done=False)
    out = tmp_path / "out.pth"
    res = sslc("export", str(model_dir), "--format", "torchvision", "-o", str(out))
    assert_user_error(res, "checkpoint.pt", "unfinished", "--allow-unfinished")
    assert not out.exists()
    res = sslc("export", str(model_dir), "--format", "torchvision", "-o", str(out),
               "--allow-unfinished")
    assert res.code == 0, res.err
    assert out.is_file() and "unfinished" in res.err


# -- writers that fail half-way -------------------------------------------------------


def test_an_output_folder_that_is_a_file_is_one_clean_error(sslc, tmp_path: Path) -> None:
    model_dir = _model_dir(tmp_path)
    (tmp_path / "file.yaml").write_text("x: 1\n")
    res = sslc("export", str(model_dir), "--format", "moco", "-o", str(tmp_path / "file.yaml" / "x.pth"))
    assert_user_error(res, "file.yaml", "is a file")
    assert (tmp_path / "file.yaml").read_text() == "x: 1\n", "nothing already written is lost"
    with pytest.raises(PathError, match="file.yaml.* is a file"):
        write_json(tmp_path / "file.yaml" / "deeper" / "r.json", {})


def test_a_file_size_limit_while_saving_leaves_no_partial_file(tmp_path: Path) -> None:
    """torch.save raises RuntimeError and zipfile OSError(EFBIG): one error naming the file."""
    script = textwrap.dedent(f"""
        import resource, signal, torch
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        from ssl_core.kit.atomic import torch_save
        from ssl_core.errors import PathError
        try:
            torch_save({str(tmp_path / 'big.pt')!r}, {{"w": torch.zeros(100_000)}})
        except PathError as exc:
            print("PathError:", exc)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "PathError:" in proc.stdout and "big.pt" in proc.stdout, proc.stdout + proc.stderr
    assert "hint:" in proc.stdout
    assert os.listdir(tmp_path) == [], "no partial or temporary file is left"


def test_an_existing_file_survives_a_failed_rewrite(tmp_path: Path) -> None:
    target = tmp_path / "ckpt.pt"
    torch_save(target, {"a": torch.ones(2)})
    before = target.read_bytes()

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    with pytest.raises(PathError, match="ckpt.pt"):
        torch_save(target, {"a": Unpicklable()})
    assert target.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["ckpt.pt"]


# -- wrong reasons and hints ---------------------------------------------------------


def test_small_input_torchvision_hint_names_a_format_export_writes(sslc, tmp_path: Path) -> None:
    model_dir = _model_dir(tmp_path, small_input=True)
    res = sslc("export", str(model_dir), "--format", "torchvision", "-o", str(tmp_path / "x.pth"))
    assert_user_error(res, "small_input")
    assert "or sslc" not in res.err and "--format sslc" not in res.err, "export cannot write sslc"
    out = tmp_path / "y.pth"
    hinted = "moco"
    assert f"--format {hinted}" in res.err
    assert sslc("export", str(model_dir), "--format", hinted, "-o", str(out), "--quiet").code == 0


def test_evaluate_interrupted_does_not_promise_a_checkpoint() -> None:
    from ssl_core.cli import interrupted_message

    assert "checkpoint" in interrupted_message(["run", "r.yaml"])
    for argv in (["evaluate", "--checkpoint", "x"], ["--quiet", "probe"], ["export", "a"]):
        assert "checkpoint" not in interrupted_message(argv), argv


def _voc_like(root: Path) -> Path:
    from evalkit import standard_voc

    standard_voc(root, per_subset=9)
    return root


def test_a_run_model_directory_is_a_checkpoint_everywhere(sslc, tmp_path: Path) -> None:
    require_plugins("aloi-viewpoint", "voc07-svm", "voc2007")
    model_dir = _model_dir(tmp_path, small_input=True)
    for obj in (1, 2):
        folder = tmp_path / "aloi" / "aloi_red2_view" / str(obj)
        folder.mkdir(parents=True)
        for angle in range(0, 360, 30):
            Image.new("RGB", (24, 18), (obj * 60, angle % 255, 90)).save(folder / f"{obj}_r{angle}.png")
    res = sslc("probe", "--checkpoint", str(model_dir), "--probe", "aloi-viewpoint",
               "--data", str(tmp_path / "aloi"), "--workers", "0", "--no-cache",
               "--resamples", "0", "--json", "--quiet")
    assert res.code == 0, res.err
    res = sslc("evaluate", "--checkpoint", str(model_dir), "--evaluator", "voc07-svm",
               "--data", str(_voc_like(tmp_path / "voc")), "--option", "image_size=16",
               "--option", "n_jobs=1", "--option", "costs=[1.0]", "--option", "folds=2",
               "--workers", "0", "--no-cache", "--json", "--quiet")
    assert res.code == 0, res.err


# -- torchrun -----------------------------------------------------------------------


def _torchrun(tmp_path: Path, recipe_text: str, run_dir: Path) -> subprocess.CompletedProcess[str]:
    import shutil

    script = Path(sys.executable).parent / "sslc"
    found = str(script) if script.is_file() else shutil.which("sslc")
    if found is None:
        pytest.skip("the sslc console script is not installed")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(recipe_text)
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         found, "run", str(recipe), "--run-dir", str(run_dir), "--stages", "train"],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)


def _one_error_no_sslc_traceback(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    text = done.stderr + done.stdout
    assert done.returncode != 0, text
    assert text.count("error:") == 1, text
    assert "ssl_core" not in text.split("error:")[0], "no traceback from sslc before the error"
    assert "File \"/" not in text or "ssl_core/" not in text, text
    for needle in needles:
        assert needle in text, text
    assert "exitcode  : 2" in text, "every rank exits 2 (a user error), not 1"


@pytest.mark.slow  # two spawned ranks per case
def test_torchrun_bad_recipe_and_uneven_batch_are_one_message(tmp_path: Path) -> None:
    from helpers import TINY_TRAIN_RECIPE, write_images

    require_plugins("image-folder", "resnet18", "aggressive-crop", "moco-queue")
    write_images(tmp_path / "images", {"a": 4, "b": 4}, size=20)
    good = TINY_TRAIN_RECIPE.format(name="t", root=tmp_path, batch_size=4)
    done = _torchrun(tmp_path, good.replace("epochs: 1", "epochs: -1"), tmp_path / "r1")
    _one_error_no_sslc_traceback(done, "epochs")
    done = _torchrun(tmp_path, TINY_TRAIN_RECIPE.format(name="t", root=tmp_path, batch_size=5),
                     tmp_path / "r2")
    _one_error_no_sslc_traceback(done, "batch_size", "recipe.yaml:", "2 processes")


@pytest.mark.slow  # two spawned ranks
def test_torchrun_into_a_locked_run_dir_is_one_message(tmp_path: Path) -> None:
    from helpers import TINY_TRAIN_RECIPE, write_images

    from ssl_core.run.locking import dir_lock

    require_plugins("image-folder", "resnet18", "aggressive-crop", "moco-queue")
    write_images(tmp_path / "images", {"a": 4, "b": 4}, size=20)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with dir_lock(run_dir, what="run directory"):
        done = _torchrun(tmp_path, TINY_TRAIN_RECIPE.format(name="t", root=tmp_path, batch_size=4),
                         run_dir)
    _one_error_no_sslc_traceback(done, "run directory")


@pytest.mark.parametrize("command", ["probe", "evaluate"])
def test_save_features_inside_a_file_is_refused_before_any_work(sslc, tmp_path: Path,
                                                                command: str) -> None:
    (tmp_path / "file").write_text("keep me")
    target = str(tmp_path / "file" / "x.npz")
    if command == "probe":
        args = ["probe", "--checkpoint", "random:resnet18", "--probe", "aloi-viewpoint",
                "--data", str(tmp_path / "nowhere"), "--save-features", target]
    else:
        args = ["evaluate", "--checkpoint", "random:resnet18", "--evaluator", "voc07-svm",
                "--data", str(tmp_path / "nowhere"), "--save-features", target]
    res = sslc(*args)
    assert_user_error(res, "--save-features", "is a file")
    assert (tmp_path / "file").read_text() == "keep me"
