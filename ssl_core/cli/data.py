"""`sslc data`: make or check datasets."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ssl_core.cli.options import json_option, quiet_option
from ssl_core.plugins import get_registry
from ssl_core.progress import is_quiet, progress_bar


@click.group()
def data() -> None:
    """Prepare datasets (render the synthetic world)."""


@data.command()
@click.option("--size", type=click.Choice(["tiny", "small", "full"]), default="small", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where worlds are kept (default $SSLC_CACHE_DIR or ~/.cache/sslc/synthworld).")
@click.option("--world", "world_type", default="synthworld", show_default=True,
              help="Dataset plugin that renders the world.")
@quiet_option
@json_option
def synthesize(size: str, seed: int, cache_dir: Path | None, world_type: str, as_json: bool) -> None:
    """Render the embedded synthetic world in real dataset layouts (cached)."""
    config: dict[str, object] = {"type": world_type, "size": size, "seed": seed}
    if cache_dir is not None:
        config["cache_dir"] = str(cache_dir)
    world = get_registry().create("dataset", config, where="sslc data synthesize")
    with progress_bar() as progress:
        world.prepare(progress=None if is_quiet() else progress)
    if as_json:
        click.echo(json.dumps({"root": str(world.root), "size": size, "seed": seed}))
    else:
        click.echo(str(world.root))
