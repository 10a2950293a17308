"""Issue 10 (hardening): start-up without torch, Ctrl-C, run-directory locks, unwritable and
misplaced directories, device names, results on stdout, a run directory reused by
another recipe, and `sslc data synthesize` options from the world's parameters."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import typing
from pathlib import Path

import pytest
from helpers import TINY_TRAIN_RECIPE, assert_user_error, require_plugins, write_images

from ssl_core.errors import LockedError
from ssl_core.run.locking import LOCK_NAME, dir_lock, read_holder

RECIPE = TINY_TRAIN_RECIPE + """\
probes:
  {probe}: {{type: aloi-viewpoint, dataset: train}}
"""
LONG_PROBE = "viewpoint-of-the-objects-seen-from-far-away-with-a-very-long-name"


@pytest.fixture
def recipe(tmp_path: Path):
    """A valid recipe (whose `report` stage needs no training) writer: recipe(name=..., probe=...)."""
    require_plugins("image-folder", "resnet18", "aggressive-crop", "moco-queue", "aloi-viewpoint")
    write_images(tmp_path / "images", {"a": 4, "b": 4}, size=20)

    def make(name: str = "hard", probe: str = "viewpoint", file: str = "recipe.yaml") -> Path:
        path = tmp_path / file
        path.write_text(RECIPE.format(name=name, root=tmp_path, probe=probe, batch_size=4))
        return path

    return make


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ssl_core.cli", *args]


# -- start-up ------------------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_version_and_help_do_not_import_torch(flag: str) -> None:
    code = (f"import sys\nfrom ssl_core.cli import main\ntry:\n    main([{flag!r}])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'numpy')))")
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    print(f"sslc {flag}: {time.perf_counter() - start:.2f} s wall in a subprocess")
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
    assert ("version" in out.stdout) if flag == "--version" else ("validate" in out.stdout)


def test_help_lines_match_the_commands() -> None:
    """`sslc --help` lists commands from a table, without importing them: it must not drift."""
    from ssl_core.cli.app import COMMANDS, cli

    for name, (_, _, line) in COMMANDS.items():
        command = cli.get_command(None, name)  # type: ignore[arg-type]
        assert command is not None, name
        assert " ".join((command.help or "").split()).startswith(line.removesuffix(".")), name


def test_cli_stages_are_the_runners() -> None:
    from ssl_core.run.runner import STAGES as runner_stages
    from ssl_core.run.stages import STAGES

    assert tuple(runner_stages) == STAGES


def _wait_until_torch_loads(pid: int, timeout_s: float = 60.0) -> None:
    """Until the process maps torch's libraries: it is then importing torch inside `sslc`'s
    start-up, past the interpreter's own (where Ctrl-C is Python's, not ours, to handle)."""
    maps = Path(f"/proc/{pid}/maps")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if "libtorch" in maps.read_text():
                return
        except OSError:
            pass
        time.sleep(0.01)
    pytest.fail("the child never loaded torch")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see the child's start-up")
def test_ctrl_c_during_start_up_is_one_line_and_exit_130(recipe, tmp_path: Path) -> None:
    proc = subprocess.Popen(_cli("run", str(recipe()), "--run-dir", str(tmp_path / "run")),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_until_torch_loads(proc.pid)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err, err


# -- locks ----------------------------------------------------------------------------------
HOLD = """\
import sys, time
from ssl_core.run.locking import dir_lock
with dir_lock(sys.argv[1], what="run directory"):
    print("locked", flush=True)
    time.sleep(120)
