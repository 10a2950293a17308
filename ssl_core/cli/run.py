"""`sslc run`, `sslc validate` and `sslc schema`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ssl_core.atomic import write_text
from ssl_core.cli.options import json_option, quiet_option, recipe_options
from ssl_core.plugins import get_registry
from ssl_core.progress import console
from ssl_core.recipe import load_recipe, recipe_json_schema
from ssl_core.runner import STAGES, Runner


@click.command()
@recipe_options
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where results go (default runs/<recipe name>[-<profile>]).")
@click.option("--force", is_flag=True, help="Redo stages even if their inputs did not change.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--stages", default=",".join(STAGES), show_default=True,
              help="Comma-separated subset of: " + ", ".join(STAGES))
@quiet_option
@json_option
def run(recipe: str, profile: str, overrides: tuple[str, ...], run_dir: Path | None, force: bool,
        device: str, stages: str, as_json: bool) -> None:
    """Run a recipe: train -> probe -> evaluate -> report."""
    chosen = [s.strip() for s in stages.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in STAGES]
    if unknown:
        raise click.BadParameter(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}",
                                 param_hint="--stages")
    registry = get_registry()
    loaded = load_recipe(recipe, profile=profile, overrides=overrides, registry=registry)
    r = loaded.recipe
    if run_dir is None:
        suffix = "" if profile == "synthetic" else f"-{profile}"
        run_dir = Path("runs") / f"{r.name}{suffix}"
    runner = Runner(loaded, registry, run_dir=run_dir, device=device, force=force)
    report = runner.run(chosen)
    if as_json:
        click.echo(json.dumps(report["json"], indent=2))
    else:
        console.print(report["table"])
        console.print(f"results in {run_dir}/ (report.md, report.json)")


@click.command()
@recipe_options
@json_option
def validate(recipe: str, profile: str, overrides: tuple[str, ...], as_json: bool) -> None:
    """Check a recipe (structure and every component's parameters) without running it."""
    loaded = load_recipe(recipe, profile=profile, overrides=overrides)
    r = loaded.recipe
    summary = {"recipe": recipe, "name": r.name, "profile": profile, "valid": True,
               "models": list(r.models), "probes": list(r.probes), "evaluations": list(r.evaluations)}
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(f"{recipe}: valid ({len(r.models)} models, {len(r.probes)} probes, "
                   f"{len(r.evaluations)} evaluations; profile {profile})")


@click.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the schema to this file instead of stdout.")
def schema(output: Path | None) -> None:
    """Print the JSON Schema of the recipe format (with the loaded plugins' components)."""
    text = json.dumps(recipe_json_schema(get_registry()), indent=2)
    if output is None:
        click.echo(text)
    else:
        write_text(output, text + "\n")
