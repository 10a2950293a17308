"""The run's report: the paper's table shape, with intervals, seeds and claims.

Every RIS is printed with its bootstrap interval; each model is compared with the
recipe's `report.baseline` per invariance, and the recipe's `report.claims` are judged
against those comparisons (supported / contradicted / cannot decide).

The recipe's `report` section (ssl_core.recipe.report_section)::

    report:
      title: "..."
      baseline: random-init            # the model every other model is compared with
      paper: {model: {probe: {top10: .., top25: ..}, evaluation: {metric: ..}}}
      claims:
        - claim: "aggressive crops make MoCo-v2 more occlusion-invariant"
          model: moco-v2
          baseline: random-init        # optional: defaults to report.baseline
          probe: occlusion
          k: 10                        # optional: defaults to the first probe_settings.top_k
          direction: higher            # or lower

When is a difference real? A model differs from the baseline at top-K when their
intervals do not overlap (model low above baseline high, or model high below baseline
low) and, when either has several seeds, the difference of the means is also larger than
twice the seed spread, 2 * sqrt(sd_model^2 + sd_baseline^2).

Every report opens with how the run went: the profile (and whether it ran on the synthetic
world or on real data), the device(s) and the wall time. Downstream metrics sit beside the
RIS (`paper` may give `{model: {evaluation: {metric: value}}}` too), then training (loss,
and the RIS over training that `train.probe_every` measured), each with its plot
(ssl_core.report.plots). `render_report` builds it all from a run directory's files
(ssl_core.results.store): `sslc run` and `sslc report RUN_DIR` share it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ssl_core.kit.atomic import write_json, write_text
from ssl_core.kit.progress import say
from ssl_core.measure.estimates import (
    HIGHER,
    LOWER,
    WITHIN,
    Estimate,
    compare,
    estimate,
    runs_of,
    seeds_run,
    top_key,
)
from ssl_core.recipe.report_section import Claim, ReportSettings
from ssl_core.recipe.schema import DEFAULT_PROFILE, Recipe
from ssl_core.report.format import interval_text, number
from ssl_core.results.layout import REPORT_JSON, REPORT_MARKDOWN

__all__ = ["build_report", "render_report"]

MARKS = {HIGHER: " ▲", LOWER: " ▼", WITHIN: ""}


# -- the report ----------------------------------------------------------------------------------

ProbeResults = Mapping[str, Mapping[str, Mapping[str, Any] | Sequence[Mapping[str, Any]]]]
#: evaluations[model][evaluation]: one result, or a list of per-seed results
EvalResults = Mapping[str, Mapping[str, Mapping[str, Any] | Sequence[Mapping[str, Any]]]]
#: called with the report's JSON document: writes the plots, returns (their paths relative to
#: the run directory, a note when there are none, e.g. matplotlib missing)
PlotWriter = Callable[[dict[str, Any]], tuple[list[str], str | None]]


def _results(tree: Mapping[str, Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for per_model in tree.values() for result in per_model.values()
            for r in runs_of(result) if isinstance(r, Mapping)]


def _devices(*found_in: Sequence[Mapping[str, Any]]) -> list[str]:
    """The devices recorded by the results themselves, e.g. ["cpu", "cuda:0"]."""
    return sorted({r["device"] for results in found_in for r in results
                   if isinstance(r.get("device"), str)})


def setting_label(recipe: Recipe) -> str:
    """Which profile ran, on which data: `default (synthetic world)`, `paper (real data)`."""
    name = "default" if recipe.profile == DEFAULT_PROFILE else recipe.profile
    return f"{name} ({'synthetic world' if recipe.world is not None else 'real data'})"


def duration(seconds: float | None) -> str:
    """`42.1 s`, `3 min 07 s`, `2 h 05 min`."""
    if seconds is None:
        return "unknown"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


#: the report's `run` entry, from run_info.json
RUN_KEYS = ("wall_time_s", "total_wall_time_s", "invocations", "started", "stages")


def _header(recipe: Recipe, device: str, info: Mapping[str, Any], devices: list[str],
            training: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """The report's first lines: profile, device(s), wall time (from run_info.json)."""
    devices = devices or [str(info.get("device") or device)]
    sizes = [int(t["world_size"]) for runs in training.values() for t in runs
             if isinstance(t.get("world_size"), int)]
    return {
        "profile": recipe.profile,
        "setting": setting_label(recipe),
        "device": ", ".join(devices),
        "devices": devices,
        "world_size": max(sizes or [int(info.get("world_size") or 1)]),
        # how this run went: differs between two runs that compute the very same results
        "run": {key: info.get(key) for key in RUN_KEYS},
    }


