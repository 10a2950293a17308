"""`sslc run`, `sslc validate` and `sslc schema`."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

import click

from ssl_core.cli.options import (
    device_option,
    json_option,
    quiet_option,
    recipe_options,
    seeds_option,
)
from ssl_core.run.stages import STAGES


def failure_exit_code() -> int:
    """What a rank that stops because another rank reported a user error exits with."""
    from ssl_core.errors import SslcError

    return SslcError.exit_code


def _quiet_unless_speaker() -> None:
    """Under torchrun, a process other than its machine's local rank 0 ends with exit 2 and
    says nothing about an error found before the process group formed: the local rank 0
    found the same one and prints it once (torchrun then stops on the exit codes)."""
    from ssl_core.kit import distributed

    if not distributed.speaks_for_machine():
        raise SystemExit(failure_exit_code())


def _stages(text: str) -> list[str]:
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in STAGES]
    if unknown:
        raise click.BadParameter(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}",
                                 param_hint="--stages")
    return chosen


@click.command()
@recipe_options
@click.option("--run-dir", type=click.Path(path_type=Path),
              help="Where results go (default runs/<recipe name>[-<profile>]).")
@click.option("--force", is_flag=True, help="Redo stages even if their inputs did not change.")
@device_option
@click.option("--stages", default=",".join(STAGES), show_default=True,
              help="Comma-separated subset of: " + ", ".join(STAGES))
@seeds_option
@quiet_option
@json_option
def run(recipe: str, profile: str, overrides: tuple[str, ...], run_dir: Path | None, force: bool,
        device: str, stages: str, seeds: list[int] | None, as_json: bool) -> None:
    """Run a recipe: train -> probe -> evaluate -> report.

    Under torchrun (`torchrun --nproc-per-node N $(which sslc) run RECIPE`) the N processes
    train together; rank 0 alone holds the run directory's lock, writes and prints.
    """
    from ssl_core.errors import SslcError
    from ssl_core.kit import distributed
    from ssl_core.kit.devices import resolve_device
    from ssl_core.kit.paths import cache_dir
    from ssl_core.kit.preflight import ensure_writable_dir
    from ssl_core.kit.progress import results_console, set_quiet
    from ssl_core.plugin.host import get_registry
    from ssl_core.recipe.schema import check_data_roots, check_world, load_recipe
    from ssl_core.run.locking import dir_lock
    from ssl_core.run.rundir import claim_run_dir
    from ssl_core.run.runner import Runner

    try:  # every check that needs no process group, before it forms (see _quiet_unless_speaker)
        chosen = _stages(stages)
        registry = get_registry()
        loaded = load_recipe(recipe, profile=profile, overrides=overrides, seeds=seeds,
                             registry=registry)
        r = loaded.recipe
        check_world(loaded, distributed.launched_world_size())
        check_data_roots(loaded, registry, chosen)
        cache_dir()  # a cache path that is a file is an error now, not after training
        if run_dir is None:
            suffix = "" if profile == "synthetic" else f"-{profile}"
            run_dir = Path("runs") / f"{r.name}{suffix}"
        run_dir = ensure_writable_dir(run_dir, "run directory", option="--run-dir")
    except (SslcError, click.ClickException):
        _quiet_unless_speaker()
        raise
    extra = {"seeds": r.seeds} if r.seeds is not None else {}  # multi-seed: the runner's side of issue 9
    with distributed.session(resolve_device(device)) as mine:
        main = distributed.is_main()
        if not main:
            set_quiet(True)  # one progress bar and one set of messages: rank 0's
        runner = Runner(loaded, registry, run_dir=run_dir, device=str(mine), force=force, **extra)
        # Rank 0 holds the lock for the whole run and claims the directory; it tells the
        # others whether it could, so a second run into a locked directory is one message
        # from rank 0 and a quiet exit 2 on the other ranks (not a traceback from a barrier).
        with ExitStack() as lock:
            failure: SslcError | None = None
            if main:
                try:
                    lock.enter_context(dir_lock(
                        run_dir, what="run directory",
                        hint=f"wait for that run to finish or use another --run-dir; if it is gone "
                             f"(e.g. it ran on another machine), delete {run_dir / '.sslc.lock'}"))
                    claim_run_dir(run_dir, r)
                except SslcError as exc:
                    failure = exc
            failed = distributed.broadcast_object(failure is not None)
            if failure is not None:
                raise failure
            if failed:
                raise SystemExit(failure_exit_code())
            report = runner.run(chosen)
    if not main:
        return
    if as_json:
        click.echo(json.dumps(report["json"], indent=2))
    else:
        out = results_console()
        out.print(report["table"])
        out.print(f"results in {run_dir}/ (report.md, report.json)", highlight=False)


@click.command()
@recipe_options
@seeds_option
@click.option("--no-data-check", is_flag=True,
              help="Do not check that dataset roots exist (e.g. validating on a laptop for a cluster).")
@json_option
def validate(recipe: str, profile: str, overrides: tuple[str, ...], seeds: list[int] | None,
             no_data_check: bool, as_json: bool) -> None:
    """Check a recipe (structure and every component's parameters) without running it."""
    from ssl_core.plugin.host import get_registry
    from ssl_core.recipe.schema import check_data_roots, load_recipe

    registry = get_registry()
    loaded = load_recipe(recipe, profile=profile, overrides=overrides, seeds=seeds, registry=registry)
    if not no_data_check:
        check_data_roots(loaded, registry)
    r = loaded.recipe
    summary = {"recipe": recipe, "name": r.name, "profile": profile, "valid": True,
               "models": list(r.models), "probes": list(r.probes), "evaluations": list(r.evaluations),
               "seeds": r.seeds, "data_checked": not no_data_check,
               # what the run would do: profile, `extends`, --set and --seeds applied
               "resolved": r.model_dump(mode="json")}
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
    from ssl_core.kit.atomic import write_text
    from ssl_core.plugin.host import get_registry
    from ssl_core.recipe.schema import recipe_json_schema

    text = json.dumps(recipe_json_schema(get_registry()), indent=2)
    if output is None:
        click.echo(text)
    else:
        write_text(output, text + "\n")
