"""The run's report: the paper's table shape, with intervals, seeds and claims.

Every RIS is printed with its bootstrap interval; each model is compared with the
recipe's `report.baseline` per invariance, and the recipe's `report.claims` are judged
against those comparisons (supported / contradicted / cannot decide).

The recipe's `report` section (validated by `report_settings`)::

    report:
      title: "..."
      baseline: random-init            # the model every other model is compared with
      paper: {model: {probe: {top10: .., top25: ..}}}
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
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.table import Table

from ssl_core.errors import RecipeError
from ssl_core.recipe import Recipe

__all__ = ["Claim", "ReportSettings", "build_report", "report_settings"]

HIGHER, LOWER, WITHIN = "higher", "lower", "within"
MARKS = {HIGHER: " ▲", LOWER: " ▼", WITHIN: ""}


class Claim(BaseModel):
    """A claim of the paper, stated as a comparison the report can judge."""

    model_config = ConfigDict(extra="forbid")
    claim: str = Field(description="the claim, in words")
    model: str
    baseline: str | None = Field(None, description="defaults to report.baseline")
    probe: str
    k: int | None = Field(None, ge=1, description="top-K; defaults to the first probe_settings.top_k")
    direction: Literal["higher", "lower"]


class ReportSettings(BaseModel):
    """The recipe's `report` section."""

    model_config = ConfigDict(extra="forbid")
    title: str | None = None
    baseline: str | None = Field(None, description="model the others are compared with")
    paper: dict[str, dict[str, dict[str, float]]] = Field(default_factory=dict)
    claims: list[Claim] = Field(default_factory=list)


def report_settings(recipe: Recipe) -> ReportSettings:
    """The recipe's `report` section, checked for shape.

    Names of models and probes are not required to exist: `--set probes.x=null` or a
    profile may drop one, and a finished run must still get its report. A claim about
    something not measured is "cannot decide", and the report says why."""
    try:
        settings = ReportSettings.model_validate(recipe.report or {})
    except ValidationError as err:
        problems = "; ".join(f"report.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in err.errors())
        raise RecipeError(f"recipe {recipe.source}: {problems}",
                          "report takes title, baseline, paper and claims "
                          "({claim, model, probe, direction, baseline?, k?})") from None
    for i, c in enumerate(settings.claims):
        if c.baseline is None and settings.baseline is None:
            raise RecipeError(f"recipe {recipe.source}: report.claims[{i}] has no baseline",
                              "set report.baseline or the claim's own baseline")
    return settings


# -- one cell: a model's result on one probe, over one or several seeds ---------------------


@dataclass(frozen=True)
class Cell:
    """Top-K values of one model on one probe: mean over seeds, interval, seed spread."""

    value: float
    low: float | None  # interval around the value (the mean per-seed interval, re-centred)
    high: float | None
    sd: float | None  # standard deviation over seeds (None: one seed)
    per_seed: list[tuple[int | None, float]]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value}
        if self.low is not None and self.high is not None:
            out.update(low=self.low, high=self.high, half_width=(self.high - self.low) / 2)
        if self.sd is not None:
            out.update(sd=self.sd, seeds=[s for s, _ in self.per_seed],
                       per_seed=[v for _, v in self.per_seed])
        return out


def _as_runs(result: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None) -> list[Mapping[str, Any]]:
    if result is None:
        return []
    if isinstance(result, Mapping):
        return [result] if result else []
    return [r for r in result if r]


def cell(result: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None, k: int) -> Cell | None:
    """Summarise one probe result (a dict) or a list of per-seed results at top-K."""
    runs = [r for r in _as_runs(result) if isinstance(r.get(f"top{k}"), int | float)]
    if not runs:
        return None
    values = [float(r[f"top{k}"]) for r in runs]
    mean = sum(values) / len(values)
    below, above = [], []
    for r, v in zip(runs, values, strict=True):
        iv = (r.get("intervals") or {}).get(f"top{k}") or {}
        if isinstance(iv.get("low"), int | float) and isinstance(iv.get("high"), int | float):
            below.append(v - float(iv["low"]))
            above.append(float(iv["high"]) - v)
    low = high = None
    if below and len(below) == len(runs):
        low, high = mean - sum(below) / len(below), mean + sum(above) / len(above)
    sd = None
    if len(runs) > 1:
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return Cell(mean, low, high, sd, [(r.get("seed"), v) for r, v in zip(runs, values, strict=True)])


