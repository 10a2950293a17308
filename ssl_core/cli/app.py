"""The `sslc` click group. Subcommands are imported on first use (click's lazy-group
pattern): listing them in `sslc --help` reads the table below, not their modules."""

from __future__ import annotations

import importlib
from typing import Any

import click

from ssl_core import __version__

#: command name -> (module, attribute, one-line help shown by `sslc --help`);
#: tests/cli/test_app.py checks each line against the command's own docstring.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "data": ("ssl_core.cli.data", "data", "Prepare datasets (render the synthetic world)."),
    "evaluate": ("ssl_core.cli.evaluate", "evaluate",
                 "Evaluate a checkpoint downstream (VOC07 SVM, linear softmax, ...)."),
    "export": ("ssl_core.cli.export", "export",
               "Write a trained encoder (RUN_DIR/models/NAME, or any checkpoint sslc reads) in another layout."),
    "plugins": ("ssl_core.cli.plugins_cmd", "plugins",
                "List plugins, their versions and components per kind, and load failures."),
    "probe": ("ssl_core.cli.probe", "probe",
              "Measure invariance (top-K RIS) of a checkpoint on invariance probes."),
    "report": ("ssl_core.cli.report_cmd", "report",
               "Re-render a run's report (report.md, report.json, plots/) from its stored results."),
    "run": ("ssl_core.cli.run", "run", "Run a recipe: train -> probe -> evaluate -> report."),
    "schema": ("ssl_core.cli.run", "schema",
               "Print the JSON Schema of the recipe format (with the loaded plugins' components)."),
    "validate": ("ssl_core.cli.run", "validate",
                 "Check a recipe (structure and every component's parameters) without running it."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported when invoked, not when listed."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, attr, _ = self.lazy[cmd_name]
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            loaded = self.commands.get(name)
            if loaded is not None:
                if loaded.hidden:
                    continue
                rows.append((name, loaded.get_short_help_str(limit)))
            else:
                rows.append((name, self.lazy[name][2]))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sslc")
def cli() -> None:
    """sslc: contrastive self-supervised learning, one command per experiment."""
