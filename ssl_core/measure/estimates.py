"""What stored results say about one metric across seeds, and whether two models differ.

A result is one stored probe or evaluation result (a dict holding the metric and, when the
bootstrap ran, `intervals[metric] = {low, high}`), or a list of them, one per seed (`None`
for a seed whose result is missing, so a partial run is seen as partial). An `Estimate` is
one metric of one model: the mean over seeds, the interval (the mean per-seed interval,
re-centred), the seed spread, and how many seeds it rests on out of how many were run.

When is a difference real? A model differs from the baseline when their intervals do not
overlap and, when either has several seeds, the difference of the means is also larger
than twice the seed spread, 2 * sqrt(sd_model^2 + sd_baseline^2). Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

HIGHER, LOWER, WITHIN = "higher", "lower", "within"

Result = Mapping[str, Any] | Sequence[Mapping[str, Any] | None]


def top_key(k: int) -> str:
    """The key of the top-K RIS in every result and report: `top10`."""
    return f"top{k}"


def runs_of(result: Result | None) -> list[Mapping[str, Any]]:
    """The per-seed results that exist (one for a single-seed result)."""
    if result is None:
        return []
    if isinstance(result, Mapping):
        return [result] if result else []
    return [r for r in result if r]


def seeds_run(result: Result | None) -> int | None:
    """How many seeds were run for a per-seed list (None: a single-seed result)."""
    return None if result is None or isinstance(result, Mapping) else len(result)


@dataclass(frozen=True)
class Estimate:
    """One metric of one model: mean over seeds, its interval, seed spread, seeds used."""

    value: float
    low: float | None  # interval around the value; None without a bootstrap
    high: float | None
    sd: float | None  # standard deviation over seeds (None: fewer than two)
    per_seed: list[tuple[int | None, float]]
    seeds_run: int | None = None  # seeds the run had (None: a single-seed run)

    @property
    def half_width(self) -> float | None:
        return None if self.low is None or self.high is None else (self.high - self.low) / 2

    @property
    def partial(self) -> bool:
        """Some seeds' results are missing: the value rests on fewer seeds than were run."""
        return self.seeds_run is not None and len(self.per_seed) < self.seeds_run

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value}
        if self.low is not None and self.high is not None:
            out.update(low=self.low, high=self.high, half_width=(self.high - self.low) / 2)
        if self.seeds_run is not None:
            out.update(seeds=[s for s, _ in self.per_seed], per_seed=[v for _, v in self.per_seed],
                       seeds_run=self.seeds_run)
            if self.sd is not None:
                out["sd"] = self.sd
        return out


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def estimate(result: Result | None, key: str, *, within: str | None = None) -> Estimate | None:
    """The estimate of metric `key` (e.g. `top_key(10)`, or `mAP` with `within="metrics"`)."""
    runs = [(r, (r.get(within) or {}) if within else r) for r in runs_of(result)]
    runs = [(r, holder) for r, holder in runs if _number(holder.get(key))]
    if not runs:
        return None
    values = [float(holder[key]) for _, holder in runs]
    mean = sum(values) / len(values)
    below, above = [], []
    for (_, holder), v in zip(runs, values, strict=True):
        iv = (holder.get("intervals") or {}).get(key) or {}
        if _number(iv.get("low")) and _number(iv.get("high")):
            below.append(v - float(iv["low"]))
            above.append(float(iv["high"]) - v)
    low = high = None
    if below and len(below) == len(runs):
        low, high = mean - sum(below) / len(below), mean + sum(above) / len(above)
    sd = None
    if len(values) > 1:
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return Estimate(mean, low, high, sd, [(r.get("seed"), v) for (r, _), v in zip(runs, values, strict=True)],
                    seeds_run(result))


def compare(model: Estimate, baseline: Estimate) -> dict[str, Any]:
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
