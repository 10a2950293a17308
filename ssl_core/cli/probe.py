"""`sslc probe`: the invariance (RIS) of any checkpoint, or of an `alldata.pth` feature dump."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from ssl_core.cli.encoder_source import (
    checkpoint_options,
    extraction_options,
    load_source,
    parse_prefix_map,
    say,
)
from ssl_core.cli.options import json_option, parse_options, quiet_option
from ssl_core.errors import DataError, SslcError
from ssl_core.interfaces import InvarianceProbe, ProbeSet
from ssl_core.kit.progress import results_console
from ssl_core.measure.features import rows_metadata, shared_feature_cache
from ssl_core.measure.probing import measure
from ssl_core.plugin.host import get_registry
from ssl_core.plugin.registry import Registry
from ssl_core.report.format import Style


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
    from ssl_core.measure.estimates import estimate, top_key
    from ssl_core.report.format import interval_text

    return interval_text(estimate(row, top_key(k)), "bracket")


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
@click.option("--checkpoint", "checkpoints", multiple=True, metavar="PATH|random:ARCH",
              help="Checkpoint to probe (any layout sslc reads, RUN_DIR/models/NAME, or "
                   "random:ARCH for a randomly initialised baseline with a fixed seed); repeat "
                   "it to compare several models in one table.")
@click.option("--features", "features_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Score an alldata.pth feature file instead of extracting features.")
@click.option("--probe", "probes", multiple=True, metavar="NAME",
              help="Invariance probe (repeatable), e.g. aloi-viewpoint; see `sslc plugins`.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="A probe parameter for every --probe, or PROBE.KEY=VALUE for one (repeatable; "
                   "VALUE read as YAML), e.g. --option sweep=rotation --option values=[0,90].")
@click.option("--data", "data", multiple=True, metavar="ROOT|TYPE=ROOT",
              help="Dataset root for the probes' datasets (TYPE=ROOT for one dataset type).")
@checkpoint_options
@click.option("--top-k", "top_k", multiple=True, type=click.IntRange(min=1), default=(10, 25),
              show_default=True, help="K of the top-K RIS (repeatable).")
@extraction_options
@click.option("--save-features", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the features as alldata.pth (+ paths, boxes); with several probes, "
                   "one file each: FILE with the probe name before the suffix.")
@click.option("--output", "-o", "output", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the table as CSV (.csv) or Markdown (.md), atomically.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw a models x probes heatmap of the first top-K (PNG).")
@click.option("--resamples", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Bootstrap resamples for each score's 95% interval (0: no intervals).")
@quiet_option
@json_option
def probe(checkpoints: tuple[str, ...], features_file: Path | None, probes: tuple[str, ...],
          options: tuple[str, ...], data: tuple[str, ...], fmt: str, arch: str | None,
          checkpoint_key: str | None, prefix_map: tuple[str, ...], strict: bool,
          top_k: tuple[int, ...], batch_size: int, workers: int, device: str, save_features: Path | None, output: Path | None,
          plot: Path | None, no_cache: bool, allow_tf32: bool, resamples: int,
          as_json: bool) -> None:
    """Measure invariance (top-K RIS) of a checkpoint on invariance probes.

    \b
      sslc probe --checkpoint moco_v2_200ep_pretrain.pth.tar --probe aloi-viewpoint --data /data/aloi
      sslc probe --checkpoint random:resnet50 --probe got10k-occlusion --data /data/got10k
      sslc probe --checkpoint a.pth --checkpoint b.pth --probe transform --option sweep=rotation \\
          --data /data/images -o table.csv --plot heatmap.png
      sslc probe --features alldata.pth --json
    """
    top_k = tuple(dict.fromkeys(top_k))
    from ssl_core.recipe.schema import MIN_RESAMPLES

    if 0 < resamples < MIN_RESAMPLES:
        raise SslcError(f"--resamples {resamples} cannot give a 95% interval (its 2.5% and 97.5% "
                        "percentiles need more resamples)",
                        f"use --resamples {MIN_RESAMPLES} or more (1000 is the default), or "
                        "--resamples 0 for no intervals")
    if save_features is not None:
        from ssl_core.kit.atomic import check_output_path

        check_output_path(save_features, "--save-features")  # before any work
    if bool(checkpoints) == (features_file is not None):
        raise click.UsageError("give exactly one of --checkpoint and --features (--checkpoint may be "
                               "repeated)")
    if features_file is not None:
        if probes or data or save_features or options:
            raise click.UsageError("--features scores a feature file as it is: --probe, --option, "
                                   "--data and --save-features need --checkpoint")
        result = _probe_features_file(features_file, top_k, resamples)
        results = [result]
    else:
        if not probes:
            raise click.UsageError("--checkpoint needs at least one --probe NAME")
        if not data:
            raise click.UsageError("--checkpoint needs --data ROOT (the probes' dataset root)")
        models = list(dict.fromkeys(checkpoints))  # a path given twice is probed once
        if save_features is not None and len(models) > 1:
            raise click.UsageError("--save-features writes one model's features: give one "
                                   "--checkpoint with it")
        plan = _plan(probes, parse_options(options, "--option"), data)
        renames = parse_prefix_map(prefix_map)
        results = []
        for i, checkpoint in enumerate(models, start=1):
            if len(models) > 1:
                say(f"[bold]model {i}/{len(models)}[/bold]: {checkpoint}")
            try:
                results.append(_probe_checkpoint(
                    checkpoint, plan, fmt=fmt, arch=arch, checkpoint_key=checkpoint_key,
                    prefix_map=renames, strict=strict, top_k=top_k, batch_size=batch_size, workers=workers,
                    device=None if device == "auto" else device, save_features=save_features,
                    use_cache=not no_cache, allow_tf32=allow_tf32, resamples=resamples))
            except SslcError as err:
                if len(models) == 1:
                    raise
                say(f"[red]error:[/red] {checkpoint}: {err.message}"
                    + (f"\n  hint: {err.hint}" if err.hint else ""))
                results.append({"source": {"checkpoint": checkpoint}, "error": err.message,
                                "hint": err.hint})
        result = results[0] if len(results) == 1 else {"top_k": list(top_k), "models": results}
    scored = [r for r in results if "error" not in r]
    if output is not None:
        _write_table(output, scored, top_k)
    if plot is not None:
        _write_heatmap(plot, scored, top_k[0])
    if as_json:
        click.echo(json.dumps(result, indent=2))
    elif len(results) == 1:
        title = f"invariance of {result['source'].get('checkpoint') or result['source'].get('features')}"
        results_console().print(_table(result["probes"], top_k, title))  # stdout: the result
    else:
        results_console().print(_models_table(scored, top_k))
    failed = len(results) - len(scored)
    if failed:
        raise SslcError(f"{failed} of {len(results)} checkpoints could not be probed (each named "
                        "above); the others were scored", "fix or drop the failing --checkpoint")


def _probe_features_file(path: Path, top_k: Sequence[int], resamples: int) -> dict[str, Any]:
    from ssl_core.measure.alldata import load_alldata
    from ssl_core.measure.ris import representation_invariance_score

    data = load_alldata(path)
    ris = representation_invariance_score(data.feat, data.instance, data.classes,
                                          top_k=tuple(top_k), resamples=resamples)
    row = {"probe": path.stem, "invariance": "", "features_file": str(path), **ris.as_dict()}
    return {"source": {"features": str(path)}, "top_k": list(top_k), "probes": [row]}


@dataclass
class _Planned:
    """The probes of one `sslc probe` command, built once: every model reads the same
    trajectories (and, through the feature cache, the same pixels). The trajectories are
    built when the first model that loads needs them, so a bad checkpoint is named before
    any dataset is read."""

    names: list[str]
    probes: list[InvarianceProbe]
    roots: list[str]
    _sets: dict[int, ProbeSet] = field(default_factory=dict)

    def probe_set(self, i: int) -> ProbeSet:
        if i not in self._sets:
            p = self.probes[i]
            dataset = get_registry().create("dataset", {"type": p.dataset_type,
                                                        "root": self.roots[i]}, where="--data")
            dataset.prepare()
            self._sets[i] = p.build(dataset)
        return self._sets[i]


def _plan(probes: Sequence[str], options: dict[str, Any], data: Sequence[str]) -> _Planned:
    registry = get_registry()
    default_root, roots = _parse_data(data, registry)
    scoped = {k for k in options if "." in k}
    unknown = sorted({k.split(".", 1)[0] for k in scoped} - set(probes))
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)} is not one of the --probe names "
                                 f"({', '.join(probes)})", param_hint="--option PROBE.KEY=VALUE")

    def params(name: str) -> dict[str, Any]:
        mine = {k.split(".", 1)[1]: v for k, v in options.items() if k.startswith(f"{name}.")}
        return {**{k: v for k, v in options.items() if k not in scoped}, **mine}

    # build every probe first, so a typo in the last --probe fails before any work
    objs = [registry.create("invariance-probe", {"type": name, **params(name)},
                            where="--probe" if not options else "--probe/--option")
            for name in probes]
    for name, p in zip(probes, objs, strict=True):
        if p.dataset_type not in roots and default_root is None:
            raise DataError(f"probe {name!r} reads dataset {p.dataset_type!r}, but no root was given",
                            f"add --data ROOT or --data {p.dataset_type}=ROOT")
    return _Planned(list(probes), objs, [str(roots.get(p.dataset_type, default_root)) for p in objs])


def _probe_checkpoint(checkpoint: str, plan: _Planned, *, fmt: str, arch: str | None,
                      checkpoint_key: str | None, prefix_map: dict[str, str] | None, strict: bool, top_k: Sequence[int],
                      batch_size: int, workers: int, device: str | None,
                      save_features: Path | None, use_cache: bool, allow_tf32: bool,
                      resamples: int) -> dict[str, Any]:
    registry = get_registry()
    encoder, source = load_source(checkpoint, registry, fmt=fmt, arch=arch,
                                  prefix_map=prefix_map, strict=strict,
                                  checkpoint_key=checkpoint_key)
    encoder_id = source["encoder_id"]
    cache = shared_feature_cache(use_cache)
    rows: list[dict[str, Any]] = []
    for i, (name, p, root) in enumerate(zip(plan.names, plan.probes, plan.roots, strict=True)):
        probe_set = plan.probe_set(i)
        measured, feat = measure(encoder, p, probe_set, top_k=top_k, cache=cache,
                                 encoder_id=encoder_id, batch_size=batch_size,
                                 num_workers=workers, device=device, allow_tf32=allow_tf32,
                                 resamples=resamples, description=f"features {name}")
        row: dict[str, Any] = {"probe": name, "dataset": p.dataset_type, "data_root": root,
                               **measured}
        if save_features is not None:
            from ssl_core.measure.alldata import save_alldata

            out = _save_path(save_features, name, len(plan.names) > 1)
            paths, boxes = rows_metadata(probe_set)
            save_alldata(out, feat, probe_set.trajectories(), probe_set.labels(), paths=paths,
                         boxes=boxes)
            row["features_file"] = str(out)
            say(f"[dim]features of {name} saved to {out}[/dim]")
        rows.append(row)
    return {"source": source, "top_k": list(top_k), "probes": rows}


def _model_label(result: dict[str, Any]) -> str:
    return str(result["source"].get("checkpoint") or result["source"].get("features"))


def _grid(results: Sequence[dict[str, Any]], top_k: Sequence[int], style: Style
          ) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the models x probes table: a row per probe and K, a column per model."""
    from ssl_core.measure.estimates import estimate, top_key
    from ssl_core.report.format import interval_text

    probe_names = list(dict.fromkeys(r["probe"] for res in results for r in res["probes"]))
    header = ["probe", "K", *[_model_label(res) for res in results]]
    rows = []
    for name in probe_names:
        for k in top_k:
            cells = []
            for res in results:
                row = next((r for r in res["probes"] if r["probe"] == name), None)
                cells.append(interval_text(estimate(row, top_key(k)), style))
            rows.append([name, str(k), *cells])
    return header, rows


