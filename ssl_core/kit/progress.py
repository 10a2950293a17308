"""Rich progress bars that go quiet for `--quiet`, `--json` and non-terminals in CI logs,
and the console results are printed on."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

_state = {"quiet": False}
console = Console(stderr=True)


def results_console() -> Console:
    """A console on stdout for results (tables, summaries). When stdout is not a terminal
    (piped, redirected) lines are not cut to 80 columns, so long probe names stay whole."""
    out = Console(file=sys.stdout)
    if out.is_terminal:
        return out
    return Console(file=sys.stdout, width=1000)


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = quiet


def is_quiet() -> bool:
    return _state["quiet"]


def say(text: str, *, soft_wrap: bool = False) -> None:
    """Chatter (what is going on, warnings) on stderr, silenced by `--quiet`; results go to
    `results_console()` instead."""
    if not is_quiet():
        console.print(text, highlight=False, soft_wrap=soft_wrap)


@contextmanager
def progress_bar(extra_fields: bool = True) -> Iterator[Progress]:
    """A Progress whose tasks may carry a free-text `info` field (loss, images/s)."""
    columns: list[Any] = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    if extra_fields:
        columns.append(TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=console, disable=is_quiet(), transient=False) as progress:
        yield progress


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar (none when quiet)."""
    with progress_bar() as progress:
        task = progress.add_task(description, total=total, info="")
        for item in items:
            yield item
            progress.advance(task)
