"""The core never names a built-in plugin's internals: what a plugin knows, it registers.

Docstrings, comments and "e.g." examples in help texts may name them; code may not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "ssl_core"
FORBIDDEN = ("resnet", "encoder_q", "conv1.", "layer1.0", "small_input", "synthworld", "aloi",
             "got10k", "pascal")


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        text = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if "e.g." in node.value or "sslc " in node.value:
                continue  # an example in a help text
            text = node.value
        elif isinstance(node, ast.Name):
            text = node.id
        elif isinstance(node, ast.Attribute):
            text = node.attr
        elif isinstance(node, ast.alias):
            text = node.name
        if text is not None:
            lowered = text.lower()
            found += [f"{path.name}:{getattr(node, 'lineno', '?')}: {w!r} in {text!r}"
                      for w in FORBIDDEN if w in lowered]
    return found


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: p.name)
def test_core_module_names_no_plugin(path: Path) -> None:
    assert _offences(path) == []
