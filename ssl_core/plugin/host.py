"""Loading plugins from the `sslc.plugins` entry-point group, each in isolation.

A plugin that fails to import or register is recorded and reported; the rest keep
working. Environment variables:

- ``SSLC_STRICT_PLUGINS=1``: any plugin failure is fatal.
- ``SSLC_LOAD_PLUGINS=a,b``: load only these plugins (entry-point names).
- ``SSLC_DISABLE_PLUGINS=a,b``: never load these.
"""

from __future__ import annotations

import difflib
import os
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

import pluggy

from ssl_core.errors import PluginError, SslcError
from ssl_core.plugin import hookspecs
from ssl_core.plugin.registry import ComponentSpec, Registry, building_registry, make_spec

ENTRY_POINT_GROUP = "sslc.plugins"


@dataclass
class PluginInfo:
    name: str
    module: str
    version: str | None
    distribution: str | None
    components: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class PluginFailure:
    name: str
    stage: str  # "import" or "register"
    error: str
    detail: str


def _env_list(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def strict() -> bool:
    return os.environ.get("SSLC_STRICT_PLUGINS", "").strip().lower() in ("1", "true", "yes")


class PluginHost:
    """Owns the pluggy manager and the registry built from it."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("sslc")
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.plugins: dict[str, PluginInfo] = {}
        self.failures: list[PluginFailure] = []
        self.skipped: list[str] = []

    # -- loading -------------------------------------------------------------------
    def load_entry_points(self) -> None:
        allow = _env_list("SSLC_LOAD_PLUGINS")
        block = _env_list("SSLC_DISABLE_PLUGINS") or set()
        eps = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
        loaded: list[tuple[str, Any, str | None, str | None]] = []
        for ep in eps:
            if (allow is not None and ep.name not in allow) or ep.name in block:
                self.skipped.append(ep.name)
                continue
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin must not take the others down
                self._fail(ep.name, "import", f"{type(exc).__name__}: {exc}", traceback.format_exc())
                continue
            dist = getattr(ep, "dist", None)
            loaded.append((ep.name, module, getattr(dist, "version", None),
                           getattr(dist, "name", None)))
        self._add(loaded)
        if allow:
            missing = allow - {ep.name for ep in eps}
            for name in sorted(missing):
                self._fail(name, "import", f"SSLC_LOAD_PLUGINS names {name!r}, but no installed "
                           f"package provides an {ENTRY_POINT_GROUP!r} entry point of that name", "")

    def add_plugin(self, module: ModuleType | Any, name: str, version: str | None = None,
                   distribution: str | None = None) -> bool:
        """Register one plugin object; all of its components or none of them."""
        return name in self._add([(name, module, version, distribution)])

    def _unknown_hooks(self) -> str | None:
        """A hook implementation no spec knows (a misspelled hook would be silently ignored):
        pluggy's `check_pending`, worded with the names sslc has."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            bad = str(exc).split("'")[1] if "'" in str(exc) else str(exc)
            close = difflib.get_close_matches(bad, hookspecs.KIND_HOOKS.values(), n=1)
            return (f"{bad!r} is not an sslc hook" + (f"; did you mean {close[0]!r}?" if close else "")
                    + f" (the hooks: {', '.join(hookspecs.KIND_HOOKS.values())})")
        return None

    def _add(self, plugins: list[tuple[str, Any, str | None, str | None]]) -> set[str]:
        """Register plugins with pluggy, then collect their components hook by hook.

        Each hook is called through pluggy once per plugin (in pluggy's order, so
        tryfirst/trylast are honoured, with every plugin's wrappers around it): a plugin
        whose hook raises loses all of its components and is reported; the others keep
        theirs. Returns the names of the plugins added.
        """
        meta: dict[str, tuple[Any, str | None, str | None]] = {}
        for name, module, version, distribution in plugins:
            if name in self.plugins or self.pm.get_plugin(name) is not None:
                where = self.plugins[name].module if name in self.plugins else "another object"
                self._fail(name, "register", f"a plugin named {name!r} is already loaded "
                           f"(from {where})", "")
                continue
            try:
                self.pm.register(module, name=name)
            except Exception as exc:
                self._fail(name, "register", f"{type(exc).__name__}: {exc}", traceback.format_exc())
                continue
            unknown = self._unknown_hooks()
            if unknown:
                self.pm.unregister(name=name)
                self._fail(name, "register", unknown, "")
                continue
            meta[name] = (module, version, distribution)
        pending: dict[str, list[ComponentSpec]] = {name: [] for name in meta}
        failed: set[str] = set()
        for kind, hook_name in hookspecs.KIND_HOOKS.items():
            hook = getattr(self.pm.hook, hook_name)
            impls = hook.get_hookimpls()  # pluggy calls them last to first
            wrappers = {i.plugin_name for i in impls if i.hookwrapper or i.wrapper}
            everyone = {i.plugin_name for i in impls}
            for impl in reversed(impls):
                name = impl.plugin_name
                if name not in meta or name in failed or impl.hookwrapper or impl.wrapper:
                    continue
                others = [self.pm.get_plugin(n) for n in everyone - wrappers - {name}]
                caller = self.pm.subset_hook_caller(hook_name, others)
                version = meta[name][1]

                def register(reg_name: str, cls: Any, params: Any = None, summary: str = "",
                             _kind: str = kind, _name: str = name, _v: str | None = version) -> None:
                    pending[_name].append(make_spec(_kind, _name, _v, reg_name, cls, params, summary))

                try:
                    caller(register=register)
                except Exception as exc:
                    failed.add(name)
                    message = exc.message if isinstance(exc, SslcError) else f"{type(exc).__name__}: {exc}"
                    self._fail(name, "register", message, traceback.format_exc())
        added: set[str] = set()
        for name, (module, version, distribution) in meta.items():
            if name in failed:
                self.pm.unregister(name=name)
                continue
            info = PluginInfo(name, getattr(module, "__name__", repr(module)), version, distribution)
            for spec in pending[name]:
                info.components.setdefault(spec.kind, []).append(spec.name)
            self.plugins[name] = info
            added.add(name)
        # components enter the registry in pluggy's call order, kind by kind
        order = {name: i for i, name in enumerate(meta)}
        for kind, hook_name in hookspecs.KIND_HOOKS.items():
            impls = getattr(self.pm.hook, hook_name).get_hookimpls()
            rank = {i.plugin_name: n for n, i in enumerate(reversed(impls))}
            for name in sorted(added, key=lambda n: (rank.get(n, len(rank)), order[n])):
                for spec in pending[name]:
                    if spec.kind == kind:
                        self.registry.add(spec)
        return added

    def _fail(self, name: str, stage: str, error: str, detail: str) -> None:
        failure = PluginFailure(name, stage, error, detail)
        self.failures.append(failure)
        self.registry.load_failures.append(f"plugin {name} failed to {stage}: {error}")
        if strict():
            raise PluginError(
                f"plugin {name!r} failed to {stage}: {error}",
                "fix or uninstall the plugin, or unset SSLC_STRICT_PLUGINS to continue without it",
            )

    def conflicts(self) -> dict[tuple[str, str], list[str]]:
        return self.registry.conflicts


_HOST: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide host, loaded from entry points on first use."""
    global _HOST
    if _HOST is None:
        host = PluginHost()
        host.load_entry_points()
        _HOST = host
    return _HOST


def reset_host() -> None:
    """Forget the loaded plugins (tests, or after changing SSLC_* variables)."""
    global _HOST
    _HOST = None


def get_registry() -> Registry:
    return get_host().registry


def create_component(kind: str, config: Mapping[str, Any], where: str = "") -> Any:
    """A component of another kind, by name, for a component that composes one (a pair
    sampler's `views`). Built by the registry that is building the caller, so the same
    plugins answer (else by the process-wide one); `where` names the config in errors."""
    registry = building_registry() or get_registry()
    return registry.create(kind, config, where)
