"""The run's report: the paper's table shape, "measured" beside "paper" where known."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from ssl_core.recipe import Recipe


def _fmt(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"


def build_report(recipe: Recipe, probes: dict[str, dict[str, dict[str, Any]]],
                 evaluations: dict[str, dict[str, dict[str, Any]]], *, device: str) -> dict[str, Any]:
    """Returns {"json": ..., "markdown": str, "table": rich Table}."""
    paper: dict[str, dict[str, dict[str, float]]] = recipe.report.get("paper", {}) or {}
    top_k = recipe.probe_settings.top_k
    title = recipe.report.get("title") or f"{recipe.name} ({recipe.profile} profile)"
    probe_names = list(recipe.probes)
    has_paper = any(paper.get(m) for m in recipe.models)

    # terminal: one row per probe (the paper's tables get wide); markdown: one row per model
    ks = " / ".join(f"top-{k}" for k in top_k)
    table = Table(title=title)
    table.add_column("invariance")
    for model in recipe.models:
        table.add_column(f"{model}\n{ks}", justify="right")
    header = ["model"] + [f"{p} top-{k}" for p in probe_names for k in top_k]
    rows_md: list[list[str]] = [[model] for model in recipe.models]
    for p in probe_names:
        cells = []
        for row, model in zip(rows_md, recipe.models, strict=True):
            values = [probes.get(model, {}).get(p, {}).get(f"top{k}") for k in top_k]
            ref = paper.get(model, {}).get(p, {})
            cell = " / ".join(_fmt(v) for v in values)
            if ref:
                cell += "\n(paper " + " / ".join(_fmt(ref.get(f"top{k}")) for k in top_k) + ")"
            cells.append(cell)
            row += [_fmt(v) + (f" ({_fmt(ref.get(f'top{k}'))})" if ref else "")
                    for v, k in zip(values, top_k, strict=True)]
        table.add_row(p, *cells)

    eval_names = list(recipe.evaluations)
    md = [f"# {title}", "", f"Recipe `{recipe.source}`, profile `{recipe.profile}`, device `{device}`.", ""]
    if probe_names:
        md.append("## Representation invariance (Top-K RIS, %)")
        if has_paper:
            md.append("Paper values in parentheses.")
        md += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(c) + " |" for c in rows_md]
        md.append("")
    if eval_names:
        md.append("## Downstream evaluation")
        md.append("")
        for model in recipe.models:
            for e in eval_names:
                metrics = evaluations.get(model, {}).get(e, {}).get("metrics", {})
                parts = ", ".join(f"{k} {_fmt(v)}" for k, v in metrics.items())
                md.append(f"- {model} / {e}: {parts or '-'}")
        md.append("")
    doc = {
        "recipe": recipe.name, "profile": recipe.profile, "device": device, "top_k": top_k,
        "probes": {m: {p: {f"top{k}": r.get(f"top{k}") for k in top_k} | {"rows": r.get("num_rows")}
                       for p, r in ps.items()} for m, ps in probes.items()},
        "paper": paper,
        "evaluations": {m: {e: r.get("metrics", {}) for e, r in es.items()} for m, es in evaluations.items()},
    }
    return {"json": doc, "markdown": "\n".join(md), "table": table}