def _wall_text(h: Mapping[str, Any]) -> str:
    """`2 min 05 s (stages probe, report; started ...); 6 min 40 s over 2 runs`."""
    h = h["run"]
    if h.get("wall_time_s") is None:
        return "unknown (not recorded)"
    started = f"; started {h['started']}" if h.get("started") else ""
    text = duration(h["wall_time_s"])
    if h.get("stages"):
        text += f" (stages {', '.join(h['stages'])}{started})"
    if (h.get("invocations") or 1) > 1 and h.get("total_wall_time_s") is not None:
        text += f"; {duration(h['total_wall_time_s'])} over {h['invocations']} runs"
    return text


def _device_text(h: Mapping[str, Any]) -> str:
    text = h["device"]
    if h.get("world_size", 1) > 1:
        text += f" (trained on {h['world_size']} processes)"
    return text


def header_lines(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, text) of the header, as the markdown and the terminal print it."""
    return [("profile", doc["setting"]), ("device", _device_text(doc)), ("wall time", _wall_text(doc))]


# -- downstream: mean and spread over seeds ----------------------------------------------------


def _evaluation(result: Mapping[str, Any] | Sequence[Mapping[str, Any] | None]) -> dict[str, Any]:
    """One evaluation's metrics for a model: the mean over seeds, with the seed spread,
    interval and partial-seed count where there are any."""
    runs = runs_of(result)
    names = dict.fromkeys(k for r in runs for k in (r.get("metrics") or {}))
    out: dict[str, Any] = {"metrics": {}}
    estimates: dict[str, Estimate] = {}
    for name in names:
        e = estimate(result, name, within="metrics")
        if e is None:
            continue
        estimates[name] = e
        out["metrics"][name] = e.value
        if e.low is not None and e.high is not None:
            out.setdefault("intervals", {})[name] = {"low": e.low, "high": e.high}
        if e.seeds_run is not None and e.seeds_run > 1:
            out.setdefault("sd", {})[name] = e.sd if e.sd is not None else 0.0
            out.setdefault("per_seed", {})[name] = [v for _, v in e.per_seed]
    seeds = seeds_run(result)
    if seeds is not None and seeds > 1:
        out["seeds"] = [r.get("seed") for r in runs]
        out["seeds_run"] = seeds
    out["estimates"] = estimates  # for the tables; dropped from the JSON
    return out


# -- training: loss and RIS over training ------------------------------------------------------


def _training(training: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """Per trained model: steps, epochs, final loss (mean over seeds), images/s, device."""
    out: dict[str, Any] = {}
    for model, runs in training.items():
        losses = [float(t["final_loss"]) for t in runs if isinstance(t.get("final_loss"), int | float)]
        speeds = [float(t["images_per_s"]) for t in runs if isinstance(t.get("images_per_s"), int | float)]
        first = runs[0]
        entry: dict[str, Any] = {
            "steps": first.get("steps"), "epochs": first.get("epochs"),
            "final_loss": sum(losses) / len(losses) if losses else None,
            "images_per_s": sum(speeds) / len(speeds) if speeds else None,
            "device": first.get("device"), "world_size": first.get("world_size"),
        }
        if len(runs) > 1:
            entry["seeds"] = [t.get("seed") for t in runs]
            entry["per_seed_final_loss"] = [t.get("final_loss") for t in runs]
        out[model] = entry
    return out


def _during_training(recipe: Recipe, during: Mapping[str, Sequence[Mapping[str, Any]]],
                     top_k: list[int]) -> dict[str, Any]:
    """Per model: the probes taken while it trained, per probe a list of points in epoch
    order (mean over seeds, with intervals). A result measured under another probe
    configuration than the recipe's now is left out."""
    out: dict[str, Any] = {}
    for model, docs in during.items():
        by_probe: dict[str, dict[int, list[Mapping[str, Any]]]] = {}
        steps: dict[int, Any] = {}
        finals: dict[int, bool] = {}
        for doc in docs:
            for entry in doc.get("epochs") or []:
                epoch = entry.get("epoch")
                if not isinstance(epoch, int):
                    continue
                steps.setdefault(epoch, entry.get("step"))
                finals[epoch] = finals.get(epoch, False) or bool(entry.get("final"))
                for probe, result in (entry.get("probes") or {}).items():
                    if probe not in recipe.probes or not isinstance(result, Mapping):
                        continue
                    if "config" in result and result["config"] != recipe.probes[probe]:
                        continue
                    by_probe.setdefault(probe, {}).setdefault(epoch, []).append(
                        {**result, "seed": doc.get("seed")})
        probes: dict[str, list[dict[str, Any]]] = {}
        for probe in recipe.probes:
            for epoch, results in sorted(by_probe.get(probe, {}).items()):
                cells = {k: estimate(results, top_key(k)) for k in top_k}
                point = {"epoch": epoch, "step": steps.get(epoch), "final": finals.get(epoch, False),
                         **_probe_json(results, cells, top_k)}
                for key in ("rows", "trajectories", "bootstrap"):
                    point.pop(key, None)
                probes.setdefault(probe, []).append(point)
        if probes:
            every = [d.get("probe_every") for d in docs if d.get("probe_every")]
            out[model] = {"probe_every": every[0] if every else None, "probes": probes}
    return out


