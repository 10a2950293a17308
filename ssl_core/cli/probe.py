"""`sslc probe`: the invariance (RIS) of any checkpoint, or of an `alldata.pth` feature dump."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from ssl_core.cli.encoder_source import (
    checkpoint_options,
    extraction_options,
    feature_cache,
    load_source,
    parse_prefix_map,
    say,
)
from ssl_core.cli.options import json_option, quiet_option
from ssl_core.errors import DataError
from ssl_core.kit.progress import results_console
from ssl_core.measure.features import rows_metadata
from ssl_core.measure.probing import measure
from ssl_core.plugin.host import get_registry
from ssl_core.plugin.registry import Registry


def _parse_data(items: Sequence[str], registry: Registry) -> tuple[str | None, dict[str, str]]:
    """`--data ROOT` (every dataset) and/or `--data TYPE=ROOT` (one dataset type)."""
    default: str | None = None
    by_type: dict[str, str] = {}
    names = set(registry.names("dataset"))
    for item in items:
        name, sep, root = item.partition("=")
        if sep and name in names:
            by_type[name] = root
        elif default is None:
            default = item
        else:
            raise click.BadParameter(
                f"two dataset roots without a type ({default!r} and {item!r})",
                param_hint="--data (use TYPE=ROOT, e.g. --data aloi=/data/aloi)")
    return default, by_type


def _save_path(base: Path, probe: str, several: bool) -> Path:
    return base.with_name(f"{base.stem}.{probe}{base.suffix}") if several else base


def _cell(row: dict[str, Any], k: int) -> str:
    value = row.get(f"top{k}")
    if not isinstance(value, float | int):
        return "-"
    interval = (row.get("intervals") or {}).get(f"top{k}")
    if interval:
        return f"{value:.2f} [{interval['low']:.1f}, {interval['high']:.1f}]"
    return f"{value:.2f}"


def _table(rows: list[dict[str, Any]], top_k: Sequence[int], title: str) -> Table:
    table = Table(title=title)
    for col in ("probe", "invariance", "rows", "trajectories"):
        table.add_column(col, justify="left" if col in ("probe", "invariance") else "right",
                         no_wrap=col == "probe")
    for k in top_k:
        table.add_column(f"top-{k} [95% CI]", justify="right")
    for r in rows:
        traj = str(r["num_trajectories"])
        if r["num_skipped"]:
            traj += f" (+{r['num_skipped']} short)"
        table.add_row(r["probe"], r.get("invariance") or "", str(r["num_rows"]), traj,
                      *[_cell(r, k) for k in top_k])
    return table


@click.command()
@click.option("--checkpoint", metavar="PATH|random:ARCH",
              help="Checkpoint to probe (MoCo, torchvision, plain or sslc), or random:ARCH for a "
                   "randomly initialised baseline with a fixed seed.")
@click.option("--features", "features_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Score an alldata.pth feature file instead of extracting features.")
@click.option("--probe", "probes", multiple=True, metavar="NAME",
              help="Invariance probe (repeatable), e.g. aloi-viewpoint; see `sslc plugins`.")
@click.option("--data", "data", multiple=True, metavar="ROOT|TYPE=ROOT",
              help="Dataset root for the probes' datasets (TYPE=ROOT for one dataset type).")
@checkpoint_options
@click.option("--top-k", "top_k", multiple=True, type=click.IntRange(min=1), default=(10, 25),
              show_default=True, help="K of the top-K RIS (repeatable).")
@extraction_options
@click.option("--save-features", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the features as alldata.pth (+ paths, boxes); with several probes, "
                   "one file each: FILE with the probe name before the suffix.")
@click.option("--resamples", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Bootstrap resamples for each score's 95% interval (0: no intervals).")
@quiet_option
@json_option
def probe(checkpoint: str | None, features_file: Path | None, probes: tuple[str, ...],
          data: tuple[str, ...], fmt: str, arch: str | None, prefix_map: tuple[str, ...],
          strict: bool, top_k: tuple[int, ...], batch_size: int, workers: int, device: str,
          save_features: Path | None, no_cache: bool, allow_tf32: bool, resamples: int,
          as_json: bool) -> None:
    """Measure invariance (top-K RIS) of a checkpoint on invariance probes.

    \b
      sslc probe --checkpoint moco_v2_200ep_pretrain.pth.tar --probe aloi-viewpoint --data /data/aloi
      sslc probe --checkpoint random:resnet50 --probe got10k-occlusion --data /data/got10k
      sslc probe --features alldata.pth --json
    """
    top_k = tuple(dict.fromkeys(top_k))
    if (checkpoint is None) == (features_file is None):
        raise click.UsageError("give exactly one of --checkpoint and --features")
    if features_file is not None:
        if probes or data or save_features:
            raise click.UsageError("--features scores a feature file as it is: "
                                   "--probe, --data and --save-features need --checkpoint")
        result = _probe_features_file(features_file, top_k, resamples)
    else:
        if not probes:
            raise click.UsageError("--checkpoint needs at least one --probe NAME")
        if not data:
            raise click.UsageError("--checkpoint needs --data ROOT (the probes' dataset root)")
        result = _probe_checkpoint(
            checkpoint or "", probes, data, fmt=fmt, arch=arch,
            prefix_map=parse_prefix_map(prefix_map), strict=strict, top_k=top_k,
            batch_size=batch_size, workers=workers, device=None if device == "auto" else device,
            save_features=save_features, use_cache=not no_cache, allow_tf32=allow_tf32,
            resamples=resamples)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        title = f"invariance of {result['source'].get('checkpoint') or result['source'].get('features')}"
        results_console().print(_table(result["probes"], top_k, title))  # stdout: the result


def _probe_features_file(path: Path, top_k: Sequence[int], resamples: int) -> dict[str, Any]:
    from ssl_core.measure.alldata import load_alldata
    from ssl_core.measure.ris import representation_invariance_score

    data = load_alldata(path)
    ris = representation_invariance_score(data.feat, data.instance, data.classes,
                                          top_k=tuple(top_k), resamples=resamples)
    row = {"probe": path.stem, "invariance": "", "features_file": str(path), **ris.as_dict()}
    return {"source": {"features": str(path)}, "top_k": list(top_k), "probes": [row]}


def _probe_checkpoint(checkpoint: str, probes: Sequence[str], data: Sequence[str], *, fmt: str,
                      arch: str | None, prefix_map: dict[str, str] | None, strict: bool,
                      top_k: Sequence[int], batch_size: int, workers: int, device: str | None,
                      save_features: Path | None, use_cache: bool, allow_tf32: bool,
                      resamples: int) -> dict[str, Any]:
    registry = get_registry()
    default_root, roots = _parse_data(data, registry)
    # build every probe first, so a typo in the last --probe fails before any work
    probe_objs = [registry.create("invariance-probe", {"type": name}, where="--probe")
                  for name in probes]
    for name, p in zip(probes, probe_objs, strict=True):
        if p.dataset_type not in roots and default_root is None:
            raise DataError(f"probe {name!r} reads dataset {p.dataset_type!r}, but no root was given",
                            f"add --data ROOT or --data {p.dataset_type}=ROOT")

    encoder, source = load_source(checkpoint, registry, fmt=fmt, arch=arch,
                                  prefix_map=prefix_map, strict=strict)
    encoder_id = source["encoder_id"]
    cache = feature_cache(use_cache)
    rows: list[dict[str, Any]] = []
    for name, p in zip(probes, probe_objs, strict=True):
        root = roots.get(p.dataset_type, default_root)
        dataset = registry.create("dataset", {"type": p.dataset_type, "root": root}, where="--data")
        dataset.prepare()
        probe_set = p.build(dataset)
        measured, feat = measure(encoder, p, probe_set, top_k=top_k, cache=cache,
                                 encoder_id=encoder_id, batch_size=batch_size,
                                 num_workers=workers, device=device, allow_tf32=allow_tf32,
                                 resamples=resamples, description=f"features {name}")
        row: dict[str, Any] = {"probe": name, "dataset": p.dataset_type, "data_root": str(root),
                               **measured}
        if save_features is not None:
            from ssl_core.measure.alldata import save_alldata

            out = _save_path(save_features, name, len(probes) > 1)
            paths, boxes = rows_metadata(probe_set)
            save_alldata(out, feat, probe_set.trajectories(), probe_set.labels(), paths=paths,
                         boxes=boxes)
            row["features_file"] = str(out)
            say(f"[dim]features of {name} saved to {out}[/dim]")
        rows.append(row)
    return {"source": source, "top_k": list(top_k), "probes": rows}