def _models_table(results: Sequence[dict[str, Any]], top_k: Sequence[int]) -> Table:
    header, rows = _grid(results, top_k, "short")
    table = Table(title=f"invariance (top-K RIS, %) of {len(results)} models",
                  caption="± half the 95% bootstrap interval")
    for i, col in enumerate(header):
        table.add_column(col, justify="left" if i < 2 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def _write_table(path: Path, results: Sequence[dict[str, Any]], top_k: Sequence[int]) -> None:
    """The models x probes table as CSV (values and interval ends in columns of their own)
    or Markdown (values with their intervals), by the file's suffix."""
    import csv
    import io

    from ssl_core.kit.atomic import write_text
    from ssl_core.measure.estimates import estimate, top_key

    if path.suffix.lower() == ".csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["model", "probe", "k", "ris", "low", "high", "rows", "trajectories"])
        for res in results:
            for row in res["probes"]:
                for k in top_k:
                    e = estimate(row, top_key(k))
                    writer.writerow([_model_label(res), row["probe"], k,
                                     "" if e is None else e.value,
                                     "" if e is None or e.low is None else e.low,
                                     "" if e is None or e.high is None else e.high,
                                     row.get("num_rows"), row.get("num_trajectories")])
        text = buffer.getvalue()
    elif path.suffix.lower() == ".md":
        header, rows = _grid(results, top_k, "long")
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        text = "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"
    else:
        raise click.BadParameter(f"{path.name}: write .csv or .md", param_hint="--output")
    write_text(path, text)
    say(f"[dim]table written to {path}[/dim]")


def _write_heatmap(path: Path, results: Sequence[dict[str, Any]], k: int) -> None:
    from ssl_core.measure.estimates import estimate, top_key
    from ssl_core.report.plots import heatmap

    probe_names = list(dict.fromkeys(r["probe"] for res in results for r in res["probes"]))
    cells = [[estimate(next((r for r in res["probes"] if r["probe"] == p), None), top_key(k))
              for p in probe_names] for res in results]
    heatmap(path, cells, [_model_label(res) for res in results], probe_names,
            title=f"top-{k} RIS (%), ± half the 95% interval")
    say(f"[dim]heatmap written to {path}[/dim]")
