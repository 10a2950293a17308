"""Time sslc's vectorised RIS against a straightforward per-trajectory loop, in one run.

The baseline is the plain implementation of the same 8 steps (as in the authors' script):
full column sorts for both thresholds, then a python loop over trajectories with numpy per
trajectory. Both must give the same numbers (to 1e-6) or the script exits 1.

Time is wall-clock and process CPU time (best of --repeat each; numpy runs single-threaded
here, and CPU time is the steadier figure on a shared machine). Memory is measured in a separate pass under
tracemalloc: "peak extra" is the largest amount of memory allocated by numpy/python during
the call on top of what existed before it (the input features are excluded); numpy reports
its array buffers to tracemalloc. The process max RSS (resource.getrusage) is printed too,
for the whole run (features included).

The bootstrap confidence intervals (1,000 resamples by default) are timed separately:
sslc with `resamples=0` (score only) against sslc with the intervals, so the table shows
what the intervals add. With `--classes 0` every trajectory is its own class (ALOI); with
`--classes 12` the trajectories share 12 classes (PASCAL3D+-like) and the bootstrap takes
its matrix-product path.

    python benchmarks/bench_ris.py --rows 100000 --dim 2048 --trajectories 1000
    python benchmarks/bench_ris.py --rows 72000 --trajectories 1000 --classes 12
    python benchmarks/bench_ris.py --quick
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from ssl_core.measure.ris import representation_invariance_score


def loop_baseline(
    feat: np.ndarray, traj: np.ndarray, classes: np.ndarray, top_k: tuple[int, ...]
) -> dict[int, float]:
    """The straightforward implementation: sorts, then one numpy pass per trajectory."""
    unique_classes = np.unique(classes)
    p = min((1.0 - 1.0 / len(unique_classes)) * 100, 95)
    n = feat.shape[0]
    idx = int((n * p) // 100)
    t_pos = np.sort(feat, axis=0)[idx]
    global_firing = np.mean(feat >= t_pos, axis=0)
    t_neg = (-np.sort(-feat, axis=0))[idx]
    local = np.zeros((len(unique_classes), feat.shape[1]))
    count = np.zeros((len(unique_classes), feat.shape[1]))
    for t in np.unique(traj):
        rows = np.where(traj == t)[0]
        if len(rows) < 3:
            continue
        ci = np.searchsorted(unique_classes, classes[rows[0]])
        block = feat[rows]
        a = np.maximum((block > t_pos).sum(axis=0), (block < t_neg).sum(axis=0))
        fired = a > 0
        local[ci, fired] += a[fired] / len(rows)
        count[ci, fired] += 1
    local = local / (count + 1e-20)
    ranked = -np.sort(-(local / global_firing), axis=1)
    return {k: float(ranked[:, :k].mean(axis=1).mean() * (100 - p)) for k in top_k}


def make_features(rows: int, dim: int, trajectories: int, classes: int, shuffle: bool, seed: int):
    """ReLU(trajectory centre + noise), float32, like pooled ResNet features; rows grouped."""
    rng = np.random.default_rng(seed)
    traj = np.sort(rng.integers(0, trajectories, rows))
    traj_class = rng.integers(0, classes, trajectories) if classes else np.arange(trajectories)
    centres = rng.standard_normal((trajectories, dim), dtype=np.float32)
    feat = np.empty((rows, dim), dtype=np.float32)
    step = 8192
    for s in range(0, rows, step):
        e = min(rows, s + step)
        noise = rng.standard_normal((e - s, dim), dtype=np.float32)
        np.maximum(centres[traj[s:e]] + noise, 0, out=feat[s:e])
    if shuffle:
        perm = rng.permutation(rows)
        feat, traj = feat[perm], traj[perm]
    return feat, traj, traj_class[traj]


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Best wall-clock and best process CPU time over `repeat` runs, and the result."""
    best, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu, out


