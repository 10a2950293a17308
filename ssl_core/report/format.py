"""The one way sslc writes a number with its interval and seeds, in three styles:

- `short` (terminal tables): `48.60 ±2.10 (sd 0.80, 3 seeds)`
- `long` (Markdown): `48.60 [46.50, 50.70], sd 0.80 over 3 seeds`
- `bracket` (one-off results, `sslc probe`): `48.60 [46.5, 50.7]`

A value resting on fewer seeds than were run says so: `(1 of 2 seeds)`."""

from __future__ import annotations

from typing import Any, Literal

from ssl_core.measure.estimates import Estimate

Style = Literal["short", "long", "bracket"]


def number(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) and not isinstance(value, bool) else "-"


def _seeds(e: Estimate, style: Style) -> str:
    if e.partial:
        return (f" ({len(e.per_seed)} of {e.seeds_run} seeds)" if style != "long"
                else f", {len(e.per_seed)} of {e.seeds_run} seeds")
    if e.sd is None:
        return ""
    n = len(e.per_seed)
    return f" (sd {e.sd:.2f}, {n} seeds)" if style != "long" else f", sd {e.sd:.2f} over {n} seeds"


def interval_text(e: Estimate | None, style: Style = "short") -> str:
    if e is None:
        return "-"
    text = number(e.value)
    if e.low is not None and e.high is not None:
        text += {"short": f" ±{(e.high - e.low) / 2:.2f}",
                 "long": f" [{e.low:.2f}, {e.high:.2f}]",
                 "bracket": f" [{e.low:.1f}, {e.high:.1f}]"}[style]
    return text + _seeds(e, style)