# -- building it ---------------------------------------------------------------------------------


def build_report(recipe: Recipe, probes: ProbeResults, evaluations: EvalResults, *,
                 device: str, run_info: Mapping[str, Any] | None = None,
                 training: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                 during: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                 plots: PlotWriter | None = None) -> dict[str, Any]:
    """Returns {"json": dict, "markdown": str, "table": the header and table (rich)}.

    probes[model][probe] is either one probe result (the dict the probe stage writes:
    "top10", "top25", ..., "num_rows", "num_trajectories", and, from the RIS bootstrap,
    "intervals": {"top10": {"low", "high"}, ...} and "bootstrap": {...}) or a list of
    such dicts, one per seed, each with a "seed" key. A list gives mean, standard
    deviation and per-seed values; a list of one is reported like a single result.
    evaluations[model][evaluation] is the evaluate stage's dict ("metrics": {...}), or a
    list of them per seed. `run_info` is the run's run_info.json (wall time, stages),
    `training[model]` its train.json per seed and `during[model]` its
    probes_during_training.json per seed. `plots`, given the JSON document, writes the
    plots and returns their paths, which the markdown embeds.
    `device` is the run's device; the report names the devices the results record
    (those that computed them, which differ when a run reuses results) and falls back to it.
    """
    training = training or {}
    during = during or {}
    settings = recipe.report
    top_k = list(recipe.probe_settings.top_k)
    title = settings.title or f"{recipe.name} ({recipe.profile} profile)"
    probe_names = list(recipe.probes)
    models = list(recipe.models)
    paper = settings.paper
    base = settings.baseline
    devices = _devices(_results(probes), _results(evaluations),
                       [t for runs in training.values() for t in runs])
    head = _header(recipe, device, run_info or {}, devices, training)

    cells = {m: {p: {k: estimate(probes.get(m, {}).get(p), top_key(k)) for k in top_k} for p in probe_names}
             for m in models}
    comparisons: dict[str, dict[str, dict[str, Any]]] = {}
    if base is not None and base in models:
        for m in models:
            if m == base:
                continue
            for p in probe_names:
                for k in top_k:
                    a, b = cells[m][p][k], cells[base][p][k]
                    if a is not None and b is not None:
                        comparisons.setdefault(m, {}).setdefault(p, {})[top_key(k)] = compare(a, b)
    claims = [_judge(c, settings, cells, top_k) for c in settings.claims]
    evals = {m: {e: _evaluation(r) for e, r in es.items() if runs_of(r)}
             for m, es in evaluations.items()}

    doc: dict[str, Any] = {
        "recipe": recipe.name, "title": title, **head,
        "models": models, "probe_names": probe_names, "evaluation_names": list(recipe.evaluations),
        "top_k": top_k,
        "probes": {m: {p: _probe_json(probes[m][p], cells[m][p], top_k) for p in probe_names
                       if probes.get(m, {}).get(p)} for m in models if m in probes},
        "paper": paper,
        "baseline": base,
        "comparisons": comparisons,
        "claims": claims,
        "evaluations": {m: {e: r["metrics"] for e, r in es.items()} for m, es in evals.items()},
        "evaluation_spread": {m: {e: {k: r[k] for k in ("seeds", "seeds_run", "sd", "per_seed")}
                                  for e, r in es.items() if "seeds" in r}
                              for m, es in evals.items() if any("seeds" in r for r in es.values())},
        "evaluation_intervals": {m: {e: r["intervals"] for e, r in es.items() if "intervals" in r}
                                 for m, es in evals.items()
                                 if any("intervals" in r for r in es.values())},
        "training": _training(training),
        "during_training": _during_training(recipe, during, top_k),
    }
    written, note = plots(doc) if plots is not None else ([], None)
    doc["plots"] = written
    if note:
        doc["plots_note"] = note

    def mark(m: str, p: str, k: int) -> str:
        verdict = comparisons.get(m, {}).get(p, {}).get(top_key(k), {}).get("verdict", WITHIN)
        return MARKS[verdict]

    table = _terminal_table(title, doc, models, probe_names, top_k, cells, paper, mark, base, evals)
    md = _markdown(recipe, title, doc, models, probe_names, top_k, cells, paper, mark,
                   base, comparisons, claims, evals)
    return {"json": doc, "markdown": "\n".join(md), "table": table}


