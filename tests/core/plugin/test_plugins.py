"""The plugin layer: entry-point loading in isolation, allow/block lists, conflicts, errors.

Every test runs a fresh PluginHost on the small fake plugin of `fake_plugin.py` (or on
distributions written to a temporary site-packages); entry-point loading is limited to
those with SSLC_LOAD_PLUGINS, so the built-in plugins are never what is tested here.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import fake_plugin
import pytest
from pydantic import BaseModel

from ssl_core import ComponentError, PluginError, hookimpl
from ssl_core.plugin.host import PluginHost, reset_host


def install_fake_distribution(site: Path, dist: str, modules: dict[str, str],
                              entry_points: dict[str, str]) -> None:
    """Write a real (if minimal) installed distribution: modules and a .dist-info with entry points."""
    for name, source in modules.items():
        (site / f"{name}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    eps = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[sslc.plugins]\n{eps}\n")


@pytest.fixture(autouse=True)
def _lenient(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests check the default (non-strict) isolation; strict mode is set where tested."""
    monkeypatch.delenv("SSLC_STRICT_PLUGINS", raising=False)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for mod in [m for m in sys.modules if m.startswith("sslcfake_")]:
        del sys.modules[mod]
    reset_host()


# A second plugin, installed as its own distribution, with its own component names.
OTHER = """
from ssl_core import hookimpl, Params, Register
from fake_plugin import TinyNet, TinyNetParams

class WideNet(TinyNet):
    pass

@hookimpl
def register_encoders(register: Register) -> None:
    register("fake-wide-net", WideNet, params=TinyNetParams, summary="a fake net")
"""


def install_fakes(site: Path) -> None:
    """`fake` (fake_plugin.py), `other` and `broken` (fails to import), each its own dist."""
    install_fake_distribution(site, "sslcfake-main", {}, {"fake": "fake_plugin"})
    install_fake_distribution(site, "sslcfake-other", {"sslcfake_other": OTHER},
                              {"other": "sslcfake_other"})
    install_fake_distribution(site, "sslcfake-broken",
                              {"sslcfake_broken": "raise ImportError('no foo')"},
                              {"broken": "sslcfake_broken"})


def fresh() -> PluginHost:
    host = PluginHost()
    assert host.add_plugin(fake_plugin, "fake"), host.failures
    return host


