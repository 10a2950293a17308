"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ssl_core.progress import set_quiet


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
