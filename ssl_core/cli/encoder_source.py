"""What `sslc probe` and `sslc evaluate` share: reading `--checkpoint PATH|random:ARCH` (any
layout), its options, and the chatter around them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import click

from ssl_core.interfaces import Encoder
from ssl_core.kit.progress import say
from ssl_core.plugin.registry import Registry


def parse_prefix_map(items: Sequence[str]) -> dict[str, str] | None:
    """OLD=NEW pairs as raw strings (not `parse_assignment`'s YAML values: NEW is often empty)."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise click.BadParameter(f"{item!r} is not OLD=NEW (e.g. module.encoder_q.=)",
                                     param_hint="--prefix-map")
        old, new = item.split("=", 1)
        out[old] = new
    return out or None


def report_load(report: Any) -> None:
    """The checkpoint loader's report (what was read, ignored, missing), on stderr."""
    lines = report.lines()
    say(f"[dim]{lines[0]}[/dim]")
    for line in lines[1:]:
        colour = "dim" if line.startswith("ignored") else "yellow"
        say(f"[{colour}]{line}[/{colour}]")


def check_format(fmt: str, registry: Registry) -> None:
    from ssl_core.plugin.registry import checkpoint_formats

    if fmt not in checkpoint_formats(registry):
        raise click.BadParameter(f"{fmt!r} is not a checkpoint format; choose from "
                                 f"{', '.join(checkpoint_formats(registry))}", param_hint="--format")


def load_source(checkpoint: str, registry: Registry, *, fmt: str = "auto", arch: str | None = None,
                prefix_map: dict[str, str] | None = None, strict: bool = True,
                checkpoint_key: str | None = None) -> tuple[Encoder, dict[str, Any]]:
    """The encoder of `--checkpoint` (any layout sslc reads, or random:ARCH) and a record of
    where it came from, with its weights' identity (`encoder_id`). `checkpoint_key` picks
    one model of a file holding several (DINO's student)."""
    from ssl_core.measure.probing import encoder_identity
    from ssl_core.models.checkpoints import checkpoint_digest, checkpoint_file, load_encoder
    from ssl_core.models.source import RANDOM_PREFIX, random_encoder

    if checkpoint.startswith(RANDOM_PREFIX):
        encoder, source = random_encoder(checkpoint, registry)
    else:
        check_format(fmt, registry)
        path = checkpoint_file(checkpoint)
        encoder, report = load_encoder(path, format=fmt, arch=arch, prefix_map=prefix_map,
                                       strict=strict, registry=registry,
                                       checkpoint_key=checkpoint_key)
        report_load(report)
        source = {"checkpoint": str(path), "sha256": checkpoint_digest(path),
                  "format": report.format, "arch": report.arch, "load_report": report.as_dict()}
    source["encoder_id"] = encoder_identity(encoder)
    return encoder, source


def checkpoint_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--format, --arch, --checkpoint-key, --prefix-map, --strict: how to read --checkpoint."""
    for option in reversed([
        click.option("--format", "fmt", default="auto", show_default=True,
                     help="Checkpoint layout: auto, plain, sslc or a registered format (moco, "
                          "torchvision, ...; see `sslc plugins`)."),
        click.option("--arch", default=None,
                     help="Encoder architecture (default: from the checkpoint), e.g. resnet50 "
                          "or timm:vit_small_patch16_224."),
        click.option("--checkpoint-key", "checkpoint_key", default=None, metavar="KEY",
                     help="Which model of a file holding several to load, e.g. student "
                          "(default: teacher for DINO, base_encoder for MoCo v3)."),
        click.option("--prefix-map", "prefix_map", multiple=True, metavar="OLD=NEW",
                     help="Rename checkpoint key prefixes before loading (repeatable)."),
        click.option("--strict/--no-strict", default=True, show_default=True,
                     help="Fail when the checkpoint lacks any trunk tensor."),
    ]):
        f = option(f)
    return f


def extraction_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--batch-size, --workers, --device, --no-cache, --allow-tf32: how features are computed."""
    from ssl_core.cli.options import device_option

    options: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
        click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True),
        click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True,
                     help="DataLoader worker processes for image decoding."),
        device_option,
        click.option("--no-cache", is_flag=True, help="Neither read nor write the feature cache."),
        click.option("--allow-tf32", is_flag=True,
                     help="Let GPU convolutions use TF32 (faster; published numbers are fp32)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f
