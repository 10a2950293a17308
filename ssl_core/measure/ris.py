"""Top-K Representation Invariance Score (RIS), exactly as the authors' released code computes it.

The algorithm is the one in docs/ris.md (reference-facts section 1). The implementation is
vectorised and works on blocks of columns (neurons): each block of the feature matrix is
gathered once, in trajectory order and transposed, so that

* both firing thresholds come from one sort of contiguous rows (instead of two strided
  column sorts),
* the global firing rate is one comparison and a count, and
* the per-trajectory counts are `np.add.reduceat` over contiguous row segments,

so peak extra memory is bounded by a few copies of one block (`max_block_bytes`), whatever
the number of rows. No Python loop runs over trajectories or neurons.

Every score comes with a percentile bootstrap confidence interval (ssl_core.measure.bootstrap):
the per-trajectory firing counts computed for the score are kept, and the bootstrap
resamples trajectories within each class from them, so 1,000 resamples cost products of
(resamples x trajectories) by (trajectories x D) matrices, never another pass over the features.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ssl_core.errors import SslcError
from ssl_core.measure.bootstrap import bootstrap_intervals, check_bootstrap
from ssl_core.measure.estimates import top_key

__all__ = ["BootstrapSettings", "RISResult", "firing_percentile", "representation_invariance_score"]

#: added to the per-class trajectory counts before dividing, as the authors do
_EPS = 1e-20
#: trajectories shorter than this are skipped
MIN_TRAJECTORY_ROWS = 3
#: size of one column block of the features; peak extra memory is about 2.5 times this
DEFAULT_BLOCK_BYTES = 64 * 2**20
#: rows per tile when transposing a column block
_ROW_TILE = 2048
#: bootstrap defaults: resamples, seed, confidence
DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class BootstrapSettings:
    """How the confidence intervals were drawn (recorded beside them)."""

    resamples: int = DEFAULT_RESAMPLES
    seed: int = 0
    confidence: float = DEFAULT_CONFIDENCE

    def as_dict(self) -> dict[str, Any]:
        return {"resamples": int(self.resamples), "seed": int(self.seed),
                "confidence": float(self.confidence), "method": "centred-percentile",
                "unit": "trajectory within class"}


@dataclass(frozen=True)
class RISResult:
    """RIS for each K, plus what it was computed from (so reports can state it)."""

    scores: dict[int, float]  # K -> RIS_K (percent)
    percentile: float  # p
    num_classes: int
    num_trajectories: int  # trajectories with >= 3 rows (used)
    num_skipped: int  # trajectories with < 3 rows
    num_rows: int
    #: K -> (low, high) of the bootstrap interval; empty when resamples == 0
    intervals: dict[int, tuple[float, float]] = field(default_factory=dict)
    #: K -> mean resampled RIS_K minus RIS_K (see ssl_core.measure.bootstrap)
    bias: dict[int, float] = field(default_factory=dict)
    bootstrap: BootstrapSettings | None = None

    def half_width(self, k: int) -> float | None:
        """Half the width of the top-K interval (what "48.6 +- 2.1" prints), or None."""
        if k not in self.intervals:
            return None
        low, high = self.intervals[k]
        return (high - low) / 2

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly::

            {"top10": ..., "top25": ..., "percentile": ..., "num_classes": ...,
             "num_trajectories": ..., "num_skipped": ..., "num_rows": ...,
             "intervals": {"top10": {"low": ..., "high": ..., "half_width": ..., "bias": ...},
                           "top25": {...}},
             "bootstrap": {"resamples": 1000, "seed": 0, "confidence": 0.95,
                           "method": "centred-percentile", "unit": "trajectory within class"}}

        `intervals` and `bootstrap` are absent when the bootstrap was switched off.
        """
        out: dict[str, Any] = {top_key(k): float(v) for k, v in sorted(self.scores.items())}
        out.update(
            percentile=float(self.percentile),
            num_classes=int(self.num_classes),
            num_trajectories=int(self.num_trajectories),
            num_skipped=int(self.num_skipped),
            num_rows=int(self.num_rows),
        )
        if self.intervals and self.bootstrap is not None:
            out["intervals"] = {
                top_key(k): {"low": float(lo), "high": float(hi), "half_width": float(hi - lo) / 2,
                            "bias": float(self.bias.get(k, 0.0))}
                for k, (lo, hi) in sorted(self.intervals.items())}
            out["bootstrap"] = self.bootstrap.as_dict()
        return out