def compare(model: Cell, baseline: Cell) -> dict[str, Any]:
    """higher / lower / within: does model differ from baseline beyond intervals and seeds?"""
    diff = model.value - baseline.value
    out: dict[str, Any] = {"difference": diff}
    if None in (model.low, model.high, baseline.low, baseline.high):
        out.update(verdict=WITHIN, beyond_interval=None, reason="no interval")
        return out
    assert model.low is not None and model.high is not None
    assert baseline.low is not None and baseline.high is not None
    beyond_ci = model.low > baseline.high if diff > 0 else model.high < baseline.low
    out["beyond_interval"] = bool(beyond_ci)
    beyond = beyond_ci
    if model.sd is not None or baseline.sd is not None:
        spread = 2 * math.sqrt((model.sd or 0.0) ** 2 + (baseline.sd or 0.0) ** 2)
        out.update(seed_spread=spread, beyond_seed_spread=bool(abs(diff) > spread))
        beyond = beyond and abs(diff) > spread
    out["verdict"] = (HIGHER if diff > 0 else LOWER) if beyond else WITHIN
    return out


# -- formatting --------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "-"


def _short(c: Cell | None) -> str:
    """Terminal: `48.60 ±2.10`, plus the seed spread when there are several seeds."""
    if c is None:
        return "-"
    text = _fmt(c.value)
    if c.low is not None and c.high is not None:
        text += f" ±{(c.high - c.low) / 2:.2f}"
    if c.sd is not None:
        text += f" (sd {c.sd:.2f}, {len(c.per_seed)} seeds)"
    return text


def _long(c: Cell | None) -> str:
    """Markdown: `48.60 [46.50, 50.70]`, plus `sd 0.80 over 3 seeds`."""
    if c is None:
        return "-"
    text = _fmt(c.value)
    if c.low is not None and c.high is not None:
        text += f" [{c.low:.2f}, {c.high:.2f}]"
    if c.sd is not None:
        text += f", sd {c.sd:.2f} over {len(c.per_seed)} seeds"
    return text


# -- the report ----------------------------------------------------------------------------------

ProbeResults = Mapping[str, Mapping[str, Mapping[str, Any] | Sequence[Mapping[str, Any]]]]


