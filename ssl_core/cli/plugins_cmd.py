"""`sslc plugins`: what is installed, what it registered, what failed to load."""

from __future__ import annotations

import json

import click
from rich.table import Table

from ssl_core.cli.options import json_option
from ssl_core.kit.progress import console, results_console
from ssl_core.plugin.host import get_host


@click.command()
@click.option("--verbose", "-v", is_flag=True, help="Show load-failure tracebacks.")
@json_option
def plugins(verbose: bool, as_json: bool) -> None:
    """List plugins, their versions and components per kind, and load failures.

    The table goes to stdout; conflicts and load failures to stderr."""
    host = get_host()
    reg = host.registry
    if as_json:
        doc = {
            "plugins": [
                {"name": p.name, "module": p.module, "version": p.version, "distribution": p.distribution,
                 "components": {kind: [{"name": n, "summary": reg.specs[kind][n].summary
                                        if reg.specs[kind].get(n) and reg.specs[kind][n].plugin == p.name else "",
                                        "params": list(reg.specs[kind][n].params.model_fields)
                                        if reg.specs[kind].get(n) else []}
                                       for n in names]
                                for kind, names in p.components.items()}}
                for p in host.plugins.values()
            ],
            "failures": [{"name": f.name, "stage": f.stage, "error": f.error} for f in host.failures],
            "conflicts": [{"kind": k, "name": n, "plugins": owners}
                          for (k, n), owners in reg.conflicts.items()],
            "skipped": host.skipped,
        }
        click.echo(json.dumps(doc, indent=2))
        return
    table = Table(title="sslc plugins")
    for col in ("plugin", "version", "kind", "components"):
        table.add_column(col)
    for p in host.plugins.values():
        first = True
        for kind, names in sorted(p.components.items()) or [("-", [])]:
            table.add_row(p.name if first else "", (p.version or "") if first else "", kind, ", ".join(names))
            first = False
    results_console().print(table)
    for (kind, name), owners in reg.conflicts.items():
        console.print(f"[yellow]conflict:[/yellow] {kind} {name!r} registered by {' and '.join(owners)}")
    for f in host.failures:
        console.print(f"[red]failed:[/red] {f.name} ({f.stage}): {f.error}", highlight=False)
        if verbose and f.detail:
            console.print(f.detail, highlight=False, markup=False)
    if host.skipped:
        console.print(f"[dim]not loaded (SSLC_LOAD_PLUGINS / SSLC_DISABLE_PLUGINS): {', '.join(host.skipped)}[/dim]")
