"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import click

from ssl_core.kit.devices import check_device
from ssl_core.kit.progress import set_quiet


def quiet_option(f: Callable[..., Any]) -> Callable[..., Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
        if value:
            set_quiet(True)
        return value

    return click.option("--quiet", "-q", is_flag=True, expose_value=False, is_eager=True,
                        callback=callback, help="No progress bars or chatter.")(f)


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
        if value:
            set_quiet(True)  # stdout carries only the JSON document
        return value

    return click.option("--json", "as_json", is_flag=True, callback=callback,
                        help="Print one JSON document on stdout.")(f)


def recipe_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a recipe value, e.g. models.moco.train.epochs=5 (repeatable).")(f)
    f = click.option("--profile", default="synthetic", show_default=True,
                     help="Recipe profile: synthetic (embedded world) or paper (real datasets).")(f)
    return click.argument("recipe", type=click.Path(dir_okay=False, path_type=str))(f)


def device_option(f: Callable[..., Any]) -> Callable[..., Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: str) -> str:
        return check_device(value)

    return click.option("--device", default="auto", show_default=True, callback=callback,
                        help="auto, cpu, cuda, cuda:N or mps.")(f)


def _parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        seeds = [int(p) for p in parts if p]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of integers, e.g. 0,1,2",
                                 param_hint="--seeds") from None
    if not seeds:
        raise click.BadParameter("give at least one seed, e.g. --seeds 0,1,2", param_hint="--seeds")
    if len(set(seeds)) != len(seeds):
        raise click.BadParameter(f"{text!r} repeats a seed", param_hint="--seeds")
    return seeds


def seeds_option(f: Callable[..., Any]) -> Callable[..., Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
        return _parse_seeds(value)

    return click.option("--seeds", callback=callback, metavar="N,N,...",
                        help="Train and probe each trained model once per seed, e.g. 0,1,2 "
                             "(overrides the recipe's `seeds`).")(f)


def parse_options(items: Sequence[str], option: str) -> dict[str, Any]:
    """KEY=VALUE pairs, each VALUE read as YAML (so 0.5, true and [1, 2] are typed)."""
    from ssl_core.recipe.yamlio import parse_assignment

    out: dict[str, Any] = {}
    for item in items:
        parsed = parse_assignment(item)
        if parsed is None:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE (e.g. n_jobs=4)", param_hint=option)
        out[parsed[0]] = parsed[1]
    return out
