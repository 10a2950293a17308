"""The `sslc` command line. User mistakes print one message and exit 2, never a traceback.

This module imports nothing heavy: the command group lives in `ssl_core.cli.app` and
each subcommand is imported only when it runs, so `sslc --version` and `sslc --help`
answer without importing torch, and Ctrl-C at any point of start-up is caught below.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ssl_core.errors import SslcError

INTERRUPTED = "interrupted: rerun the same command to resume from the last checkpoint"
#: what an interrupted command that keeps no checkpoint says (evaluate, probe, export, ...)
INTERRUPTED_NO_CHECKPOINT = ("interrupted: nothing half-written was kept; rerun the same command "
                             "(feature sets already extracted are read from the cache)")
_COMMAND_NO_CHECKPOINT = {"evaluate", "probe"}
_interrupted_text = {"message": INTERRUPTED}


def interrupted_message(argv: list[str] | None) -> str:
    """What Ctrl-C prints: only `sslc run` has a checkpoint to resume from."""
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    command = words[0] if words else ""
    if command == "run":
        return INTERRUPTED
    if command in _COMMAND_NO_CHECKPOINT:
        return INTERRUPTED_NO_CHECKPOINT
    return "interrupted: nothing half-written was kept; rerun the same command"
_WORKER_WRAPPED = re.compile(r"ssl_core\.errors\.\w+: (.*)", re.DOTALL)


def user_message(exc: SslcError) -> str:
    """The message of an SslcError, unwrapped if a DataLoader worker re-raised it."""
    text = str(exc)
    if "Original Traceback" in text:
        match = _WORKER_WRAPPED.search(text)
        if match:
            return match.group(1).strip()
    return text


#: seconds a Ctrl-C may take to end sslc through KeyboardInterrupt before it is ended at once
SWALLOWED_INTERRUPT_GRACE_S = 10.0
_reported = threading.Event()


def _interrupted() -> None:
    _reported.set()
    sys.stderr.write(f"\n{_interrupted_text['message']}\n")
    sys.stderr.flush()
    sys.exit(130)


def _on_sigint(signum: int, frame: Any) -> None:
    """Ctrl-C raises KeyboardInterrupt as usual, and arms a watchdog: Python drops a
    KeyboardInterrupt raised while it runs a finaliser (`__del__`, a weakref callback: the
    garbage collector runs them at any time, imports included), and a library's bare
    `except:` can swallow one. The run would then go on; the watchdog ends it instead.
    Whatever was written is safe: sslc writes files atomically."""
    watchdog = threading.Timer(SWALLOWED_INTERRUPT_GRACE_S, _exit_now)
    watchdog.daemon = True
    watchdog.start()
    raise KeyboardInterrupt


def _exit_now() -> None:
    if not _reported.is_set():
        sys.stderr.write(f"\n{_interrupted_text['message']}\n")
        sys.stderr.flush()
    os._exit(130)


def install_interrupt_handler() -> None:
    """Ctrl-C for the `sslc` process (main thread only): see `_on_sigint`."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)


def _error(message: str, code: int = 2) -> None:
    from rich.markup import escape

    from ssl_core.kit.progress import console

    console.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


#: OSErrors that are the machine's state, not a bug: reported as user errors (exit 2)
_ENVIRONMENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT,
                       errno.EFBIG}


def _run(argv: list[str] | None) -> None:
    import click

    from ssl_core.cli.app import cli
    from ssl_core.errors import SslcError

    try:
        cli.main(args=argv, prog_name="sslc", standalone_mode=False)
    except SslcError as exc:
        _error(user_message(exc), exc.exit_code)
    except OSError as exc:
        if exc.errno not in _ENVIRONMENT_ERRNOS:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        _error(f"cannot write{where}: {exc.strerror or exc}\n  hint: check the permissions and free space "
               "there, or choose another place (--run-dir, --output, SSLC_CACHE_DIR)")
    except click.exceptions.Abort:  # click's name for Ctrl-C (and EOF at a prompt)
        _interrupted()
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `sslc` console script."""
    _interrupted_text["message"] = interrupted_message(argv)
    try:
        install_interrupt_handler()
        _run(argv)
    except KeyboardInterrupt:
        _interrupted()
    sys.exit(0)


def __getattr__(name: str) -> Any:
    if name == "cli":  # the click group, for callers that embed it
        from ssl_core.cli.app import cli

        return cli
    raise AttributeError(f"module 'ssl_core.cli' has no attribute {name!r}")