def firing_percentile(num_classes: int) -> float:
    """p = min((1 - 1/C) * 100, 95): the target firing rate is 100 - p percent, never below 5."""
    return min((1.0 - 1.0 / num_classes) * 100, 95)


def representation_invariance_score(
    features: Any,
    trajectories: Sequence[Hashable] | Any,
    classes: Sequence[Hashable] | Any | None = None,
    top_k: Sequence[int] = (10, 25),
    *,
    resamples: int = DEFAULT_RESAMPLES,
    bootstrap_seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
    max_block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> RISResult:
    """RIS_K of `features` (N x D) over `trajectories` (N ids), per class in `classes` (N labels).

    `classes=None` uses the trajectory id as the class (datasets without categories). A
    trajectory's class is the class of its first row, as in the authors' script.

    Each RIS_K comes with a `confidence` percentile bootstrap interval from `resamples`
    resamples of the trajectories within each class, drawn from `bootstrap_seed`
    (reproducible; `resamples=0` switches the intervals off). See ssl_core.measure.bootstrap.
    """
    check_bootstrap(resamples, bootstrap_seed, confidence)
    feat = _as_feature_matrix(features)
    n, d = feat.shape
    ks = _check_top_k(top_k, d)
    traj_codes, num_traj, traj_first = _factorize(trajectories, n, "trajectories")
    if classes is None:
        cls_codes, num_classes = traj_codes, num_traj
    else:
        cls_codes, num_classes, _ = _factorize(classes, n, "classes")
    if n < MIN_TRAJECTORY_ROWS:
        raise SslcError(
            f"RIS needs at least {MIN_TRAJECTORY_ROWS} feature rows, got {n}",
            hint=f"a trajectory counts only with >= {MIN_TRAJECTORY_ROWS} images; "
            "extract features for more images",
        )

    # Steps 1-2: percentile and the index of the threshold in each sorted column.
    p = firing_percentile(num_classes)
    idx = int((n * p) // 100)
    idx_neg = n - 1 - idx  # sorted descending at idx == sorted ascending at n-1-idx

    # Order trajectories by class (stable), rows by trajectory: both become contiguous runs.
    traj_class = cls_codes[traj_first]
    traj_rank = np.empty(num_traj, dtype=np.int64)
    traj_rank[np.argsort(traj_class, kind="stable")] = np.arange(num_traj)
    row_key = traj_rank[traj_codes]
    row_order = np.argsort(row_key, kind="stable")
    sizes = np.bincount(row_key, minlength=num_traj)  # rows per trajectory, in rank order
    traj_starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    used = sizes >= MIN_TRAJECTORY_ROWS
    num_used = int(used.sum())
    if num_used == 0:
        raise SslcError(
            f"no trajectory has at least {MIN_TRAJECTORY_ROWS} rows "
            f"({num_traj} trajectories, largest has {int(sizes.max())} rows)",
            hint="check that `trajectories` groups the images of one object/sequence under one id",
        )
    used_sizes = sizes[used].astype(np.float64)
    used_class = np.sort(traj_class)[used]  # non-decreasing: trajectories are in class order
    class_starts = np.flatnonzero(np.r_[True, used_class[1:] != used_class[:-1]])
    present_classes = used_class[class_starts]
    # the bootstrap keeps the counts of trajectories whose class has two or more
    per_class = np.diff(np.r_[class_starts, num_used])
    multi_traj = np.repeat(per_class >= 2, per_class)
    keep = np.flatnonzero(multi_traj) if resamples else np.empty(0, dtype=np.int64)
    count_dtype = np.uint16 if int(sizes.max()) < 2**16 else np.int32
    traj_counts = np.empty((len(keep), d), dtype=count_dtype)

    rows = None if bool(np.all(row_order[1:] > row_order[:-1])) else row_order
    block = int(max(1, min(d, max_block_bytes // max(1, n * feat.dtype.itemsize))))
    cols_t = np.empty((block, n), dtype=feat.dtype)

    global_firing = np.empty(d, dtype=np.float64)
    local = np.zeros((num_classes, d), dtype=np.float64)  # L before normalisation
    count = np.zeros((num_classes, d), dtype=np.float64)  # n
    for j in range(0, d, block):
        cols = slice(j, min(d, j + block))
        cols_t = _gather_transposed(feat, rows, cols, cols_t[: cols.stop - j])
        if not np.isfinite(cols_t).all():
            _raise_non_finite(feat)
        t_pos, t_neg = _thresholds(cols_t, idx, idx_neg)
        # Step 3: global firing of the positive sign (all rows, >=).
        global_firing[cols] = np.count_nonzero(cols_t >= t_pos[:, None], axis=1) / n
        # Step 5: per-trajectory counts of strict firing, both signs, best sign per neuron.
        a_pos = np.add.reduceat(
            (cols_t > t_pos[:, None]).view(np.uint8), traj_starts, axis=1, dtype=np.int32
        )
        a_neg = np.add.reduceat(
            (cols_t < t_neg[:, None]).view(np.uint8), traj_starts, axis=1, dtype=np.int32
        )
        a = np.maximum(a_pos, a_neg)[:, used]  # (b x U)
        if len(keep):
            traj_counts[:, cols] = a[:, keep].T
        frac = a / used_sizes  # 0 where a == 0, so summing everything == summing a > 0
        fired = (a > 0).view(np.uint8)
        local[present_classes, cols] = np.add.reduceat(frac, class_starts, axis=1).T
        count[present_classes, cols] = np.add.reduceat(
            fired, class_starts, axis=1, dtype=np.int64
        ).T

    # Step 6-8.
    local /= count + _EPS
    score = local / global_firing  # G >= (N - idx) / N > 0
    ranked = -np.sort(-score, axis=1)
    class_values = {k: ranked[:, :k].mean(axis=1) for k in ks}
    scores = {k: float(class_values[k].mean() * (100 - p)) for k in ks}
    intervals: dict[int, tuple[float, float]] = {}
    bias: dict[int, float] = {}
    if resamples:
        multi = per_class >= 2
        intervals, bias, _ = bootstrap_intervals(
            class_values=class_values,
            single_classes=present_classes[~multi],
            multi_classes=present_classes[multi],
            multi_starts=(np.cumsum(per_class[multi]) - per_class[multi]).astype(np.int64),
            traj_counts=traj_counts,
            traj_sizes=used_sizes[keep],
            global_firing=global_firing,
            scale=100 - p,
            ks=ks,
            resamples=int(resamples),
            seed=int(bootstrap_seed),
            confidence=float(confidence),
        )
    return RISResult(
        scores=scores,
        percentile=float(p),
        num_classes=int(num_classes),
        num_trajectories=num_used,
        num_skipped=int(num_traj - num_used),
        num_rows=int(n),
        intervals=intervals,
        bias=bias,
        bootstrap=BootstrapSettings(int(resamples), int(bootstrap_seed), float(confidence))
        if resamples else None,
    )


def _gather_transposed(
    feat: np.ndarray, rows: np.ndarray | None, cols: slice, out: np.ndarray
) -> np.ndarray:
    """out (b x N) = feat[rows, cols].T, in row tiles.

    Copying a tile of rows first (short contiguous reads) and transposing that small array
    is several times faster than one strided copy of the whole column slice.
    """
    n = feat.shape[0]
    for s in range(0, n, _ROW_TILE):
        e = min(n, s + _ROW_TILE)
        tile = feat[s:e, cols] if rows is None else feat[rows[s:e], cols]
        out[:, s:e] = np.ascontiguousarray(tile).T
    return out


def _thresholds(cols_t: np.ndarray, idx: int, idx_neg: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of `cols_t`: its idx-th and idx_neg-th smallest values, from one sort.

    One sort of contiguous rows gives both thresholds (sorted descending at idx is sorted
    ascending at N-1-idx). numpy's SIMD sort beats `np.partition` here: partition degrades
    badly on the many ties of ReLU features and pays again for the second k.
    """
    work = np.sort(cols_t, axis=1)
    return work[:, idx].copy(), work[:, idx_neg].copy()


def _as_feature_matrix(features: Any) -> np.ndarray:
    """A 2-D float32/float64 numpy view of a numpy array, torch tensor or nested list."""
    try:
        import torch

        if isinstance(features, torch.Tensor):
            t = features.detach().cpu()
            if t.dtype not in (torch.float32, torch.float64):
                t = t.to(torch.float32 if t.is_floating_point() else torch.float64)
            features = t.numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    try:
        arr = np.asarray(features)
    except (TypeError, ValueError) as exc:
        raise SslcError(
            f"features could not be read as a numeric matrix: {exc}",
            hint="pass an N x D numpy array or torch tensor",
        ) from exc
    if arr.ndim != 2:
        raise SslcError(
            f"features must be a 2-D N x D matrix, got shape {tuple(arr.shape)}",
            hint="flatten pooled features to one row per image (e.g. feats.reshape(len(feats), -1))",
        )
    if arr.dtype.kind not in "fiub":
        raise SslcError(
            f"features must be numeric, got dtype {arr.dtype}",
            hint="pass an N x D float array",
        )
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float32 if arr.dtype.kind == "f" else np.float64)
    if arr.shape[1] == 0:
        raise SslcError("features have 0 columns (D = 0)", hint="pass an N x D matrix with D >= 1")
    return arr


def _check_top_k(top_k: Sequence[int], d: int) -> list[int]:
    try:
        ks = [int(k) for k in top_k]
    except (TypeError, ValueError) as exc:
        raise SslcError(
            f"top_k must be a list of integers, got {top_k!r}", hint="e.g. top_k=(10, 25)"
        ) from exc
    if not ks:
        raise SslcError("top_k is empty", hint="e.g. top_k=(10, 25)")
    for k in ks:
        if k < 1:
            raise SslcError(f"top_k values must be >= 1, got {k}", hint="e.g. top_k=(10, 25)")
        if k > d:
            raise SslcError(
                f"top-K of {k} neurons is larger than the feature dimension D = {d}",
                hint=f"use K <= {d}, or features with more columns (the paper uses 2048-d)",
            )
    return sorted(set(ks))


def _factorize(ids: Any, n: int, name: str) -> tuple[np.ndarray, int, np.ndarray]:
    """Integer codes (0..U-1) for hashable ids, the number U, and each id's first row."""
    try:
        import torch

        if isinstance(ids, torch.Tensor):
            ids = ids.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    arr = np.asarray(ids) if isinstance(ids, np.ndarray) else None
    if arr is None:
        values = list(ids)
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        if len(values) and all(isinstance(v, int | np.integer) for v in values):
            arr = arr.astype(np.int64)
        elif len(values) and all(isinstance(v, str) for v in values):
            arr = arr.astype(str)
    if arr.ndim != 1:
        raise SslcError(
            f"{name} must be a flat sequence with one id per feature row, got shape {arr.shape}",
            hint=f"pass a list or 1-D array of length N = {n}",
        )
    if len(arr) != n:
        raise SslcError(
            f"{name} has {len(arr)} entries but features have {n} rows",
            hint=f"give exactly one {name[:-1] if name.endswith('es') else name} id per feature row",
        )
    if arr.dtype.kind in "iufUSb":
        if arr.dtype.kind == "f" and np.isnan(arr).any():
            raise SslcError(f"{name} contains NaN ids", hint="give every row a real id")
        _, first, codes = np.unique(arr, return_index=True, return_inverse=True)
        return codes.reshape(-1).astype(np.int64), len(first), first
    # Mixed or other hashable objects: factorize by first appearance.
    table: dict[Hashable, int] = {}
    try:
        codes = np.fromiter((table.setdefault(v, len(table)) for v in arr), dtype=np.int64, count=n)
    except TypeError as exc:
        raise SslcError(
            f"{name} ids must be hashable: {exc}", hint="use ints or strings as ids"
        ) from exc
    _, first = np.unique(codes, return_index=True)
    return codes, len(table), first


def _raise_non_finite(feat: np.ndarray) -> None:
    bad = 0
    step = max(1, (1 << 24) // max(1, feat.shape[1]))
    for s in range(0, feat.shape[0], step):
        bad += int((~np.isfinite(feat[s : s + step])).any(axis=1).sum())
    raise SslcError(
        f"features contain NaN or infinite values in {bad} of {feat.shape[0]} rows",
        hint="the encoder diverged or a feature file is corrupt; re-extract the features",
    )
