"""nox sessions. Torch is installed once (by `make install` / `pip install -e .[dev]`), and
sessions run in that same environment instead of each building a venv with a 5 GB torch.
The example-plugin session gets its own venv layered on the system site-packages, so it can
install the third-party package without touching the main environment."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["tests", "plugin", "lint", "typecheck", "docs", "example"]

ROOT = Path(__file__).resolve().parent


def _builtin_plugins() -> dict[str, list[str]]:
    """Entry-point name -> its test files, from pyproject.toml's `sslc.plugins` entry points:
    `sslc_plugins.NAME` is tested by tests/plugins/NAME/test_*.py."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out = {}
    for name, target in project["entry-points"]["sslc.plugins"].items():
        module = target.split(":")[0].removeprefix("sslc_plugins.")
        tests = sorted((ROOT / "tests" / "plugins" / module).glob("test_*.py"))
        out[name] = [str(t.relative_to(ROOT)) for t in tests]
    return out


BUILTIN_PLUGINS = _builtin_plugins()


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite (GPU tests skip without a GPU)."""
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session
@nox.parametrize("plugin", list(BUILTIN_PLUGINS))
def plugin(session: nox.Session, plugin: str) -> None:
    """One built-in plugin's tests with only that plugin loaded (strict: load errors are fatal).
    The `slow` ones (multi-process, end-to-end training) ran in the `tests` session already."""
    env = {"SSLC_LOAD_PLUGINS": plugin, "SSLC_STRICT_PLUGINS": "1"}
    session.run("sslc", "plugins", env=env)
    session.run("python", "-m", "pytest", "-q", "-m", "not slow", *BUILTIN_PLUGINS[plugin], env=env)


def _inherit_environment(session: nox.Session) -> None:
    """Let the session's venv see every package of the environment running nox (torch,
    sslc), whether that is a venv or the system: a `.pth` line adds its site dir."""
    parent = sysconfig.get_paths()["purelib"]
    child = session.run("python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                        silent=True)
    assert isinstance(child, str)
    Path(child.strip(), "_sslc_parent_env.pth").write_text(
        f"import site; site.addsitedir({parent!r})\n")


@nox.session(venv_backend="venv")
def example(session: nox.Session) -> None:
    """Install the third-party example plugin and use it from a recipe."""
    _inherit_environment(session)
    session.install("--no-deps", "-e", "examples/sslc-simclr")
    session.run("python", "-m", "pytest", "-q", "examples/sslc-simclr/tests",
                env={"SSLC_STRICT_PLUGINS": "1"})
    session.run("python", "-m", "ssl_core.cli", "plugins")
    session.run("python", "-m", "ssl_core.cli", "run", "examples/sslc-simclr/recipe.yaml",
                "--run-dir", f"{session.create_tmp()}/simclr-run", "--quiet")


@nox.session
def lint(session: nox.Session) -> None:
    session.run("ruff", "check", "ssl_core", "plugins", "tests", "benchmarks", "examples", "scripts",
                "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.run("mypy", "ssl_core", "plugins")


@nox.session
def docs(session: nox.Session) -> None:
    """Every registered component is documented with its parameters; the schema exports."""
    session.run("python", "-m", "pytest", "-q", "tests/test_docs.py")
    session.run("sslc", "schema", "--output", f"{session.create_tmp()}/recipe.schema.json")


@nox.session
def benchmarks(session: nox.Session) -> None:
    """Speed and memory figures against their baselines (not part of CI)."""
    for script in ("bench_ris.py", "bench_train_step.py", "bench_feature_extraction.py",
                   "bench_augment.py", "bench_cli_startup.py", "bench_probe_models.py"):
        session.run("python", f"benchmarks/{script}", *session.posargs)