def render_report(run_dir: Path, recipe: Recipe, *, device: str = "unknown",
                  write: bool = True) -> dict[str, Any]:
    """The report of what `run_dir` holds (nothing is computed). With `write`, its plots,
    report.json and report.md are written there (atomically)."""
    from ssl_core.results.store import read_run

    results = read_run(run_dir, recipe)
    for path in results.unreadable:
        say(f"[yellow]warning:[/yellow] {path} is not a readable result (truncated or invalid "
            "JSON): left out of the report; rerun its stage with `sslc run --force --stages ...`",
            soft_wrap=True)
    writer: PlotWriter | None = None
    if write:
        def writer(doc: dict[str, Any]) -> tuple[list[str], str | None]:
            from ssl_core.report.plots import write_plots

            return write_plots(run_dir, doc, results.curves)

    report = build_report(recipe, results.probes, results.evaluations, device=device,
                          run_info=results.info, training=results.training, during=results.during,
                          plots=writer)
    if results.unreadable:
        report["json"]["unreadable"] = [str(p) for p in results.unreadable]
        report["markdown"] += "\n\nLeft out, unreadable: " + ", ".join(
            f"`{p.relative_to(run_dir)}`" for p in results.unreadable) + "."
    if write:
        write_json(run_dir / REPORT_JSON, report["json"])
        write_text(run_dir / REPORT_MARKDOWN, report["markdown"] + "\n")
    return report


def _probe_json(result: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                cells: Mapping[int, Estimate | None], top_k: list[int]) -> dict[str, Any]:
    runs = runs_of(result)
    first = runs[0] if runs else {}
    out: dict[str, Any] = {top_key(k): c.value if c else None for k, c in cells.items()}
    out["rows"] = first.get("num_rows")
    out["trajectories"] = first.get("num_trajectories")
    out["intervals"] = {top_key(k): {"low": c.low, "high": c.high}
                        for k, c in cells.items() if c and c.low is not None}
    if first.get("bootstrap"):
        out["bootstrap"] = first["bootstrap"]
    seeds = seeds_run(result)
    if seeds is not None and seeds > 1:
        out["seeds"] = [r.get("seed") for r in runs]
        out["seeds_run"] = seeds
        out["sd"] = {top_key(k): c.sd for k, c in cells.items() if c}
        out["per_seed"] = {top_key(k): [v for _, v in c.per_seed] for k, c in cells.items() if c}
    return out

def _judge(c: Claim, settings: ReportSettings, cells: Mapping[str, Any],
           top_k: list[int]) -> dict[str, Any]:
    base = c.baseline or settings.baseline
    assert base is not None  # ReportSettings refuses a claim without one
    k = c.k or top_k[0]
    out: dict[str, Any] = {"claim": c.claim, "model": c.model, "baseline": base, "probe": c.probe,
                           "k": k, "direction": c.direction}
    missing = [f"{what} {name!r}" for what, name, known in
               (("model", c.model, cells), ("baseline", base, cells),
                ("probe", c.probe, next(iter(cells.values()), {}))) if name not in known]
    if missing:
        out.update(verdict="cannot decide", reason=f"{' and '.join(missing)} not in this run")
        return out
    a, b = cells[c.model][c.probe].get(k), cells[base][c.probe].get(k)
    if a is None or b is None:
        out.update(verdict="cannot decide", reason=f"top-{k} not measured")
        return out
    cmp = compare(a, b)
    out["difference"] = cmp["difference"]
    if cmp["verdict"] == WITHIN:
        out.update(verdict="cannot decide", reason="the difference is within the intervals"
                   + (" or the seed spread" if "seed_spread" in cmp else ""))
    elif cmp["verdict"] == c.direction:
        out.update(verdict="supported", reason=f"{c.model} is {cmp['verdict']} beyond the intervals")
    else:
        out.update(verdict="contradicted", reason=f"{c.model} is {cmp['verdict']} beyond the intervals")
    return out

