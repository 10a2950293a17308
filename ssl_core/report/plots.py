"""The report's plots, as PNGs under `<run dir>/plots/`.

Each `*_figure` function takes the report's JSON document (or the loss curves) and returns
a matplotlib Figure, or None when there is nothing to draw, so the numbers drawn are the
numbers the report states (tests read the bars back from the Figure). `write_plots` saves
them atomically. matplotlib is imported here only, and only the object-oriented API is
used (`Figure`, rendered by Agg): no pyplot state, no display needed.

Plots:
  ris.png                  Top-K RIS per invariance (groups) and model (bars), 95% interval
                           error bars, the paper's value as a black diamond; a panel per K
  downstream.png           downstream metrics per model (a panel per evaluation)
  loss.png                 training loss per step (raw, faint; smoothed) and the learning
                           rate (twin axis), a panel per trained model
  ris_during_training.png  Top-K RIS after each probed epoch (`train.probe_every`), a line
                           per probe, a panel per model and K
A model has the same colour in every plot.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssl_core.kit.atomic import atomic_path
from ssl_core.measure.estimates import Estimate, top_key
from ssl_core.report.format import interval_text
from ssl_core.results.layout import PLOTS_DIR
from ssl_core.results.store import LossCurve

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 130
#: tab10, then more: one per model, in the recipe's order
MODEL_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf")
#: for probes (lines in the RIS-over-training plot): distinct from the model colours' order
PROBE_STYLES = (("#1b9e77", "o"), ("#d95f02", "s"), ("#7570b3", "^"), ("#e7298a", "D"),
                ("#66a61e", "v"), ("#e6ab02", "P"), ("#a6761d", "X"), ("#666666", "*"))
PAPER_MARK = {"marker": "D", "color": "black", "s": 30, "zorder": 4}


def model_colours(models: Sequence[str]) -> dict[str, str]:
    return {m: MODEL_COLOURS[i % len(MODEL_COLOURS)] for i, m in enumerate(models)}


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig


def _style(ax: Any) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=10)


def _title(fig: Figure, text: str) -> None:
    fig.suptitle("\n".join(textwrap.wrap(text, 90)), fontsize=12)


#: inches per character of a 10-point label (DejaVu Sans, on average)
CHAR_IN = 0.085


def wrap_label(label: str, width: int) -> str:
    """`illumination-direction` -> `illumination-\\ndirection` when wider than `width` characters."""
    if len(label) <= width or "-" not in label:
        return label
    lines: list[str] = []
    for part in [p + "-" for p in label.split("-")[:-1]] + [label.split("-")[-1]]:
        if lines and len(lines[-1]) + len(part) <= width:
            lines[-1] += part
        else:
            lines.append(part)
    return "\n".join(lines)


def _tick_labels(ax: Any, labels: Sequence[str], group_in: float) -> None:
    """Group names under the groups (`group_in` inches apart): broken at hyphens where
    too wide, slanted if that is not enough."""
    width = max(int(group_in / CHAR_IN), 4)
    wrapped = [wrap_label(s, width) for s in labels]
    slant = any(len(line) > width for s in wrapped for line in s.split("\n"))
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(wrapped, rotation=25 if slant else 0, ha="right" if slant else "center",
                       rotation_mode="anchor", fontsize=10)


def _grouped_bars(ax: Any, groups: Sequence[str], models: Sequence[str], colours: Mapping[str, str],
                  value: Any, error: Any, paper: Any, group_in: float) -> bool:
    """One group per entry of `groups`, one bar per model (label = model, gid = model);
    value(m, g) -> height or None, error(m, g) -> (below, above) or None, paper(m, g) ->
    the paper's value or None. Returns whether a paper value was drawn."""
    n = max(len(models), 1)
    width = min(0.8 / n, 0.3)
    drew_paper = False
    for i, m in enumerate(models):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        heights = [value(m, g) for g in groups]
        errs = [error(m, g) for g in groups]
        yerr = [[e[0] if e else 0.0 for e in errs], [e[1] if e else 0.0 for e in errs]]
        ax.bar(xs, [float("nan") if h is None else h for h in heights], width * 0.92,
               color=colours[m], label=m, gid=m,
               yerr=yerr if any(errs) else None, capsize=3 if any(errs) else 0,
               error_kw={"elinewidth": 1.0, "ecolor": "#222222"})
        refs = [(x, paper(m, g)) for x, g in zip(xs, groups, strict=True) if paper(m, g) is not None]
        if refs:
            ax.scatter([x for x, _ in refs], [r for _, r in refs], **PAPER_MARK,
                       label="paper" if not drew_paper else None)
            drew_paper = True
    _tick_labels(ax, groups, group_in)
    ax.set_xlim(-0.6, len(groups) - 0.4)  # a lone group keeps bars of the usual width
    return drew_paper


