"""`sslc report RUN_DIR`: the report of a run directory, re-rendered from what it holds."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ssl_core.cli.options import json_option, quiet_option


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@quiet_option
@json_option
def report(run_dir: Path, as_json: bool) -> None:
    """Re-render a run's report (report.md, report.json, plots/) from its stored results.

    Nothing is recomputed: the resolved recipe and the stage results in RUN_DIR are read
    back, e.g. after changing the report code, or to look at a run still in progress.

    \b
      sslc report runs/quickstart
      sslc report runs/paper_table1-paper --json
    """
    from ssl_core.kit.progress import is_quiet, results_console
    from ssl_core.report.render import render_report
    from ssl_core.results.store import load_run_recipe

    recipe = load_run_recipe(run_dir)
    rendered = render_report(run_dir, recipe)
    if as_json:
        click.echo(json.dumps(rendered["json"], indent=2, default=str))
    elif not is_quiet():
        out = results_console()
        out.print(rendered["table"])
        plots = len(rendered["json"].get("plots", []))
        out.print(f"wrote {run_dir}/report.md, report.json and {plots} plot(s) in plots/",
                  highlight=False)
