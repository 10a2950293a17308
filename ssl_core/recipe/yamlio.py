"""YAML loading that remembers where each key was written (file and line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ssl_core.errors import RecipeError

Location = tuple[str, int]  # (file, 1-based line)


MERGE_TAG = "tag:yaml.org,2002:merge"


def _walk(node: yaml.Node, path: tuple[str, ...], file: str, lines: dict[tuple[str, ...], Location]) -> None:
    lines.setdefault(path, (file, node.start_mark.line + 1))
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], int] = {}  # (tag, key) -> line where it was first written
        for key, value in node.value:
            line = key.start_mark.line + 1
            if isinstance(key, yaml.ScalarNode) and key.tag != MERGE_TAG:
                ident = (key.tag, key.value)
                if ident in first:
                    dotted = ".".join((*path, str(key.value)))
                    raise RecipeError(
                        f"{file}:{line}: key {dotted!r} is written twice (lines {first[ident]} and {line})",
                        "YAML would keep only the last one silently; delete the one you did not mean")
                first[ident] = line
            child = (*path, str(key.value))
            lines[child] = (file, line)
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
    lines: dict[tuple[str, ...], Location] = {}
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is not None:  # walk first: constructing rewrites `<<` merge keys in place
                _walk(node, (), str(path), lines)
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"{where}: invalid YAML: {problem}",
                          "check indentation and that every 'key: value' has a space after the colon") from None
    return data, lines


def parse_scalar(text: str) -> Any:
    """A `--set` value, typed the way YAML would type it (5 -> int, true -> bool, [1,2] -> list)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_assignment(text: str) -> tuple[str, Any] | None:
    """`KEY=VALUE` (`--set`, `--option`, ...) as (KEY, VALUE typed by `parse_scalar`), or None
    when it is not one (no `=`, or an empty key)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        return None
    return key.strip(), parse_scalar(value)
