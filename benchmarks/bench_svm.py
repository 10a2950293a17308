"""The VOC07 SVM sweep (every class x every cost, 3-fold CV, refit, test AP) with classes
in parallel (joblib, `--jobs`) against one class at a time, on the same features: the APs
must be identical; both wall times are printed from the same run.

    python benchmarks/bench_svm.py                       # 20 classes, 5011/4952 x 512 (VOC07-sized)
    python benchmarks/bench_svm.py --train 600 --test 600 --dim 128 --costs 0.1,1,10   # quick
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from sslc_plugins.voc07_svm import DEFAULT_COSTS, svm_sweep


def synthetic(n: int, classes: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Multi-label features: each image shows 1-3 classes; features sum their centres + noise;
    about 5% of the positives are marked difficult (0), as in VOC07."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(1234).normal(size=(classes, dim))
    t = -np.ones((n, classes), dtype=np.int8)
    x = rng.normal(scale=1.5, size=(n, dim))
    for i in range(n):
        present = rng.choice(classes, size=rng.integers(1, 4), replace=False)
        t[i, present] = np.where(rng.random(len(present)) < 0.05, 0, 1)
        x[i] += centres[present].sum(axis=0)
    return np.maximum(x, 0).astype(np.float32), t  # post-ReLU-like, as pooled features


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=5011)
    ap.add_argument("--test", type=int, default=4952)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--costs", default=",".join(str(c) for c in DEFAULT_COSTS))
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    costs = [float(c) for c in args.costs.split(",")]
    x, t = synthetic(args.train, args.classes, args.dim, 0)
    xt, tt = synthetic(args.test, args.classes, args.dim, 1)

    start = time.perf_counter()
    sequential = svm_sweep(x, t, xt, tt, costs=costs, n_jobs=1)
    t_seq = time.perf_counter() - start
    start = time.perf_counter()
    parallel = svm_sweep(x, t, xt, tt, costs=costs, n_jobs=args.jobs)
    t_par = time.perf_counter() - start

    same = np.array_equal(sequential["ap"], parallel["ap"], equal_nan=True)
    print(f"features: train {x.shape}, test {xt.shape}; {args.classes} classes x {len(costs)} costs, 3-fold CV")
    print(f"one class at a time (n_jobs=1):   {t_seq:8.1f} s   mAP {np.nanmean(sequential['ap']) * 100:.2f}")
    print(f"classes in parallel (n_jobs={args.jobs}): {t_par:8.1f} s   mAP {np.nanmean(parallel['ap']) * 100:.2f}")
    print(f"speed-up x{t_seq / t_par:.2f}; per-class APs identical: {same}")
    if not same:
        raise SystemExit("the parallel sweep changed the APs")


if __name__ == "__main__":
    main()
