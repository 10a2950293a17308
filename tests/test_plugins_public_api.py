"""Built-in plugins use only the public API (`from ssl_core import ...`), as a third-party
package would: what they need from the core is exported there, or it is core business."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def _private_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ssl_core."):
            found.append(f"{path.name}:{node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Import):
            found += [f"{path.name}:{node.lineno}: import {a.name}" for a in node.names
                      if a.name.startswith("ssl_core.")]
    return found


@pytest.mark.parametrize("path", sorted(PLUGINS.rglob("*.py")),
                         ids=lambda p: str(p.relative_to(PLUGINS)))
def test_plugin_imports_only_the_public_api(path: Path) -> None:
    assert _private_imports(path) == []


def test_the_public_api_is_importable() -> None:
    import ssl_core

    assert set(ssl_core.__all__) == {*ssl_core._EXPORTS, "__version__"}
    for name in ssl_core.__all__:
        assert getattr(ssl_core, name) is not None
