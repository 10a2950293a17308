"""The `sslc` command line. User mistakes print one message and exit 2, never a traceback."""

from __future__ import annotations

import re
import sys

import click
from rich.markup import escape

from ssl_core import __version__
from ssl_core.cli.data import data
from ssl_core.cli.plugins_cmd import plugins
from ssl_core.cli.run import run, schema, validate
from ssl_core.errors import SslcError
from ssl_core.progress import console

_WORKER_WRAPPED = re.compile(r"ssl_core\.errors\.\w+: (.*)", re.DOTALL)


def user_message(exc: SslcError) -> str:
    """The message of an SslcError, unwrapped if a DataLoader worker re-raised it."""
    text = str(exc)
    if "Original Traceback" in text:
        match = _WORKER_WRAPPED.search(text)
        if match:
            return match.group(1).strip()
    return text


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sslc")
def cli() -> None:
    """sslc: contrastive self-supervised learning, one command per experiment."""


cli.add_command(run)
cli.add_command(validate)
cli.add_command(schema)
cli.add_command(plugins)
cli.add_command(data)
try:
    from ssl_core.cli.probe import probe

    cli.add_command(probe)
except ImportError:  # pragma: no cover - only while the probe command is being built
    pass


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="sslc", standalone_mode=False)
    except SslcError as exc:
        console.print(f"[bold red]error:[/bold red] {escape(user_message(exc))}", highlight=False,
                      soft_wrap=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        console.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        console.print("interrupted: rerun the same command to resume from the last checkpoint")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)
    sys.exit(0)
