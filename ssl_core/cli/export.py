"""`sslc export`: a trained encoder in another tool's checkpoint layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ssl_core.cli.options import json_option, quiet_option
from ssl_core.errors import CheckpointError
from ssl_core.kit.progress import console, say


@click.command()
@click.argument("source", type=click.Path(path_type=Path, exists=True))
@click.option("--format", "fmt", required=True,
              help="Layout to write: a registered checkpoint format (e.g. moco, torchvision; "
                   "see `sslc plugins`).")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="File to write (atomically).")
@click.option("--allow-unfinished", is_flag=True,
              help="Export a checkpoint of a run that has not finished training (done: false) "
                   "instead of refusing it.")
@quiet_option
@json_option
def export(source: Path, fmt: str, output: Path, allow_unfinished: bool, as_json: bool) -> None:
    """Write a trained encoder (RUN_DIR/models/NAME, or any checkpoint sslc reads) in another
    layout, e.g. the official MoCo one for detectron2 conversion scripts.

    \b
      sslc export runs/quickstart/models/moco --format moco -o moco_sslc.pth.tar
      sslc export runs/paper/models/moco --format torchvision -o resnet50.pth
    """
    from ssl_core.kit.atomic import check_output_path, torch_save
    from ssl_core.models.checkpoints import load_encoder
    from ssl_core.plugin.host import get_registry

    check_output_path(output, "--output")
    registry = get_registry()
    if fmt not in registry.names("checkpoint-format"):
        raise click.BadParameter(
            f"{fmt!r} is not a registered checkpoint format; choose from "
            f"{', '.join(registry.names('checkpoint-format')) or '(none loaded)'}",
            param_hint="--format")
    _check_finished(source, allow_unfinished)
    encoder, report = load_encoder(source, registry=registry)
    layout = registry.create("checkpoint-format", {"type": fmt}, where="--format")
    try:
        obj = layout.export(encoder.state_dict(), encoder, report.encoder_config)
    except NotImplementedError:
        raise CheckpointError(f"checkpoint format {fmt!r} can be read but not written",
                              "choose another --format") from None
    torch_save(output, obj)
    summary: dict[str, Any] = {"source": str(source), "format": fmt, "output": str(output),
                               "encoder": report.encoder_config, "tensors": report.loaded}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        say(f"wrote {output} ({fmt} layout, {report.arch}, {report.loaded} tensors)")


def _check_finished(source: Path, allow_unfinished: bool) -> None:
    """An sslc training checkpoint says whether its run finished (`done`); exporting one
    that did not would hand an interrupted run's weights on as if trained."""
    from ssl_core.models.checkpoints import checkpoint_file, read_checkpoint

    path = checkpoint_file(source)
    try:
        obj = read_checkpoint(path)
    except CheckpointError:
        return  # load_encoder says what is wrong with it
    if not isinstance(obj, dict) or "sslc_format" not in obj or obj.get("done", True):
        return
    what = (f"{path} is an unfinished training checkpoint (done: false, step "
            f"{obj.get('step', '?')}): its run was interrupted or is still training")
    if not allow_unfinished:
        raise CheckpointError(what, "finish the run (rerun `sslc run` with the same recipe to "
                                    "resume it), or pass --allow-unfinished to export it anyway")
    from rich.markup import escape

    # printed even with --quiet: the file written is not what a finished run would give
    console.print(f"[yellow]warning:[/yellow] {escape(what)}; exported anyway "
                  "(--allow-unfinished)", highlight=False, soft_wrap=True)
