#!/usr/bin/env python3
"""Reads every import in the tree and checks the architecture's rules:

1. the core's packages import only downwards (LAYERS, bottom first): a module may import
   from its own package or a lower one, never a higher one;
2. the core has no import cycles between modules, and never imports its own facade
   (`from ssl_core import X` inside ssl_core: that is the plugins' door, not the core's);
3. a built-in plugin imports only `ssl_core`'s top level and its own modules, never another
   plugin; the example packages import only `ssl_core`'s top level (tests: `ssl_core.testing`).

Imports inside functions count too: a late import is still a dependency. Prints each
breach and exits 1, or prints a summary and exits 0.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the core's floors, bottom first; modules directly in ssl_core/ name their own floor
LAYERS = ["errors", "interfaces", "kit", "plugin", "recipe", "results", "models", "measure",
          "report", "run", "testing", "cli"]
PUBLIC_FOR_TESTS = {"ssl_core", "ssl_core.testing"}


def _modules(package_dir: Path, package: str) -> dict[str, Path]:
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join((package, *parts))] = path
    return out


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported module) for every import in the file, relative ones resolved; for
    `from a import b`, both `a.b` (in case it is a module) and `a`."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                stem = base[: len(base) - node.level + 1]
                target = ".".join([*stem, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found += [(node.lineno, f"{target}.{a.name}") for a in node.names]
            if not (target == "ssl_core" and [a.name for a in node.names] == ["__version__"]):
                found.append((node.lineno, target))  # the facade's own constant is no import
    return found


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else -1


def check_core(core: dict[str, Path]) -> list[str]:
    breaches = []
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in core.items():
        if module == "ssl_core":
            continue  # the facade: it re-exports from every floor, lazily
        mine = _layer(module)
        if mine < 0:
            breaches.append(f"{path}: ssl_core.{module.split('.')[1]} is not in LAYERS of "
                            f"{Path(__file__).name}: give it a floor")
            continue
        for line, target in imports_of(path, module):
            if target == "ssl_core":
                breaches.append(f"{path}:{line}: imports the ssl_core facade; import the "
                                "defining module instead")
                continue
            if target not in core or target == module:
                continue
            graph[module].add(target)
            theirs = _layer(target)
            if theirs > mine:
                breaches.append(f"{path}:{line}: {module} (floor {LAYERS[mine]}) imports "
                                f"{target} (floor {LAYERS[theirs]}), which is above it")
    breaches += [f"import cycle: {' -> '.join(c)}" for c in _cycles(graph)]
    return breaches


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp) + [sorted(comp)[0]])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _plugin_of(module: str) -> str:
    """`sslc_plugins.region_tracker.views` -> `sslc_plugins.region_tracker`."""
    return ".".join(module.split(".")[:2])


def check_plugins(plugins: dict[str, Path], core: dict[str, Path]) -> list[str]:
    breaches = []
    for module, path in plugins.items():
        if module == "sslc_plugins":
            continue
        seen = set()
        for line, target in imports_of(path, module):
            if target.startswith("sslc_plugins."):
                target = _plugin_of(target)
            if (line, target) in seen:
                continue
            seen.add((line, target))
            if target.startswith("ssl_core.") and target in core:
                breaches.append(f"{path}:{line}: imports {target}; a plugin imports only "
                                "`from ssl_core import ...` (export what it needs there)")
            elif target.startswith("sslc_plugins.") and _plugin_of(target) != _plugin_of(module):
                breaches.append(f"{path}:{line}: imports another plugin ({target}); what two "
                                "plugins share belongs in ssl_core's kit")
    return breaches


def check_examples(examples: Path, core: dict[str, Path]) -> list[str]:
    breaches = []
    for path in sorted(examples.rglob("*.py")):
        in_tests = "tests" in path.relative_to(examples).parts
        for line, target in imports_of(path, path.stem):
            allowed = PUBLIC_FOR_TESTS if in_tests else {"ssl_core"}
            if target in core and target not in allowed:
                breaches.append(f"{path}:{line}: imports {target}; a third-party package imports "
                                f"only {' or '.join(sorted(allowed))}")
    return breaches


def main() -> int:
    core = _modules(ROOT / "ssl_core", "ssl_core")
    plugins = _modules(ROOT / "plugins", "sslc_plugins")
    breaches = (check_core(core) + check_plugins(plugins, core)
                + check_examples(ROOT / "examples", core))
    for b in breaches:
        print(b)
    if breaches:
        print(f"{len(breaches)} breach(es) of the import rules", file=sys.stderr)
        return 1
    print(f"imports ok: {len(core)} core modules on {len(LAYERS)} floors, no cycles; "
          f"{len(plugins)} plugin modules and the examples import only ssl_core's public API")
    return 0


if __name__ == "__main__":
    sys.exit(main())
