"""Percentile bootstrap intervals for RIS, from the per-trajectory counts the score used.

RIS averages over classes; within a class, the local firing rate averages over its
trajectories. The bootstrap therefore resamples **trajectories within each class** (the
classes are the strata and stay fixed) and recomputes each class's top-K mean from the
trajectories' firing counts, which RIS computed anyway: no feature is read again.

A class with a single trajectory has nothing to resample within it. Such classes (every
class of an ALOI-style probe, where the class *is* the trajectory) are resampled as units
among themselves: for ALOI this is the ordinary bootstrap over objects. Classes without
any usable trajectory contribute their fixed 0, as in the score.

The thresholds and global firing rates stay those of the full feature matrix (they are
quantiles over all rows, far more stable than the per-class averages).

The interval is the percentile interval **centred on the score**: [score - (median -
q_low), score + (q_high - median)] of the resampled values. RIS takes, per class, the
top K of D noisy per-neuron averages; a resample adds a second layer of noise on top of
the sample's own, so the resampled top-K means sit above the score (by 5-9 points for
12 classes of 10-40 trajectories, docs/ris.md), and a plain percentile interval often
does not contain the score at all. Its spread is the useful part: centred on the score
it is conservative (wider than the spread of the score over fresh probe sets of the same
size, measured in docs/ris.md). The shift (mean resample - score) is reported as `bias`:
a large bias says the probe has few trajectories per class, and that its RIS is only
comparable with RIS measured on probe sets of the same size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ssl_core.errors import SslcError

__all__ = ["bootstrap_intervals", "check_bootstrap"]

_EPS = 1e-20  # as in the score: added to the per-class trajectory counts
#: resamples drawn and scored together; a constant, so intervals never depend on memory
RESAMPLE_CHUNK = 250


def check_bootstrap(resamples: int, seed: int, confidence: float) -> None:
    """Refuse settings that cannot give an interval, naming the keyword."""
    if isinstance(resamples, bool) or not isinstance(resamples, int | np.integer) or resamples < 0:
        raise SslcError(f"resamples must be an integer >= 0, got {resamples!r}",
                        hint="1000 is the default; 0 switches the confidence intervals off")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise SslcError(f"bootstrap_seed must be an integer >= 0, got {seed!r}",
                        hint="any non-negative integer; the same seed gives the same intervals")
    if not isinstance(confidence, float | int) or not 0.0 < float(confidence) < 1.0:
        raise SslcError(f"confidence must be between 0 and 1 (exclusive), got {confidence!r}",
                        hint="e.g. 0.95 for 95% intervals")


def bootstrap_intervals(
    *,
    class_values: dict[int, np.ndarray],
    single_classes: np.ndarray,
    multi_classes: np.ndarray,
    multi_starts: np.ndarray,
    traj_counts: np.ndarray,
    traj_sizes: np.ndarray,
    global_firing: np.ndarray,
    scale: float,
    ks: Sequence[int],
    resamples: int,
    seed: int,
    confidence: float,
) -> tuple[dict[int, tuple[float, float]], dict[int, float], dict[int, np.ndarray]]:
    """(K -> (low, high), K -> bootstrap bias, K -> the resampled RIS_K values).

    class_values: K -> per-class top-K means of the full data (C,), as in the score.
    single_classes: codes of the classes with exactly one used trajectory.
    multi_classes: codes of the classes with two or more, in the order of the segments
    `multi_starts` over the rows of traj_counts (U_m x D firing counts a, best sign) and
    traj_sizes (U_m,). scale = 100 - p.
    """
    rng = np.random.default_rng(seed)
    num_classes = len(next(iter(class_values.values())))
    totals = {k: np.zeros(resamples, dtype=np.float64) for k in ks}
    fixed = np.ones(num_classes, dtype=bool)
    fixed[single_classes] = False
    fixed[multi_classes] = False
    for k in ks:
        totals[k] += float(class_values[k][fixed].sum())

    # classes with one trajectory: resampled as units among themselves
    s = len(single_classes)
    if s:
        for start in range(0, resamples, RESAMPLE_CHUNK):
            stop = min(resamples, start + RESAMPLE_CHUNK)
            picks = rng.integers(0, s, size=(stop - start, s))
            for k in ks:
                totals[k][start:stop] += class_values[k][single_classes][picks].sum(axis=1)

    # classes with several trajectories: multinomial weights over their trajectories
    g = global_firing.astype(np.float32)
    kth = [k - 1 for k in ks]
    ends = np.r_[multi_starts[1:], len(traj_sizes)].astype(np.int64) if len(multi_starts) else multi_starts
    for a, b in zip(multi_starts.tolist(), ends.tolist(), strict=True):
        n_c = b - a
        counts = traj_counts[a:b]
        frac = counts.astype(np.float32) / traj_sizes[a:b, None].astype(np.float32)
        fired = (counts > 0).astype(np.float32)
        pvals = np.full(n_c, 1.0 / n_c)
        for start in range(0, resamples, RESAMPLE_CHUNK):
            stop = min(resamples, start + RESAMPLE_CHUNK)
            w = rng.multinomial(n_c, pvals, size=stop - start).astype(np.float32)
            local = w @ frac
            local /= (w @ fired) + np.float32(_EPS)
            local /= g
            np.negative(local, out=local)
            local.partition(kth, axis=1)
            for k in ks:
                totals[k][start:stop] -= local[:, :k].mean(axis=1, dtype=np.float64)

    alpha = 1.0 - float(confidence)
    intervals: dict[int, tuple[float, float]] = {}
    bias: dict[int, float] = {}
    for k in ks:
        totals[k] *= scale / num_classes
        score = float(class_values[k].sum()) * scale / num_classes
        low, mid, high = np.quantile(totals[k], [alpha / 2, 0.5, 1 - alpha / 2])
        # centred on the score: see the module docstring for why
        intervals[k] = (score - float(mid - low), score + float(high - mid))
        bias[k] = float(totals[k].mean()) - score
    return intervals, bias, totals
