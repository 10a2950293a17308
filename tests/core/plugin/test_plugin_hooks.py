"""Hooks are called through pluggy: tryfirst/trylast order and wrappers are honoured, and
a plugin whose hook raises loses its components while the others keep theirs."""

from __future__ import annotations

from types import ModuleType

import pytest

from ssl_core.interfaces import Dataset
from ssl_core.plugin.hookspecs import hookimpl
from ssl_core.plugin.host import PluginHost


class _Data(Dataset):
    def __init__(self, params: object) -> None:
        self.params = params

    def records(self, subset: str | None = None) -> list:
        return []


def _module(name: str, **hooks: object) -> ModuleType:
    """A plugin is any hashable namespace with hook functions: here, a fresh module."""
    module = ModuleType(f"fake_{name}")
    for hook, fn in hooks.items():
        setattr(module, hook, fn)
    return module


def _plugin(name: str, **opts: bool) -> ModuleType:
    @hookimpl(**opts)
    def register_datasets(register):
        register(f"data-{name}", _Data, summary=name)

    return _module(name, register_datasets=register_datasets)


def test_tryfirst_and_trylast_order_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSLC_STRICT_PLUGINS", raising=False)
    host = PluginHost()
    added = host._add([("late", _plugin("late", trylast=True), None, None),
                       ("plain", _plugin("plain"), None, None),
                       ("early", _plugin("early", tryfirst=True), None, None)])
    assert added == {"late", "plain", "early"}
    order = list(host.registry.specs["dataset"])
    assert order.index("data-early") < order.index("data-plain") < order.index("data-late")


def test_wrappers_run_around_each_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSLC_STRICT_PLUGINS", raising=False)
    seen: list[str] = []

    @hookimpl(wrapper=True)
    def register_datasets(register):
        seen.append("before")
        result = yield
        seen.append("after")
        return result

    host = PluginHost()
    host._add([("wrap", _module("x", register_datasets=register_datasets), None, None),
               ("a", _plugin("a"), None, None), ("b", _plugin("b"), None, None)])
    assert seen == ["before", "after", "before", "after"]
    assert {"data-a", "data-b"} <= set(host.registry.specs["dataset"])


def test_a_failing_hook_is_isolated_and_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSLC_STRICT_PLUGINS", raising=False)

    @hookimpl
    def register_datasets(register):
        register("data-half", _Data)
        raise RuntimeError("boom")

    host = PluginHost()
    host._add([("bad", _module("x", register_datasets=register_datasets), None, None),
               ("good", _plugin("good"), None, None)])
    assert "data-good" in host.registry.specs["dataset"]
    assert "data-half" not in host.registry.specs["dataset"]  # all of it or nothing
    assert [(f.name, f.stage) for f in host.failures] == [("bad", "register")]
    assert "boom" in host.failures[0].error
    assert "bad" not in host.plugins and host.pm.get_plugin("bad") is None


def test_a_class_of_the_wrong_kind_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from ssl_core.errors import ComponentError

    @hookimpl
    def register_encoders(register):
        register("not-an-encoder", _Data)

    host = PluginHost()
    host._add([("odd", _module("odd", register_encoders=register_encoders), None, None)])
    with pytest.raises(ComponentError, match="plugin 'odd'.*not an Encoder|not a Encoder"):
        host.registry.create("encoder", {"type": "not-an-encoder"})


def test_a_misspelled_hook_is_a_load_failure_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """pluggy would ignore a hook no spec knows: the plugin would load with nothing in it."""
    monkeypatch.delenv("SSLC_STRICT_PLUGINS", raising=False)

    @hookimpl
    def register_dataset(register):  # the hook is register_datasets
        register("data-typo", _Data)

    host = PluginHost()
    host._add([("typo", _module("t", register_dataset=register_dataset), None, None),
               ("good", _plugin("good"), None, None)])
    assert "data-good" in host.registry.specs["dataset"]
    assert [(f.name, f.stage) for f in host.failures] == [("typo", "register")]
    assert "'register_dataset' is not an sslc hook; did you mean 'register_datasets'?" in \
        host.failures[0].error
    assert "typo" not in host.plugins and host.pm.get_plugin("typo") is None
