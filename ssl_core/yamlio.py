"""YAML loading that remembers where each key was written (file and line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ssl_core.errors import RecipeError

Location = tuple[str, int]  # (file, 1-based line)


def _walk(node: yaml.Node, path: tuple[str, ...], file: str, lines: dict[tuple[str, ...], Location]) -> None:
    lines.setdefault(path, (file, node.start_mark.line + 1))
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, str(key.value))
            lines[child] = (file, key.start_mark.line + 1)
            _walk(value, child, file, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            _walk(value, (*path, str(i)), file, lines)


def load_yaml(path: Path) -> tuple[Any, dict[tuple[str, ...], Location]]:
    """Parse a YAML file; returns the data and a map from key path to its location."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise RecipeError(f"recipe file not found: {path}", "check the path (relative to the current directory)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"{where}: invalid YAML: {problem}",
                          "check indentation and that every 'key: value' has a space after the colon") from None
    lines: dict[tuple[str, ...], Location] = {}
    if node is not None:
        _walk(node, (), str(path), lines)
    return data, lines


def parse_scalar(text: str) -> Any:
    """A `--set` value, typed the way YAML would type it (5 -> int, true -> bool, [1,2] -> list)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text
