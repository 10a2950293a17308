"""The architecture's import rules hold (scripts/check_imports.py): the core's floors import
only downwards with no cycles, plugins and the example packages use only the public API."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_imports.py"
checker = runpy.run_path(str(SCRIPT))


def test_the_tree_keeps_the_import_rules(capsys: pytest.CaptureFixture[str]) -> None:
    status = checker["main"]()
    assert status == 0, capsys.readouterr().out


def _write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_an_upward_import_and_a_cycle_are_breaches(tmp_path: Path) -> None:
    core = {
        "ssl_core.kit.a": _write(tmp_path, "kit/a.py", "from ssl_core.run.b import x\n"),
        "ssl_core.run.b": _write(tmp_path, "run/b.py", "from ssl_core.kit.a import y\n"),
        "ssl_core.run.c": _write(tmp_path, "run/c.py", "from ssl_core import Encoder\n"),
    }
    breaches = checker["check_core"](core)
    assert any("floor kit) imports ssl_core.run.b (floor run)" in b for b in breaches)
    assert any(b.startswith("import cycle: ssl_core.kit.a -> ssl_core.run.b") for b in breaches)
    assert any("c.py:1: imports the ssl_core facade" in b for b in breaches)


def test_a_plugin_importing_a_plugin_or_a_core_module_is_a_breach(tmp_path: Path) -> None:
    core = {"ssl_core.kit.video": tmp_path / "video.py"}
    plugins = {
        "sslc_plugins.one": _write(tmp_path, "one.py", "from sslc_plugins.two import T\n"),
        "sslc_plugins.three": _write(tmp_path, "three.py", "from ssl_core.kit.video import r\n"),
        "sslc_plugins.four.a": _write(tmp_path, "four/a.py", "from sslc_plugins.four.b import B\n"),
    }
    breaches = checker["check_plugins"](plugins, core)
    assert len(breaches) == 2, breaches
    assert "imports another plugin (sslc_plugins.two)" in breaches[0]
    assert "imports ssl_core.kit.video" in breaches[1]