"""


def _holder(directory: Path, code: str = HOLD) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", code, str(directory)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_names_the_holder_and_a_killed_holder_is_taken_over(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _holder(run_dir)
    try:
        with pytest.raises(LockedError) as err, dir_lock(run_dir, what="run directory"):
            pass
        assert f"pid {proc.pid}" in str(err.value) and "in use" in str(err.value)
    finally:
        proc.kill()  # SIGKILL: no clean-up code runs in the holder
        proc.wait()
    assert read_holder(run_dir / LOCK_NAME).pid == proc.pid  # its details are left behind
    with dir_lock(run_dir) as stale:
        assert stale is not None and stale.pid == proc.pid
        with dir_lock(run_dir) as again:  # re-entrant within one process
            assert again is None
    assert (run_dir / LOCK_NAME).read_text() == ""  # released cleanly


def test_second_run_into_a_locked_run_dir_exits_2(sslc, recipe, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _holder(run_dir)
    try:
        result = sslc("run", str(recipe()), "--run-dir", str(run_dir), "--stages", "report")
    finally:
        proc.kill()
        proc.wait()
    assert_user_error(result, "is in use by", f"pid {proc.pid}", "--run-dir")
    result = sslc("run", str(recipe()), "--run-dir", str(run_dir), "--stages", "report")
    assert result.code == 0, result.err
    assert "taking over the lock" in " ".join(result.err.split())  # rich wraps long paths


# -- directories -------------------------------------------------------------------------
def test_run_dir_under_a_file(sslc, recipe, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    assert_user_error(sslc("run", str(recipe()), "--run-dir", str(tmp_path / "afile" / "sub")),
                      "afile is a file, not a directory", "--run-dir")


def _sys_is_read_only() -> bool:
    probe = Path(f"/sys/sslc-probe-{os.getpid()}")
    try:
        probe.mkdir()
    except OSError:
        return Path("/sys").is_dir()
    probe.rmdir()
    return False


@pytest.mark.skipif(not _sys_is_read_only(), reason="needs a directory no user can write (Linux /sys)")
def test_unwritable_run_dir(sslc, recipe) -> None:
    assert_user_error(sslc("run", str(recipe()), "--run-dir", "/sys"), "/sys is not writable", "--run-dir")
    assert_user_error(sslc("run", str(recipe()), "--run-dir", "/sys/sslc-run"), "cannot create run directory")


def test_unwritable_run_dir_by_permissions(sslc, recipe, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert_user_error(sslc("run", str(recipe()), "--run-dir", str(locked)), "not writable", "permission")
    finally:
        locked.chmod(0o755)


@pytest.mark.skipif(not _sys_is_read_only(), reason="needs a directory no user can write (Linux /sys)")
def test_permission_denied_anywhere_is_a_user_error(sslc) -> None:
    assert_user_error(sslc("schema", "--output", "/sys/schema.json"), "cannot write /sys/", "--output")


@pytest.mark.skipif(not _sys_is_read_only(), reason="needs a directory no user can write (Linux /sys)")
def test_unwritable_cache_is_a_user_error(sslc) -> None:
    require_plugins("synthworld")
    result = sslc("data", "synthesize", "--size", "tiny", env={"SSLC_CACHE_DIR": "/sys/sslc-cache"})
    assert_user_error(result, "cannot write /sys/sslc-cache", "SSLC_CACHE_DIR")


def test_cache_dir_that_is_a_file(sslc, recipe, tmp_path: Path) -> None:
    (tmp_path / "cachefile").write_text("x")
    result = sslc("run", str(recipe()), "--run-dir", str(tmp_path / "run"),
                  env={"SSLC_CACHE_DIR": str(tmp_path / "cachefile")})
    assert_user_error(result, "SSLC_CACHE_DIR", "is a file, not a directory")


def test_unusable_cache_warns_and_returns_false(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ssl_core.kit.preflight import cache_usable

    (tmp_path / "f").write_text("x")
    assert cache_usable(tmp_path / "c", "feature cache")
    assert not cache_usable(tmp_path / "f" / "features", "feature cache")
    assert "continuing without the feature cache" in capsys.readouterr().err


@pytest.mark.parametrize("device, needle", [("bogus", "is not a device"), ("cuda:x", "is not a device"),
                                            ("mps", "mps"), ("cuda:99", "cuda:99")])
def test_bad_device(sslc, recipe, tmp_path: Path, device: str, needle: str) -> None:
    import torch

    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    result = sslc("run", str(recipe()), "--device", device, "--run-dir", str(tmp_path / "run"))
    assert_user_error(result, needle, "--device")


def test_check_device_accepts_what_exists() -> None:
    import torch

    from ssl_core.cli.options import check_device

    assert check_device("CPU") == "cpu" and check_device("auto") == "auto"
    if torch.cuda.is_available():
        assert check_device("cuda:0") == "cuda:0"


# -- stdout, readable tables, a run directory reused by another recipe ----------------------
def test_results_on_stdout_with_whole_probe_names(sslc, recipe, tmp_path: Path) -> None:
    path = recipe(probe=LONG_PROBE)
    result = sslc("run", str(path), "--run-dir", str(tmp_path / "run"), "--stages", "report")
    assert result.code == 0, result.err
    assert LONG_PROBE in result.out  # on stdout, whole although stdout is not a terminal
    assert "results in" in result.out


def test_run_dir_of_another_recipe_is_moved_aside(sslc, recipe, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = recipe(name="first", file="first.yaml")
    assert sslc("run", str(first), "--run-dir", str(run_dir), "--stages", "report").code == 0
    assert sslc("run", str(first), "--run-dir", str(run_dir), "--stages", "report").code == 0
    assert not (run_dir / "previous").exists()  # the same recipe again: nothing moved
    second = recipe(name="second", file="second.yaml")
    result = sslc("run", str(second), "--run-dir", str(run_dir), "--stages", "report")
    assert result.code == 0, result.err
    assert "held the results of recipe 'first'" in result.err
    (moved,) = (run_dir / "previous").iterdir()
    assert moved.name.startswith("first-")
    assert json.loads((moved / "report.json").read_text())["recipe"] == "first"
    assert json.loads((run_dir / "report.json").read_text())["recipe"] == "second"
    assert json.loads((run_dir / "run.json").read_text())["recipe"] == "second"


# -- validate finds what run would find after training ---------------------------------------
def test_validate_finds_a_missing_probe_dataset_root(sslc, tmp_path: Path) -> None:
    require_plugins("resnet18", "aloi", "aloi-viewpoint")
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent("""\
        name: x
        data_root: data
        datasets:
          aloi: {type: aloi, root: aloi-missing}
        models:
          m: {encoder: {type: resnet18}}
        probes:
          viewpoint: {type: aloi-viewpoint, dataset: aloi}
          direction: {type: aloi-illumination-direction}
        """))
    (tmp_path / "data").mkdir()
    result = sslc("validate", str(path))
    assert_user_error(result, "datasets.aloi.root", "r.yaml:4", str(tmp_path / "data" / "aloi-missing"),
                      "probes.viewpoint")
    assert "probes.direction" not in result.err  # its default root, the data root, exists
    assert sslc("validate", str(path), "--no-data-check").code == 0
    (tmp_path / "data").rmdir()
    assert_user_error(sslc("validate", str(path)), "data_root (", "probes.direction")


def test_validate_skips_roots_a_world_creates(sslc, tmp_path: Path) -> None:
    require_plugins("synthworld", "resnet18", "aloi", "aloi-viewpoint")
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent("""\
        name: x
        world: {type: synthworld, size: tiny}
        datasets:
          aloi: {type: aloi, root: aloi}
        models:
          m: {encoder: {type: resnet18}}
        probes:
          viewpoint: {type: aloi-viewpoint, dataset: aloi}
        """))
    result = sslc("validate", str(path), "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["data_checked"] is True


def test_validate_accepts_seeds(sslc, recipe) -> None:
    result = sslc("validate", str(recipe()), "--seeds", "0,1,2", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["seeds"] == [0, 1, 2]
    result = sslc("validate", str(recipe()), "--seeds", "0,x")
    assert result.code == 2 and "--seeds" in result.err


# -- `sslc data synthesize` options come from the world's parameter model --------------
def test_synthesize_options_come_from_the_world_params(sslc) -> None:
    require_plugins("synthworld")
    from ssl_core.plugin.host import get_registry

    params = get_registry().get("dataset", "synthworld").params.model_fields
    sizes = typing.get_args(params["size"].annotation)
    result = sslc("data", "synthesize", "--help")
    assert result.code == 0, result.err
    assert "--size [" + "|".join(sizes) + "]" in result.out and "--seed" in result.out
    result = sslc("data", "synthesize", "--size", "huge")
    assert result.code == 2 and "huge" in result.err
    result = sslc("data", "synthesize", "--world", "image-folder")
    assert_user_error(result, "does not render one", "synthworld")


def test_a_world_being_rendered_is_locked(sslc) -> None:
    require_plugins("synthworld")
    from ssl_core.plugin.host import get_registry

    root = get_registry().create("dataset", {"type": "synthworld", "size": "tiny", "seed": 7}).root
    proc = _holder(root, HOLD.replace("dir_lock(sys.argv[1], what=\"run directory\")", "world_lock(sys.argv[1])")
                   .replace("import dir_lock", "import world_lock"))
    try:
        result = sslc("data", "synthesize", "--size", "tiny", "--seed", "7")
    finally:
        proc.kill()
        proc.wait()
    assert_user_error(result, f"world {root} is in use by pid {proc.pid}", "rendering this world")
    assert not root.exists()  # nothing was rendered beside the other renderer


SWALLOWS = """\
import os, signal, sys, time
from ssl_core import cli
cli.SWALLOWED_INTERRUPT_GRACE_S = 0.5
cli.install_interrupt_handler()
try:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)
except KeyboardInterrupt:
    pass  # lost, as in a finaliser or a library's bare `except:`
print("carried on", flush=True)
time.sleep(60)
sys.exit(0)
"""


def test_a_swallowed_ctrl_c_still_ends_sslc_with_exit_130() -> None:
    proc = subprocess.run([sys.executable, "-c", SWALLOWS], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 130, proc.stderr
    assert "carried on" in proc.stdout and "interrupted" in proc.stderr
