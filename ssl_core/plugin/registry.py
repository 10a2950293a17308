"""Named components of each kind, remembering which plugin registered them.

A component is registered as its class (`factory`), whose `__init__` takes the
validated params model.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ssl_core.errors import ComponentError
from ssl_core.plugin.hookspecs import KIND_HOOKS


class Params(BaseModel):
    """Base for component parameter models: unknown keys are errors, not ignored."""

    model_config = ConfigDict(extra="forbid")


class NoParams(Params):
    """For components that take no parameters."""


@dataclass(frozen=True)
class ComponentSpec:
    kind: str
    name: str
    cls: Callable[..., Any]  # the component class; called with the params model
    params: type[BaseModel]
    summary: str
    plugin: str
    plugin_version: str | None = None


def _forbid_extra(model: type[BaseModel]) -> type[BaseModel]:
    """Make sure a plugin's params model rejects unknown keys even if its author forgot."""
    if model.model_config.get("extra") == "forbid":
        return model
    config = {**model.model_config, "extra": "forbid"}
    return type(model.__name__, (model,), {"model_config": config, "__module__": model.__module__})


Describe = Callable[[tuple[str, ...]], str]


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(path)


def format_validation_error(err: ValidationError, where: str, describe: Describe = _dotted) -> str:
    """One line per problem, each naming its path under `where` (and, via `describe`, its line)."""
    lines = []
    base = tuple(where.split(".")) if where else ()
    for e in err.errors():
        path = describe((*base, *(str(p) for p in e["loc"])))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown parameter"
        elif e["type"] == "missing":
            msg = "required parameter is missing"
        if "input" in e and e["type"] not in ("missing", "extra_forbidden"):
            msg += f" (got {e['input']!r})"
        lines.append(f"{path}: {msg}")
    return "\n  ".join(lines)


@dataclass
class Registry:
    """All components, by kind then name. Conflicting names are kept and fail on use."""

    specs: dict[str, dict[str, ComponentSpec]] = field(
        default_factory=lambda: {k: {} for k in KIND_HOOKS}
    )
    conflicts: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def add(self, spec: ComponentSpec) -> None:
        if spec.kind not in self.specs:
            raise ComponentError(f"unknown component kind {spec.kind!r}",
                                 f"kinds are: {', '.join(KIND_HOOKS)}")
        existing = self.specs[spec.kind].get(spec.name)
        if existing is not None:
            owners = self.conflicts.setdefault((spec.kind, spec.name), [existing.plugin])
            owners.append(spec.plugin)
            return
        self.specs[spec.kind][spec.name] = spec

    def names(self, kind: str) -> list[str]:
        return sorted(self.specs[kind])

    def get(self, kind: str, name: str, where: str = "") -> ComponentSpec:
        at = f" at {where}" if where else ""
        owners = self.conflicts.get((kind, name))
        if owners:
            raise ComponentError(
                f"{kind} {name!r}{at} is registered by more than one plugin: {' and '.join(owners)}",
                f"disable one with SSLC_DISABLE_PLUGINS={owners[-1]}",
            )
        try:
            return self.specs[kind][name]
        except KeyError:
            pass
        available = self.names(kind)
        close = difflib.get_close_matches(name, available, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        hint += (
            f"available {kind}s: {', '.join(available) or '(none loaded)'}; "
            "a third-party component is usable once its package is installed "
            "(pip install <package>); see `sslc plugins`"
        )
        raise ComponentError(f"unknown {kind} {name!r}{at}", hint)

    def validate(self, kind: str, config: Mapping[str, Any], where: str = "",
                 describe: Describe = _dotted) -> tuple[ComponentSpec, BaseModel]:
        """Check a `{type: name, **params}` mapping; returns the spec and validated params."""
        at = describe(tuple(where.split("."))) if where else kind
        if not isinstance(config, Mapping):
            raise ComponentError(
                f"{at}: expected a mapping with a 'type' key, got {type(config).__name__}",
                f"write it as {{type: <{kind} name>, ...parameters}}",
            )
        name = config.get("type")
        if not isinstance(name, str):
            raise ComponentError(
                f"{at}: missing 'type'",
                f"name the {kind}, e.g. type: {next(iter(self.names(kind)), '<name>')}",
            )
        spec = self.get(kind, name, describe(tuple(where.split("."))) if where else "")
        raw = {k: v for k, v in config.items() if k != "type"}
        try:
            params = spec.params.model_validate(raw)
        except ValidationError as err:
            raise ComponentError(
                f"bad parameters for {kind} {name!r}:\n  {format_validation_error(err, where, describe)}",
                f"parameters of {name!r}: {', '.join(spec.params.model_fields) or '(none)'}; "
                f"see `sslc plugins` and docs/components.md",
            ) from None
        return spec, params

    def create(self, kind: str, config: Mapping[str, Any], where: str = "") -> Any:
        spec, params = self.validate(kind, config, where)
        return build(spec, params)


def build(spec: ComponentSpec, params: BaseModel) -> Any:
    """Instantiate a component, checking it is what its kind promises."""
    from ssl_core.interfaces import KIND_BASES

    obj = spec.cls(params)
    base = KIND_BASES[spec.kind]
    if not isinstance(obj, base):
        raise ComponentError(
            f"plugin {spec.plugin!r}: {spec.kind} {spec.name!r} built a "
            f"{type(obj).__module__}.{type(obj).__qualname__}, not a {base.__name__}",
            f"the class registered for a {spec.kind} must subclass ssl_core.{base.__name__}; "
            "report this to the plugin's author")
    return obj


def make_spec(kind: str, plugin: str, version: str | None, name: str,
              cls: Callable[..., Any], params: type[BaseModel] | None, summary: str) -> ComponentSpec:
    if not isinstance(name, str) or not name:
        raise ComponentError(f"plugin {plugin!r} registered a {kind} with an empty or non-string name")
    if not callable(cls):
        raise ComponentError(f"plugin {plugin!r}: the class registered for {kind} {name!r} "
                             "is not callable")
    model = _forbid_extra(params) if params is not None else NoParams
    return ComponentSpec(kind, name, cls, model, summary, plugin, version)
