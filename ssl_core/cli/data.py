"""`sslc data`: make or check datasets.

`sslc data synthesize` renders a *world*: a dataset plugin that materialises its own data
root (it has no `root` parameter), e.g. the embedded synthetic world. Its options are
built from the world's parameter model, so a world plugin adds or changes options (sizes,
seeds, ...) without the core knowing them.
"""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any

import click
from pydantic.fields import FieldInfo

from ssl_core.cli.options import json_option, quiet_option
from ssl_core.errors import ComponentError
from ssl_core.plugin.registry import ComponentSpec, Registry
from ssl_core.run.locking import world_lock


@click.group()
def data() -> None:
    """Prepare datasets (render the synthetic world)."""


def world_types(registry: Registry) -> list[str]:
    """Dataset plugins that create their own data root: those without a `root` parameter."""
    return [name for name, spec in sorted(registry.specs["dataset"].items())
            if "root" not in spec.params.model_fields]


def _world_spec(registry: Registry, name: str | None) -> ComponentSpec:
    worlds = world_types(registry)
    if name is None:
        if len(worlds) != 1:
            raise ComponentError(
                "sslc data synthesize: " + ("no world plugin is installed" if not worlds else
                                            f"several worlds are installed ({', '.join(worlds)})"),
                "name one with --world TYPE" if worlds else
                "a world is a dataset plugin without a `root` parameter; see `sslc plugins`")
        name = worlds[0]
    spec = registry.get("dataset", name, where="--world")
    if name not in worlds:
        raise ComponentError(f"--world {name}: dataset {name!r} reads data under a `root`, it does not render one",
                             f"worlds installed: {', '.join(worlds) or '(none)'}")
    return spec


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _option(field: str, info: FieldInfo) -> click.Option:
    """A click option for one parameter: choices for a Literal, a flag pair for a bool."""
    annotation = info.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]  # X | None -> X
    value = None if info.is_required() else info.get_default(call_default_factory=True)
    default = "" if value is None else f" [default: {value}]"
    help_text = (info.description or field.replace("_", " ")) + default
    if annotation is bool:
        return click.Option([f"{_flag(field)}/--no-{field.replace('_', '-')}", field], default=None, help=help_text)
    kind: Any
    if typing.get_origin(annotation) is typing.Literal:
        kind = click.Choice([str(v) for v in typing.get_args(annotation)])
    elif annotation in (int, float):
        kind = annotation
    elif annotation is Path:
        kind = click.Path(path_type=str)
    else:
        kind = str
    return click.Option([_flag(field), field], type=kind, default=None, required=info.is_required(),
                        help=help_text)


class WorldCommand(click.Command):
    """A command whose options are the chosen world's parameters (`--world`, default: the
    only world installed), added when the command line is parsed, `--help` included."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from ssl_core.plugin.host import get_registry

        name = None
        for i, arg in enumerate(args):
            if arg == "--world" and i + 1 < len(args):
                name = args[i + 1]
            elif arg.startswith("--world="):
                name = arg.partition("=")[2]
        if "_base_params" not in self.__dict__:
            self._base_params = list(self.params)
        spec = _world_spec(get_registry(), name)
        taken = {n for p in self._base_params for n in (p.name, *getattr(p, "opts", ()))}
        extra = [_option(f, info) for f, info in spec.params.model_fields.items()
                 if f not in taken and _flag(f) not in taken]
        self.params = [*self._base_params, *extra]
        ctx.meta["sslc.world"] = spec.name
        return super().parse_args(ctx, args)


@data.command(cls=WorldCommand)
@click.option("--world", "world_type", metavar="TYPE",
              help="World plugin to render (default: the only one installed; see `sslc plugins`).")
@quiet_option
@json_option
def synthesize(world_type: str | None, as_json: bool, **params: Any) -> None:
    """Render a world (e.g. the embedded synthetic world) in real dataset layouts (cached)."""
    from ssl_core.kit.progress import is_quiet, progress_bar
    from ssl_core.plugin.host import get_registry
    from ssl_core.plugin.registry import build

    name = click.get_current_context().meta["sslc.world"]
    config: dict[str, Any] = {"type": name, **{k: v for k, v in params.items() if v is not None}}
    spec, validated = get_registry().validate("dataset", config, where="sslc data synthesize")
    world = build(spec, validated)
    with world_lock(Path(world.root)), progress_bar() as progress:
        world.prepare(progress=None if is_quiet() else progress)
    if as_json:
        click.echo(json.dumps({"root": str(world.root), "world": name, **validated.model_dump(mode="json")}))
    else:
        click.echo(str(world.root))
