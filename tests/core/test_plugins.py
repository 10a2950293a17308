"""The plugin layer: entry-point loading in isolation, allow/block lists, conflicts, errors."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel

from ssl_core import hookimpl
from ssl_core.errors import ComponentError, PluginError
from ssl_core.plugins import PluginHost, reset_host


def install_fake_distribution(site: Path, dist: str, modules: dict[str, str], entry_points: dict[str, str]) -> None:
    """Write a real (if minimal) installed distribution: a module and a .dist-info with entry points."""
    for name, source in modules.items():
        (site / f"{name}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    eps = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[sslc.plugins]\n{eps}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for mod in [m for m in sys.modules if m.startswith("fake_")]:
        del sys.modules[mod]
    reset_host()


GOOD = """
from ssl_core import hookimpl, Params
class P(Params):
    width: int = 4
@hookimpl
def register_encoders(register):
    register("fake-net", lambda p: ("net", p.width), params=P, summary="a fake net")
"""


def test_builtin_plugins_register_through_entry_points() -> None:
    host = PluginHost()
    host.load_entry_points()
    assert "resnet" in host.plugins
    spec = host.registry.get("encoder", "resnet18")
    assert spec.plugin == "resnet" and spec.plugin_version


def test_broken_import_is_reported_and_others_still_load(site: Path) -> None:
    install_fake_distribution(site, "fake-broken", {"fake_broken": "raise ImportError('no foo')"},
                              {"broken": "fake_broken"})
    install_fake_distribution(site, "fake-good", {"fake_good": GOOD}, {"good": "fake_good"})
    host = PluginHost()
    host.load_entry_points()
    failure = next(f for f in host.failures if f.name == "broken")
    assert failure.stage == "import" and "no foo" in failure.error
    assert host.registry.create("encoder", {"type": "fake-net", "width": 7}) == ("net", 7)
    assert host.plugins["good"].version == "1.2.3"


def test_strict_mode_makes_a_broken_plugin_fatal(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_distribution(site, "fake-broken", {"fake_broken": "raise ImportError('no foo')"},
                              {"broken": "fake_broken"})
    monkeypatch.setenv("SSLC_STRICT_PLUGINS", "1")
    monkeypatch.setenv("SSLC_LOAD_PLUGINS", "resnet,broken")
    with pytest.raises(PluginError, match="'broken' failed to import: ImportError: no foo"):
        PluginHost().load_entry_points()


def test_failing_registration_registers_nothing_of_that_plugin() -> None:
    class Half:
        @staticmethod
        @hookimpl
        def register_encoders(register):
            register("half-a", lambda p: 1)
            raise RuntimeError("boom")

    host = PluginHost()
    assert not host.add_plugin(Half, "half")
    assert "half-a" not in host.registry.names("encoder")
    assert host.failures[0].stage == "register" and "boom" in host.failures[0].error


def test_allow_and_block_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSLC_LOAD_PLUGINS", "resnet")
    host = PluginHost()
    host.load_entry_points()
    assert list(host.plugins) == ["resnet"]
    monkeypatch.delenv("SSLC_LOAD_PLUGINS")
    monkeypatch.setenv("SSLC_DISABLE_PLUGINS", "resnet")
    host = PluginHost()
    host.load_entry_points()
    assert "resnet" not in host.plugins and "resnet" in host.skipped


def test_allow_list_naming_a_missing_plugin_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSLC_LOAD_PLUGINS", "resnet,nonesuch")
    host = PluginHost()
    host.load_entry_points()
    assert any(f.name == "nonesuch" for f in host.failures)


def test_duplicate_names_fail_naming_both_plugins() -> None:
    def plugin(tag: str):
        class P:
            @staticmethod
            @hookimpl
            def register_encoders(register):
                register("same", lambda p: tag)
                register(f"only-{tag}", lambda p: tag)
        return P

    host = PluginHost()
    host.add_plugin(plugin("a"), "plugin-a")
    host.add_plugin(plugin("b"), "plugin-b")
    with pytest.raises(ComponentError) as err:
        host.registry.get("encoder", "same")
    assert "plugin-a" in str(err.value) and "plugin-b" in str(err.value)
    assert host.registry.create("encoder", {"type": "only-b"}) == "b"


def test_unknown_name_lists_available_close_match_and_install_hint() -> None:
    host = PluginHost()
    host.load_entry_points()
    with pytest.raises(ComponentError) as err:
        host.registry.get("encoder", "resnet19", where="models.a.encoder")
    text = str(err.value)
    assert "resnet19" in text and "models.a.encoder" in text
    assert "did you mean 'resnet18'" in text and "resnet50" in text and "pip install" in text


def test_params_reject_unknown_keys_even_if_the_plugin_forgot() -> None:
    class Loose(BaseModel):
        size: int = 1

    class P:
        @staticmethod
        @hookimpl
        def register_encoders(register):
            register("loose", lambda p: p.size, params=Loose)

    host = PluginHost()
    host.add_plugin(P, "loose")
    assert host.registry.create("encoder", {"type": "loose", "size": 3}) == 3
    with pytest.raises(ComponentError, match="sizee: unknown parameter"):
        host.registry.create("encoder", {"type": "loose", "sizee": 3}, where="x")
    with pytest.raises(ComponentError, match="size: .*integer"):
        host.registry.create("encoder", {"type": "loose", "size": "big"}, where="x")
