"""Named components of each kind, remembering which plugin registered them.

A component is registered as its class (`factory`), whose `__init__` takes the
validated params model.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from pydantic.fields import FieldInfo

from ssl_core.errors import ComponentError
from ssl_core.interfaces.params import NoParams
from ssl_core.plugin.hookspecs import KIND_HOOKS

#: json-schema key marking a parameter that holds another component's config
COMPONENT_KIND = "sslc_component_kind"


def component_field(kind: str, default: Mapping[str, Any], description: str = "") -> Any:
    """A parameter holding the `{type: name, ...}` config of a component of another `kind`
    (a pair sampler's `views`). The registry validates it with the parameters that hold it,
    so a bad entry is reported at its own path (`...pair_sampler.views.size`); the holder
    builds it with `ssl_core.create_component`."""
    kept = dict(default)
    return Field(default_factory=lambda: dict(kept), description=description,
                 json_schema_extra={COMPONENT_KIND: kind})


def component_kind(info: FieldInfo) -> str | None:
    """The kind of component a parameter holds (see `component_field`), else None."""
    extra = info.json_schema_extra
    kind = extra.get(COMPONENT_KIND) if isinstance(extra, dict) else None
    return kind if isinstance(kind, str) else None


def _flow(value: Any) -> str:
    """A value as YAML flow style, for hints that show what to write."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return str(value)


#: the registry whose `create` is running: components a component composes come from it
_BUILDING: ContextVar[Registry | None] = ContextVar("sslc_building_registry", default=None)


def building_registry() -> Registry | None:
    """The registry building a component right now (None outside `Registry.create`)."""
    return _BUILDING.get()


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


def format_validation_error(err: ValidationError, where: str, describe: Describe = _dotted,
                            fields: Sequence[str] = ()) -> str:
    """One line per problem, each naming its path under `where` (and, via `describe`, its
    line); an unknown parameter close to one of `fields` gets a "did you mean"."""
    lines = []
    base = tuple(where.split(".")) if where else ()
    for e in err.errors():
        path = describe((*base, *(str(p) for p in e["loc"])))
        msg = e["msg"].removeprefix("Value error, ")  # a cross-field check's own words
        if e["type"] == "extra_forbidden":
            msg = "unknown parameter"
            close = difflib.get_close_matches(str(e["loc"][-1]), list(fields), n=1) if e["loc"] else []
            if close:
                msg += f"; did you mean {close[0]!r}?"
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
    #: plugins that failed to load ("plugin NAME failed to import: ..."): an unknown name may
    #: be theirs, and the error should say so rather than suggest installing a package
    load_failures: list[str] = field(default_factory=list)

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
        hint += f"available {kind}s: {', '.join(available) or '(none loaded)'}; "
        if self.load_failures:
            hint += ("it may belong to a plugin that failed to load: "
                     + "; ".join(self.load_failures) + " (details: `sslc plugins`)")
        else:
            hint += ("a third-party component is usable once its package is installed "
                     "(pip install <package>); see `sslc plugins`")
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
        nested = {f: k for f, info in spec.params.model_fields.items()
                  if (k := component_kind(info)) is not None}
        for fname, nested_kind in nested.items():
            self._check_moved(kind, name, spec, raw, fname, nested_kind, at)
        try:
            params = spec.params.model_validate(raw)
        except ValidationError as err:
            raise ComponentError(
                f"bad parameters for {kind} {name!r}:\n  "
                f"{format_validation_error(err, where, describe, list(spec.params.model_fields))}",
                f"parameters of {name!r}: {', '.join(spec.params.model_fields) or '(none)'}; "
                f"see `sslc plugins` and docs/components.md",
            ) from None
        for fname, nested_kind in nested.items():
            self.validate(nested_kind, getattr(params, fname), f"{where}.{fname}" if where else fname,
                          describe)
        return spec, params

    def _check_moved(self, kind: str, name: str, spec: ComponentSpec, raw: Mapping[str, Any],
                     fname: str, nested_kind: str, at: str) -> None:
        """Parameters written beside `fname` that belong to the component it holds (the old,
        flat form of a recipe): an error that shows the new form, with the recipe's values."""
        inner = raw.get(fname)
        if inner is None:
            default = spec.params.model_fields[fname].get_default(call_default_factory=True)
            inner = default if isinstance(default, Mapping) else {}
        if not isinstance(inner, Mapping) or not isinstance(inner.get("type"), str):
            return
        inner_spec = self.specs.get(nested_kind, {}).get(inner["type"])
        if inner_spec is None:
            return
        moved = [k for k in raw if k not in spec.params.model_fields
                 and k in inner_spec.params.model_fields]
        if not moved:
            return
        new = {**inner, **{k: raw[k] for k in moved}}
        were = "is a parameter" if len(moved) == 1 else "are parameters"
        raise ComponentError(
            f"{at}: {', '.join(moved)} {were} of the {nested_kind} {inner['type']!r} now, "
            f"written under `{fname}` (a {kind} {name!r} composes its {fname})",
            f"write `{fname}: {_flow(new)}` in place of "
            f"{', '.join(f'`{k}: {_flow(raw[k])}`' for k in moved)}")

    def create(self, kind: str, config: Mapping[str, Any], where: str = "") -> Any:
        spec, params = self.validate(kind, config, where)
        token = _BUILDING.set(self)
        try:
            return build(spec, params)
        finally:
            _BUILDING.reset(token)


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


#: checkpoint layouts the core reads itself (ssl_core.models.checkpoints), beside the ones
#: plugins register: `auto` tries every layout, `plain` is a bare state dict, `sslc` our own
CORE_CHECKPOINT_FORMATS: tuple[str, ...] = ("auto", "plain", "sslc")


def checkpoint_formats(registry: Registry) -> list[str]:
    """Every checkpoint layout name `--format` and a recipe's `checkpoint.format` accept."""
    return [*CORE_CHECKPOINT_FORMATS, *registry.names("checkpoint-format")]