def test_a_plugin_registers_its_classes_through_entry_points(
        site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_fakes(site)
    monkeypatch.setenv("SSLC_LOAD_PLUGINS", "fake,other")
    host = PluginHost()
    host.load_entry_points()
    assert sorted(host.plugins) == ["fake", "other"] and not host.failures
    info = host.plugins["fake"]
    assert info.version == "1.2.3" and info.distribution == "sslcfake-main"
    assert info.components == {"dataset": ["fake-folder"], "pair-sampler": ["fake-noisy-copies"],
                               "encoder": ["fake-net"], "objective": ["fake-infonce"]}
    net = host.registry.create("encoder", {"type": "fake-net", "width": 5})
    assert isinstance(net, fake_plugin.TinyNet) and net.feature_dim == 5


def test_broken_import_is_reported_and_others_still_load(
        site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_fakes(site)
    monkeypatch.setenv("SSLC_LOAD_PLUGINS", "broken,other")
    host = PluginHost()
    host.load_entry_points()
    failure = next(f for f in host.failures if f.name == "broken")
    assert failure.stage == "import" and "no foo" in failure.error
    assert host.registry.create("encoder", {"type": "fake-wide-net", "width": 7}).feature_dim == 7
    assert host.plugins["other"].version == "1.2.3"
    # a component of the broken plugin is unknown, and the error says why
    with pytest.raises(ComponentError) as err:
        host.registry.create("encoder", {"type": "fake-net"})
    assert "plugin broken failed to import: ImportError: no foo" in (err.value.hint or "")
    assert "pip install" not in (err.value.hint or "")


def test_strict_mode_makes_a_broken_plugin_fatal(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_fakes(site)
    monkeypatch.setenv("SSLC_STRICT_PLUGINS", "1")
    monkeypatch.setenv("SSLC_LOAD_PLUGINS", "other,broken")
    with pytest.raises(PluginError, match="'broken' failed to import: ImportError: no foo"):
        PluginHost().load_entry_points()


def test_failing_registration_registers_nothing_of_that_plugin() -> None:
    class Half:
        @staticmethod
        @hookimpl
        def register_encoders(register):
            register("half-a", fake_plugin.TinyNet, params=fake_plugin.TinyNetParams)
            raise RuntimeError("boom")

    host = PluginHost()
    assert not host.add_plugin(Half, "half")
    assert "half-a" not in host.registry.names("encoder")
    assert host.failures[0].stage == "register" and "boom" in host.failures[0].error
    assert host.add_plugin(fake_plugin, "fake"), "a failed plugin must not block the next one"


def test_allow_and_block_lists(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_fakes(site)
    monkeypatch.setenv("SSLC_LOAD_PLUGINS", "other")
    host = PluginHost()
    host.load_entry_points()
    assert list(host.plugins) == ["other"] and "fake" in host.skipped
    monkeypatch.setenv("SSLC_LOAD_PLUGINS", "fake,other")
    monkeypatch.setenv("SSLC_DISABLE_PLUGINS", "fake")
    host = PluginHost()
    host.load_entry_points()
    assert list(host.plugins) == ["other"] and "fake" in host.skipped


def test_allow_list_naming_a_missing_plugin_is_reported(
        site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_fakes(site)
    monkeypatch.setenv("SSLC_LOAD_PLUGINS", "other,nonesuch")
    host = PluginHost()
    host.load_entry_points()
    assert [f.name for f in host.failures] == ["nonesuch"] and list(host.plugins) == ["other"]


def net_plugin(tag: str) -> type:
    """A plugin registering `same` (shared with the other tag) and `only-<tag>`."""
    net = type(f"Net{tag.upper()}", (fake_plugin.TinyNet,), {"tag": tag})

    class P:
        @staticmethod
        @hookimpl
        def register_encoders(register):
            register("same", net, params=fake_plugin.TinyNetParams, summary="shared name")
            register(f"only-{tag}", net, params=fake_plugin.TinyNetParams, summary="own name")

    return P


def test_duplicate_names_fail_naming_both_plugins() -> None:
    host = PluginHost()
    assert host.add_plugin(net_plugin("a"), "plugin-a")
    assert host.add_plugin(net_plugin("b"), "plugin-b")
    with pytest.raises(ComponentError) as err:
        host.registry.get("encoder", "same")
    assert "plugin-a" in str(err.value) and "plugin-b" in str(err.value)
    assert "SSLC_DISABLE_PLUGINS" in str(err.value)
    assert host.registry.create("encoder", {"type": "only-b"}).tag == "b"


def test_a_plugin_name_is_loaded_once() -> None:
    host = fresh()
    assert not host.add_plugin(net_plugin("a"), "fake")
    assert "already loaded" in host.failures[-1].error
    assert "same" not in host.registry.names("encoder")


def test_unknown_name_lists_available_close_match_and_install_hint() -> None:
    host = fresh()
    with pytest.raises(ComponentError) as err:
        host.registry.get("encoder", "fake-nett", where="models.a.encoder")
    text = str(err.value)
    assert "fake-nett" in text and "models.a.encoder" in text
    assert "did you mean 'fake-net'" in text and "pip install" in text


def test_registry_builds_components_from_validated_params(tmp_path: Path) -> None:
    host = fresh()
    ds = host.registry.create("dataset", {"type": "fake-folder", "root": str(tmp_path)})
    assert isinstance(ds, fake_plugin.FakeFolder) and ds.root == tmp_path
    with pytest.raises(ComponentError, match="root: required parameter is missing"):
        host.registry.create("dataset", {"type": "fake-folder"})
    with pytest.raises(ComponentError, match="temperature: .*greater than 0"):
        host.registry.create("objective", {"type": "fake-infonce", "temperature": 0})


def test_params_reject_unknown_keys_even_if_the_plugin_forgot() -> None:
    class Loose(BaseModel):
        width: int = 1

    class LooseNet(fake_plugin.TinyNet):
        def __init__(self, params: Loose) -> None:
            super().__init__(fake_plugin.TinyNetParams(width=params.width))

    class P:
        @staticmethod
        @hookimpl
        def register_encoders(register):
            register("loose", LooseNet, params=Loose, summary="forgot extra=forbid")

    host = PluginHost()
    assert host.add_plugin(P, "loose")
    assert host.registry.create("encoder", {"type": "loose", "width": 3}).feature_dim == 3
    with pytest.raises(ComponentError, match="widthh: unknown parameter"):
        host.registry.create("encoder", {"type": "loose", "widthh": 3}, where="x")
    with pytest.raises(ComponentError, match="width: .*integer"):
        host.registry.create("encoder", {"type": "loose", "width": "big"}, where="x")