def _devices(probes: ProbeResults,
             evaluations: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """The devices recorded by the results themselves, e.g. "cuda:0" or "cpu, cuda:0"."""
    found: set[str] = set()
    for per_model in (*probes.values(), *evaluations.values()):
        for result in per_model.values():
            for r in result if isinstance(result, list) else [result]:
                if isinstance(r, Mapping) and isinstance(r.get("device"), str):
                    found.add(r["device"])
    return ", ".join(sorted(found))


def build_report(recipe: Recipe, probes: ProbeResults,
                 evaluations: Mapping[str, Mapping[str, Mapping[str, Any]]], *,
                 device: str) -> dict[str, Any]:
    """Returns {"json": dict, "markdown": str, "table": rich Table}.

    probes[model][probe] is either one probe result (the dict the probe stage writes:
    "top10", "top25", ..., "num_rows", "num_trajectories", and, from the RIS bootstrap,
    "intervals": {"top10": {"low", "high"}, ...} and "bootstrap": {...}) or a list of
    such dicts, one per seed, each with a "seed" key. A list gives mean, standard
    deviation and per-seed values; a list of one is reported like a single result.
    evaluations[model][evaluation] is the evaluate stage's dict ("metrics": {...}).
    `device` is the run's device; the report names the devices the results record
    (those that computed them, which differ when a run reuses results) and falls back to it.
    """
    device = _devices(probes, evaluations) or device
    settings = report_settings(recipe)
    top_k = list(recipe.probe_settings.top_k)
    title = settings.title or f"{recipe.name} ({recipe.profile} profile)"
    probe_names = list(recipe.probes)
    models = list(recipe.models)
    paper = settings.paper
    base = settings.baseline

    cells = {m: {p: {k: cell(probes.get(m, {}).get(p), k) for k in top_k} for p in probe_names}
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
                        comparisons.setdefault(m, {}).setdefault(p, {})[f"top{k}"] = compare(a, b)
    claims = [_judge(c, settings, cells, top_k) for c in settings.claims]

    def mark(m: str, p: str, k: int) -> str:
        verdict = comparisons.get(m, {}).get(p, {}).get(f"top{k}", {}).get("verdict", WITHIN)
        return MARKS[verdict]

    table = _terminal_table(title, models, probe_names, top_k, cells, paper, mark, base)
    md = _markdown(recipe, title, device, models, probe_names, top_k, cells, paper, mark,
                   base, comparisons, claims, evaluations)
    doc = {
        "recipe": recipe.name, "profile": recipe.profile, "device": device, "top_k": top_k,
        "probes": {m: {p: _probe_json(probes[m][p], cells[m][p], top_k) for p in probe_names
                       if probes.get(m, {}).get(p)} for m in models if m in probes},
        "paper": paper,
        "baseline": base,
        "comparisons": comparisons,
        "claims": claims,
        "evaluations": {m: {e: r.get("metrics", {}) for e, r in es.items()}
                        for m, es in evaluations.items()},
    }
    return {"json": doc, "markdown": "\n".join(md), "table": table}


def _probe_json(result: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                cells: Mapping[int, Cell | None], top_k: list[int]) -> dict[str, Any]:
    runs = _as_runs(result)
    first = runs[0] if runs else {}
    out: dict[str, Any] = {f"top{k}": c.value if c else None for k, c in cells.items()}
    out["rows"] = first.get("num_rows")
    out["trajectories"] = first.get("num_trajectories")
    out["intervals"] = {f"top{k}": {"low": c.low, "high": c.high}
                        for k, c in cells.items() if c and c.low is not None}
    if first.get("bootstrap"):
        out["bootstrap"] = first["bootstrap"]
    if len(runs) > 1:
        out["seeds"] = [r.get("seed") for r in runs]
        out["sd"] = {f"top{k}": c.sd for k, c in cells.items() if c}
        out["per_seed"] = {f"top{k}": [v for _, v in c.per_seed] for k, c in cells.items() if c}
    return out


def _judge(c: Claim, settings: ReportSettings, cells: Mapping[str, Any],
           top_k: list[int]) -> dict[str, Any]:
    base = c.baseline or settings.baseline
    assert base is not None  # report_settings refuses a claim without one
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


def _terminal_table(title: str, models: list[str], probe_names: list[str], top_k: list[int],
                    cells: Mapping[str, Any], paper: Mapping[str, Any], mark: Any,
                    base: str | None) -> Table:
    """One row per probe (the paper's tables get wide), one line per K in each cell."""
    table = Table(title=title)
    table.add_column("invariance")
    for model in models:
        table.add_column(model, justify="right")
    for p in probe_names:
        row = [p + "".join(f"\ntop-{k}" for k in top_k[1:])]
        for m in models:
            lines = [_short(cells[m][p][k]) + mark(m, p, k) for k in top_k]
            ref = paper.get(m, {}).get(p, {})
            if ref:
                lines.append("(paper " + " / ".join(_fmt(ref.get(f"top{k}")) for k in top_k) + ")")
            row.append("\n".join(lines))
        table.add_row(*row)
    table.caption = (f"top-{top_k[0]} first; ± half the 95% bootstrap interval"
                     + (f"; ▲/▼ beyond the intervals vs {base}" if base else ""))
    return table


def _markdown(recipe: Recipe, title: str, device: str, models: list[str], probe_names: list[str],
              top_k: list[int], cells: Mapping[str, Any], paper: Mapping[str, Any], mark: Any,
              base: str | None, comparisons: Mapping[str, Any], claims: list[dict[str, Any]],
              evaluations: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    md = [f"# {title}", "", f"Recipe `{recipe.source}`, profile `{recipe.profile}`, device `{device}`.", ""]
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
                    text = _long(cells[m][p][k]) + mark(m, p, k)
                    if ref:
                        text += f" ({_fmt(ref.get(f'top{k}'))})"
                    row.append(text)
            md.append("| " + " | ".join(row) + " |")
        md.append("")
    if comparisons:
        md += [f"## Compared with `{base}`", ""]
        for m, per_probe in comparisons.items():
            for p, per_k in per_probe.items():
                k = top_k[0]
                c = per_k.get(f"top{k}")
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
        for model in models:
            for e in recipe.evaluations:
                metrics = evaluations.get(model, {}).get(e, {}).get("metrics", {})
                parts = ", ".join(f"{k} {_fmt(v)}" for k, v in metrics.items())
                md.append(f"- {model} / {e}: {parts or '-'}")
        md.append("")
    return md