def _legend(fig: Figure, axes: Sequence[Any]) -> None:
    """One legend for the figure, below the panels, each label once (the paper's mark
    last), in as many columns as the figure's width holds."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    if "paper" in seen:
        seen["paper"] = seen.pop("paper")
    if seen:
        entry_in = 0.6 + CHAR_IN * max(len(label) for label in seen)
        ncols = max(1, min(len(seen), int((fig.get_figwidth() - 0.3) / entry_in)))
        fig.legend(list(seen.values()), list(seen), loc="outside lower center",
                   ncols=ncols, frameon=False, fontsize=10)


# -- the plots -----------------------------------------------------------------------------------


def ris_figure(doc: Mapping[str, Any]) -> Figure | None:
    """Top-K RIS bars per invariance and model, a panel per K (the report's values)."""
    models = [m for m in doc["models"] if doc["probes"].get(m)]
    probes = [p for p in doc["probe_names"] if any(p in doc["probes"][m] for m in models)]
    if not models or not probes:
        return None
    colours = model_colours(doc["models"])
    top_k = doc["top_k"]
    panel_w = max(4.5, 1.2 + len(probes) * (0.35 + 0.28 * len(models)))
    stacked = panel_w * len(top_k) > 16
    fig = _figure(panel_w if stacked else panel_w * len(top_k) + 0.5,
                  (3.6 * len(top_k) if stacked else 4.2) + 0.9)
    axes = list(fig.subplots(len(top_k) if stacked else 1, 1 if stacked else len(top_k), squeeze=False).ravel())
    paper = doc.get("paper") or {}
    for ax, k in zip(axes, top_k, strict=True):
        key = top_key(k)

        def value(m: str, p: str, key: str = key) -> float | None:
            v = doc["probes"][m].get(p, {}).get(key)
            return float(v) if isinstance(v, int | float) else None

        def error(m: str, p: str, key: str = key) -> tuple[float, float] | None:
            v = value(m, p)
            iv = doc["probes"][m].get(p, {}).get("intervals", {}).get(key)
            if v is None or not iv or iv.get("low") is None:
                return None
            return max(v - iv["low"], 0.0), max(iv["high"] - v, 0.0)

        def ref(m: str, p: str, key: str = key) -> float | None:
            v = paper.get(m, {}).get(p, {}).get(key)
            return float(v) if isinstance(v, int | float) else None

        _grouped_bars(ax, probes, models, colours, value, error, ref, (panel_w - 1.0) / len(probes))
        _style(ax)
        ax.set_ylim(0, 105)
        ax.set_ylabel(f"Top-{k} RIS (%)", fontsize=11)
        ax.set_title(f"top-{k}", fontsize=11)
    _legend(fig, axes)
    _title(fig, doc.get("title") or "Top-K RIS")
    return fig


def downstream_figure(doc: Mapping[str, Any]) -> Figure | None:
    """Downstream metrics per model: a panel per evaluation, a group per metric; seed
    spread as error bars, the paper's values as diamonds, values written on the bars."""
    evals = doc.get("evaluations") or {}
    spread = doc.get("evaluation_spread") or {}
    models = [m for m in doc["models"] if any(evals.get(m, {}).values())]
    names = [e for e in doc.get("evaluation_names", []) if any(evals.get(m, {}).get(e) for m in models)]
    if not names:
        return None
    colours = model_colours(doc["models"])
    paper = doc.get("paper") or {}
    metrics = {e: list(dict.fromkeys(k for m in models for k in evals.get(m, {}).get(e, {}))) for e in names}
    widths = [max(3.2, 1.0 + len(metrics[e]) * (0.3 + 0.35 * len(models))) for e in names]
    # wide enough for a legend of two columns
    legend_in = 2 * (0.6 + CHAR_IN * max(len(m) for m in models)) + 0.4
    fig = _figure(max(sum(widths) + 0.5, legend_in), 4.6)
    axes = list(fig.subplots(1, len(names), squeeze=False, width_ratios=widths).ravel())
    for ax, e, width in zip(axes, names, widths, strict=True):
        def value(m: str, metric: str, e: str = e) -> float | None:
            v = evals.get(m, {}).get(e, {}).get(metric)
            return float(v) if isinstance(v, int | float) else None

        def error(m: str, metric: str, e: str = e) -> tuple[float, float] | None:
            sd = spread.get(m, {}).get(e, {}).get("sd", {}).get(metric)
            return (sd, sd) if isinstance(sd, int | float) else None

        def ref(m: str, metric: str, e: str = e) -> float | None:
            v = paper.get(m, {}).get(e, {}).get(metric)
            return float(v) if isinstance(v, int | float) else None

        _grouped_bars(ax, metrics[e], models, colours, value, error, ref, (width - 0.8) / len(metrics[e]))
        for container in ax.containers:
            if hasattr(container, "datavalues"):  # a BarContainer: the values on its bars
                ax.bar_label(container, labels=["" if v != v else f"{v:.1f}" for v in container.datavalues],
                             fontsize=8, padding=2)
        _style(ax)
        ax.margins(y=0.12)
        ax.set_title(e, fontsize=11)
    axes[0].set_ylabel("value", fontsize=11)
    _legend(fig, axes)
    _title(fig, "Downstream evaluation")
    return fig


def smooth(values: Sequence[float], window: int | None = None) -> list[float]:
    """Trailing moving average over `window` points (default: about 1/25 of the curve)."""
    n = len(values)
    w = window or max(1, min(n // 25, 200))
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= w:
            total -= values[i - w]
        out.append(total / min(i + 1, w))
    return out


def loss_figure(curves: Mapping[str, Sequence[LossCurve]], models: Sequence[str]) -> Figure | None:
    """Loss per step (faint: raw; bold: smoothed) and the learning rate (dashed, right axis),
    a panel per trained model; seeds are lines of the model's colour."""
    trained = [m for m in models if curves.get(m)]
    if not trained:
        return None
    colours = model_colours(models)
    fig = _figure(7.5, 2.9 * len(trained) + 0.7)
    axes = list(fig.subplots(len(trained), 1, squeeze=False).ravel())
    styles = ("-", "--", ":", "-.")
    twins: list[Any] = []
    for ax, m in zip(axes, trained, strict=True):
        twin = ax.twinx()
        for i, c in enumerate(curves[m]):
            label = m if c.seed is None else f"{m} seed {c.seed}"
            few = len(c.steps) < 3
            ax.plot(c.steps, c.losses, color=colours[m], alpha=0.25, linewidth=0.8,
                    marker="o" if few else None)
            ax.plot(c.steps, smooth(c.losses), color=colours[m], linewidth=2.0,
                    linestyle=styles[i % len(styles)], label=label, gid=label)
            twin.plot(c.steps, c.lrs, color="#555555", linewidth=1.0, linestyle=(0, (4, 3)),
                      label="learning rate" if i == 0 else None)
        _style(ax)
        ax.set_ylabel("loss", fontsize=11)
        ax.set_title(m, fontsize=11)
        twin.set_ylabel("learning rate", fontsize=10, color="#555555")
        twin.tick_params(labelsize=9, colors="#555555")
        twin.spines[["top"]].set_visible(False)
        twin.set_ylim(bottom=0)
        twins.append(twin)
    axes[-1].set_xlabel("step", fontsize=11)
    _legend(fig, [*axes, *twins])
    _title(fig, "Training loss (smoothed; raw values faint)")
    return fig


def during_training_figure(doc: Mapping[str, Any]) -> Figure | None:
    """Top-K RIS after each probed epoch: a line per probe (95% interval shaded), a panel
    per model (rows) and K (columns)."""
    during = doc.get("during_training") or {}
    models = [m for m in doc["models"] if during.get(m, {}).get("probes")]
    if not models:
        return None
    from matplotlib.ticker import MaxNLocator

    top_k = doc["top_k"]
    colours = model_colours(doc["models"])
    probes = [p for p in doc["probe_names"] if any(p in during[m]["probes"] for m in models)]
    style = {p: PROBE_STYLES[i % len(PROBE_STYLES)] for i, p in enumerate(probes)}
    fig = _figure(4.6 * len(top_k) + 0.6, 3.3 * len(models) + 0.9)
    axes = fig.subplots(len(models), len(top_k), squeeze=False)
    for row, m in enumerate(models):
        for col, k in enumerate(top_k):
            ax = axes[row][col]
            key = top_key(k)
            for p in probes:
                points = [q for q in during[m]["probes"].get(p, []) if isinstance(q.get(key), int | float)]
                if not points:
                    continue
                colour, marker = style[p]
                xs = [q["epoch"] for q in points]
                ax.plot(xs, [q[key] for q in points], color=colour, marker=marker, linewidth=1.8,
                        markersize=5, label=p, gid=f"{m}/{p}/{key}")
                ivs = [q.get("intervals", {}).get(key) for q in points]
                if all(iv and iv.get("low") is not None for iv in ivs):
                    ax.fill_between(xs, [iv["low"] for iv in ivs], [iv["high"] for iv in ivs],
                                    color=colour, alpha=0.12, linewidth=0)
            _style(ax)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(f"{m}, top-{k}", fontsize=11, color=colours[m])
            ax.set_ylabel(f"Top-{k} RIS (%)", fontsize=10)
            if row == len(models) - 1:
                ax.set_xlabel("epoch", fontsize=11)
    _legend(fig, list(axes.ravel()))
    _title(fig, "Invariance during training")
    return fig


def heatmap_figure(cells: Sequence[Sequence[Estimate | None]], models: Sequence[str],
                   probes: Sequence[str], title: str) -> Figure:
    """Models (rows) x probes (columns), coloured by RIS, each cell printed with its interval."""
    import numpy as np

    values = np.array([[np.nan if c is None else c.value for c in row] for row in cells], float)
    labels = [wrap_label(m, 28) for m in models]
    longest = max((len(line) for label in labels for line in label.splitlines()), default=0)
    width = max(4.0, 1.6 * len(probes) + CHAR_IN * longest + 1.5)  # + the colour bar
    fig = _figure(min(width, 18.0), 1.2 + 0.6 * len(models))
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(probes)), [wrap_label(p, 16) for p in probes], fontsize=9)
    ax.set_yticks(range(len(models)), labels, fontsize=9)
    finite = values[np.isfinite(values)]
    middle = float(finite.mean()) if finite.size else 0.0
    for i, row in enumerate(cells):
        for j, c in enumerate(row):
            text = interval_text(c, "short")
            ax.text(j, i, text.replace(" ±", "\n±"), ha="center", va="center", fontsize=8,
                    color="white" if c is not None and c.value < middle else "black")
    fig.colorbar(image, ax=ax, label="RIS (%)")
    _title(fig, title)
    return fig


def heatmap(path: Path, cells: Sequence[Sequence[Estimate | None]], models: Sequence[str],
            probes: Sequence[str], title: str) -> None:
    """`heatmap_figure`, written as a PNG at `path` (atomically)."""
    save_png(heatmap_figure(cells, models, probes, title), path)


# -- writing -------------------------------------------------------------------------------------


def save_png(fig: Figure, path: Path) -> None:
    """Write `fig` as a PNG at `path`, atomically (never half an image)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, facecolor="white")


def figures(doc: Mapping[str, Any], curves: Mapping[str, Sequence[LossCurve]]) -> dict[str, Figure]:
    """The report's figures by file stem (those with something to draw)."""
    made = {"ris": ris_figure(doc), "downstream": downstream_figure(doc),
            "loss": loss_figure(curves, doc["models"]), "ris_during_training": during_training_figure(doc)}
    return {name: fig for name, fig in made.items() if fig is not None}


def write_plots(run_dir: Path, doc: Mapping[str, Any],
                curves: Mapping[str, Sequence[LossCurve]]) -> tuple[list[str], str | None]:
    """Write the report's plots under run_dir/plots/ (removing ones no longer drawn);
    returns their paths relative to run_dir, and a note when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return [], "matplotlib is not installed (pip install matplotlib)"
    folder = run_dir / PLOTS_DIR
    written = []
    for name, fig in figures(doc, curves).items():
        save_png(fig, folder / f"{name}.png")
        written.append(f"{PLOTS_DIR}/{name}.png")
    if folder.is_dir():
        for old in folder.glob("*.png"):
            if f"{PLOTS_DIR}/{old.name}" not in written:
                old.unlink(missing_ok=True)
    return written, None