def _terminal_table(title: str, doc: Mapping[str, Any], models: list[str], probe_names: list[str],
                    top_k: list[int], cells: Mapping[str, Any], paper: Mapping[str, Any], mark: Any,
                    base: str | None, evals: Mapping[str, Mapping[str, Any]]) -> Group:
    """The header lines, then the table: one row per probe (the paper's tables get wide),
    one line per K in each cell, the downstream metrics below."""
    head = Text.from_markup("\n".join([f"[bold]{escape(title)}[/bold]", *(
        f"{label}: {escape(text)}" for label, text in header_lines(doc))]))
    table = Table()
    table.add_column("invariance" if probe_names else "evaluation")
    for model in models:
        table.add_column(model, justify="right")
    for p in probe_names:
        row = [p + "".join(f"\ntop-{k}" for k in top_k[1:])]
        for m in models:
            lines = [interval_text(cells[m][p][k], "short") + mark(m, p, k) for k in top_k]
            ref = paper.get(m, {}).get(p, {})
            if ref:
                lines.append("(paper " + " / ".join(number(ref.get(top_key(k))) for k in top_k) + ")")
            row.append("\n".join(lines))
        table.add_row(*row)
    rows = _downstream_rows(doc, models, evals, paper, terminal=True)
    if rows:
        table.add_section()
        for label, values in rows:
            table.add_row(label, *values)
    if probe_names:
        table.caption = (f"top-{top_k[0]} first; ± half the 95% bootstrap interval"
                         + (f"; ▲/▼ beyond the intervals vs {base}" if base else ""))
    return Group(head, table)


def _downstream_rows(doc: Mapping[str, Any], models: list[str], evals: Mapping[str, Mapping[str, Any]],
                     paper: Mapping[str, Any], *, terminal: bool) -> list[tuple[str, list[str]]]:
    """(evaluation / metric, a cell per model): the mean over seeds, its spread, the paper's value."""
    rows = []
    for e in doc["evaluation_names"]:
        metrics = dict.fromkeys(k for m in models for k in evals.get(m, {}).get(e, {}).get("metrics", {}))
        for metric in metrics:
            values = []
            for m in models:
                r = evals.get(m, {}).get(e, {})
                text = interval_text(r.get("estimates", {}).get(metric),
                                     "short" if terminal else "long")
                ref = paper.get(m, {}).get(e, {}).get(metric)
                if ref is not None:
                    text += f"\n(paper {number(ref)})" if terminal else f" ({number(ref)})"
                values.append(text)
            rows.append((f"{e} {metric}" if terminal else f"{e} | {metric}", values))
    return rows


def _plot(doc: Mapping[str, Any], name: str, alt: str) -> list[str]:
    """The markdown embedding plots/<name>.png, when it was written."""
    path = f"plots/{name}.png"
    return [f"![{alt}]({path})", ""] if path in doc.get("plots", []) else []


