"""Docs are part of the change: every built-in component is documented with its parameters."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssl_core.plugin.host import PluginHost

DOCS = Path(__file__).resolve().parents[1] / "docs"


def builtin_components():
    host = PluginHost()
    host.load_entry_points()
    for kind, specs in host.registry.specs.items():
        for name, spec in specs.items():
            if spec.plugin in host.plugins and host.plugins[spec.plugin].distribution == "sslc":
                yield pytest.param(kind, spec, id=f"{kind}:{name}")


@pytest.mark.parametrize(("kind", "spec"), list(builtin_components()))
def test_component_is_documented_with_its_parameters(kind, spec) -> None:
    page = DOCS / "plugins" / f"{spec.plugin}.md"
    assert page.exists(), f"{kind} {spec.name!r} (plugin {spec.plugin}) needs docs/plugins/{spec.plugin}.md"
    text = page.read_text()
    assert f"`{spec.name}`" in text, f"{page} does not name `{spec.name}`"
    for param in spec.params.model_fields:
        assert f"`{param}`" in text, f"{page} does not document parameter `{param}` of {spec.name}"
    index = (DOCS / "components.md").read_text()
    assert f"`{spec.name}`" in index, f"docs/components.md does not list `{spec.name}`"


def test_every_builtin_plugin_has_a_nox_session() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("noxfile", DOCS.parent / "noxfile.py")
    assert spec and spec.loader
    noxfile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(noxfile)
    host = PluginHost()
    host.load_entry_points()
    builtin = {n for n, p in host.plugins.items() if p.distribution == "sslc"}
    assert builtin <= set(noxfile.BUILTIN_PLUGINS), builtin - set(noxfile.BUILTIN_PLUGINS)
    untested = [name for name in builtin if not noxfile.BUILTIN_PLUGINS[name]]
    assert not untested, f"built-in plugins without tests/plugins/<module>/test_*.py: {untested}"