def peak_extra_bytes(fn: Callable[[], Any]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def mib(b: int | None) -> str:
    return "-" if b is None else f"{b / 2**20:,.0f} MiB"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--trajectories", type=int, default=1000)
    ap.add_argument("--classes", type=int, default=0, help="0: each trajectory is its own class")
    ap.add_argument("--shuffle", action="store_true", help="rows not grouped by trajectory")
    ap.add_argument("--repeat", type=int, default=1, help="timing runs per method (best is kept)")
    ap.add_argument("--no-memory", action="store_true", help="skip the tracemalloc pass")
    ap.add_argument("--quick", action="store_true", help="small run: 6000 x 256, 100 trajectories")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples timed")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.dim, args.trajectories = 6000, 256, 100

    top_k = (10, 25)
    t0 = time.perf_counter()
    feat, traj, cls = make_features(
        args.rows, args.dim, args.trajectories, args.classes, args.shuffle, args.seed
    )
    print(
        f"features {feat.shape[0]} x {feat.shape[1]} float32 ({feat.nbytes / 2**20:.0f} MiB), "
        f"{len(np.unique(traj))} trajectories, {len(np.unique(cls))} classes, "
        f"rows {'shuffled' if args.shuffle else 'grouped'}; generated in {time.perf_counter() - t0:.1f} s"
    )

    def run_sslc() -> dict[int, float]:
        return representation_invariance_score(feat, traj, cls, top_k=top_k, resamples=0).scores

    def run_sslc_ci() -> Any:
        return representation_invariance_score(feat, traj, cls, top_k=top_k,
                                               resamples=args.resamples)

    def run_loop() -> dict[int, float]:
        return loop_baseline(feat, traj, cls, top_k)

    representation_invariance_score(feat[:64], traj[:64], top_k=(1,), resamples=0)  # imports
    t_sslc, c_sslc, s_sslc = timed(run_sslc, args.repeat)
    t_ci, c_ci, r_ci = timed(run_sslc_ci, args.repeat)
    t_loop, c_loop, s_loop = timed(run_loop, args.repeat)
    m_sslc = m_loop = None
    if not args.no_memory:
        m_sslc = peak_extra_bytes(run_sslc)
        m_loop = peak_extra_bytes(run_loop)

    diff = max(abs(s_sslc[k] - s_loop[k]) for k in top_k)
    diff = max(diff, max(abs(r_ci.scores[k] - s_loop[k]) for k in top_k))
    print()
    rows = [
        ("sslc vectorised", t_sslc, c_sslc, m_sslc, s_sslc),
        ("per-trajectory loop", t_loop, c_loop, m_loop, s_loop),
    ]
    print(
        "| method              | wall (s) | CPU (s) | peak extra memory (tracemalloc) | RIS@10    | RIS@25    |"
    )
    print(
        "|---------------------|---------:|--------:|--------------------------------:|----------:|----------:|"
    )
    for name, wall, cpu, mem, sc in rows:
        print(
            f"| {name:<19} | {wall:8.2f} | {cpu:7.2f} | {mib(mem):>31} | {sc[10]:9.4f} | {sc[25]:9.4f} |"
        )
    print()
    print(
        f"speedup: {t_loop / t_sslc:.1f}x wall, {c_loop / c_sslc:.1f}x CPU   "
        f"max |difference|: {diff:.2e}   (best of {args.repeat})"
    )
    ci = ", ".join(f"top-{k} [{lo:.2f}, {hi:.2f}] (bias {r_ci.bias[k]:+.2f})"
                   for k, (lo, hi) in sorted(r_ci.intervals.items()))
    print(f"with {args.resamples} bootstrap resamples: {t_ci:.2f} s wall, {c_ci:.2f} s CPU "
          f"(+{t_ci - t_sslc:.2f} s wall, +{c_ci - c_sslc:.2f} s CPU over the score alone); {ci}")
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"process max RSS (getrusage, whole run incl. features): {maxrss:,.0f} MiB")
    if diff > 1e-6:
        print("FAIL: sslc and the loop baseline disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