def _markdown(recipe: Recipe, title: str, doc: Mapping[str, Any], models: list[str],
              probe_names: list[str], top_k: list[int], cells: Mapping[str, Any],
              paper: Mapping[str, Any], mark: Any, base: str | None, comparisons: Mapping[str, Any],
              claims: list[dict[str, Any]], evals: Mapping[str, Mapping[str, Any]]) -> list[str]:
    md = [f"# {title}", "", f"Recipe `{recipe.source}` (`{recipe.name}`).", "",
          "| profile | device | wall time |", "|---|---|---|",
          "| " + " | ".join(f"`{text}`" if label == "device" else text.replace("|", "/")
                           for label, text in header_lines(doc)) + " |", ""]
    if doc.get("plots_note"):
        md += [f"No plots: {doc['plots_note']}.", ""]
    if probe_names:
        md.append("## Representation invariance (Top-K RIS, %)")
        md.append("")
        md.append("Each value with its 95% bootstrap interval (trajectories resampled within "
                  "each class)" + ("; paper values in parentheses" if any(paper.get(m) for m in models)
                                   else "") + ".")
        if base is not None and base not in models:
            md.append(f"The baseline `{base}` is not in this run: no comparisons.")
        elif base is not None:
            md.append(f"▲ / ▼: higher / lower than the baseline `{base}` beyond both intervals"
                      " (and the seed spread, with several seeds).")
        header = ["invariance", *[f"{m} top-{k}" for m in models for k in top_k]]
        md += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for p in probe_names:
            row = [p]
            for m in models:
                ref = paper.get(m, {}).get(p, {})
                for k in top_k:
                    text = interval_text(cells[m][p][k], "long") + mark(m, p, k)
                    if ref:
                        text += f" ({number(ref.get(top_key(k)))})"
                    row.append(text)
            md.append("| " + " | ".join(row) + " |")
        md.append("")
        md += _plot(doc, "ris", "Top-K RIS per invariance and model, with 95% intervals")
    if comparisons:
        md += [f"## Compared with `{base}`", ""]
        for m, per_probe in comparisons.items():
            for p, per_k in per_probe.items():
                k = top_k[0]
                c = per_k.get(top_key(k))
                if c is None:
                    continue
                words = {HIGHER: "higher, beyond the intervals", LOWER: "lower, beyond the intervals",
                         WITHIN: "no difference beyond the intervals"}[c["verdict"]]
                if c["verdict"] == WITHIN and c.get("beyond_interval") and not c.get("beyond_seed_spread"):
                    words = "beyond the intervals but within the seed spread"
                md.append(f"- {m}, {p} (top-{k}): {c['difference']:+.2f}, {words}")
        md.append("")
    if claims:
        md += ["## The paper's claims on these numbers", ""]
        for c in claims:
            diff = f" ({c['difference']:+.2f} top-{c['k']})" if "difference" in c else ""
            md.append(f"- **{c['verdict']}**: {c['claim']} — {c['model']} vs {c['baseline']} on "
                      f"{c['probe']}{diff}: {c['reason']}.")
        md.append("")
    if recipe.evaluations:
        md += ["## Downstream evaluation", ""]
        rows = _downstream_rows(doc, models, evals, paper, terminal=False)
        if rows:
            md += ["| evaluation | metric | " + " | ".join(models) + " |",
                   "|---|---|" + "---|" * len(models)]
            md += [f"| {label} | " + " | ".join(values) + " |" for label, values in rows]
            if any(paper.get(m, {}).get(e) for m in models for e in recipe.evaluations):
                md += ["", "Paper values in parentheses."]
        else:
            md.append("Not evaluated yet.")
        md.append("")
        md += _plot(doc, "downstream", "Downstream metrics per model")
    md += _training_markdown(doc, top_k)
    return md


def _training_markdown(doc: Mapping[str, Any], top_k: list[int]) -> list[str]:
    md: list[str] = []
    if doc["training"]:
        md += ["## Training", ""]
        for m, t in doc["training"].items():
            seeds = f", mean of {len(t['seeds'])} seeds" if t.get("seeds") else ""
            speed = f", {t['images_per_s']:.1f} images/s" if isinstance(t.get("images_per_s"), float) else ""
            md.append(f"- {m}: {t.get('steps')} steps ({t.get('epochs')} epochs), final loss "
                      f"{number(t.get('final_loss'))}{seeds}{speed} on {t.get('device')}")
        md.append("")
        md += _plot(doc, "loss", "Training loss per step (smoothed) and learning rate")
    k = top_k[0]
    for m, d in doc["during_training"].items():
        every = f" (`probe_every: {d['probe_every']}`)" if d.get("probe_every") else ""
        md += [f"## {m}: invariance during training (top-{k} RIS, %){every}", ""]
        probes = list(d["probes"])
        epochs = sorted({p["epoch"] for points in d["probes"].values() for p in points})
        md += ["| epoch | " + " | ".join(probes) + " |", "|---|" + "---|" * len(probes)]
        for epoch in epochs:
            row = []
            for p in probes:
                point = next((q for q in d["probes"][p] if q["epoch"] == epoch), None)
                value = point.get(top_key(k)) if point else None
                iv = (point or {}).get("intervals", {}).get(top_key(k))
                text = number(value)
                if iv and value is not None:
                    text += f" [{iv['low']:.2f}, {iv['high']:.2f}]"
                row.append(text)
            md.append(f"| {epoch} | " + " | ".join(row) + " |")
        md.append("")
    if doc["during_training"]:
        md += _plot(doc, "ris_during_training", "Top-K RIS after each probed epoch")
    return md
