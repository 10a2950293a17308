"""Img/s of sslc's trainer on real image files against the bare step on tensors already on the device.

sslc: `Trainer.fit` as `sslc run` builds it (registry components: `image-folder` dataset of
JPEGs written once by the script, `aggressive-crop` pairs with `--augment-on cpu|gpu`, the
encoder, `moco-queue`; the runner's `on_device=sampler.on_device`): its steady-state img/s
(pairs per second) after `--warmup` steps, and its data-wait fraction, from the
metrics.jsonl the loop writes.

Baseline: `Trainer.run_step` of the very same trainer (same model, batch, precision, image size,
memory format) on one normalised batch already on the device, timed with one device sync at
the end: the step with no data pipeline at all. The bar on a GPU (ResNet-50, 224 px,
batch 256, AMP): the fit at least 85% of it with one of the timed pipelines (exit 1
otherwise, with --bar): `augment_on: gpu` where the CPU pipeline cannot keep up.

Also printed for `augment_on: gpu`: the device time of `on_device` alone per batch.

    python benchmarks/bench_train_e2e.py                      # CPU: resnet18, 64 px, batch 8
    python benchmarks/bench_train_e2e.py --device cuda --arch resnet50 --size 224 --batch 256 \\
        --amp --augment-on gpu --workers 15 --warmup 30 --steps 60 --bar 0.85
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import image_folder  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(args: argparse.Namespace, augment_on: str, root: Path, tmp: Path) -> tuple[Any, Any]:
    """(Trainer, sampler) exactly as the runner wires them for a recipe with these settings."""
    from ssl_core.plugin.host import get_registry
    from ssl_core.recipe.schema import TrainConfig
    from ssl_core.run.seeding import seed_everything
    from ssl_core.run.trainer import Trainer

    reg = get_registry()
    seed_everything(0)
    dataset = reg.create("dataset", {"type": "image-folder", "root": str(root)})
    sampler = reg.create("pair-sampler", {"type": "aggressive-crop", "size": args.size,
                                          "augment_on": augment_on})
    pairs = sampler.pairs(dataset)
    objective = reg.create("objective", {"type": "moco-queue", "queue_size": args.queue, "dim": 128,
                                         "momentum": 0.999, "temperature": 0.2})
    objective.bind(reg.create("encoder", {"type": args.arch}))
    steps = args.warmup + args.steps
    cfg = TrainConfig(dataset="-", pair_sampler={}, objective={}, batch_size=args.batch, lr=0.03,
                      epochs=math.ceil(steps / (len(pairs) // args.batch)), max_steps=steps,
                      num_workers=args.workers, checkpoint_every=10**9,
                      precision="amp" if args.amp else "fp32")
    trainer = Trainer(objective, pairs, cfg, device=torch.device(args.device),
                      checkpoint_path=tmp / augment_on / "checkpoint.pt", fingerprint="bench",
                      encoder_config={}, on_device=sampler.on_device)
    return trainer, sampler


def fit_rate(trainer: Any, warmup: int) -> tuple[float, float]:
    """Steady-state img/s and data-wait fraction of Trainer.fit after `warmup` steps."""
    trainer.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    trainer.fit()
    log = trainer.checkpoint_path.parent / "metrics.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    timed = [r for r in records if r["event"] == "step" and r["step"] > warmup]
    wall = sum(r["step_s"] for r in timed)
    return len(timed) * trainer.cfg.batch_size / wall, sum(r["data_s"] for r in timed) / wall


def bare_rate(trainer: Any, args: argparse.Namespace) -> float:
    """Img/s of run_step on one batch already on the device (normalised floats)."""
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    shape = (args.batch, 3, args.size, args.size)
    batch = {k: torch.randn(shape, generator=g).to(device) for k in ("query", "key")}
    if trainer.channels_last:
        batch = {k: v.contiguous(memory_format=torch.channels_last) for k, v in batch.items()}
    for _ in range(max(2, args.warmup // 3)):
        trainer.run_step(batch)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        trainer.run_step(batch)
    _sync(device)
    return args.steps * args.batch / (time.perf_counter() - t0)


def on_device_ms(trainer: Any, sampler: Any, n: int = 10) -> dict[str, float]:
    """Milliseconds of `on_device` per batch on one real batch from the gpu-mode loader:
    wall time (host launch + device, synced), and the host's launch time alone (no sync)."""
    device = torch.device(trainer.device)
    batch = next(iter(torch.utils.data.DataLoader(
        trainer.pairs, batch_size=trainer.cfg.batch_size, shuffle=False,
        num_workers=min(trainer.cfg.num_workers, 4))))
    batch = {k: trainer._to_device(v) for k, v in batch.items()}

    def timed(fn: Any, sync: bool = True) -> float:
        fn()
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        if sync:
            _sync(device)
        ms = (time.perf_counter() - t0) / n * 1e3
        _sync(device)
        return ms

    return {"synced": timed(lambda: sampler.on_device(batch)),
            "host_launch": timed(lambda: sampler.on_device(batch), sync=False)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet34", "resnet50", "resnet101"])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    ap.add_argument("--augment-on", nargs="+", default=["gpu", "cpu"], choices=["gpu", "cpu"],
                    help="pipelines to time (each against the same bare step)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3, help="fit steps left out (workers start, cudnn tunes)")
    ap.add_argument("--steps", type=int, default=6, help="timed steps (fit and bare)")
    ap.add_argument("--images", type=int, default=0, help="JPEGs (default: 10 batches' worth)")
    ap.add_argument("--source", default="500x375", help="JPEG width x height")
    ap.add_argument("--queue", type=int, default=0, help="MoCo queue (default: 65536, or 16 batches on CPU)")
    ap.add_argument("--dir", type=Path, default=None,
                    help="image folder to write once and reuse (default: /tmp/sslc-bench-<source>-<n>)")
    ap.add_argument("--bar", type=float, default=None, help="exit 1 if a fit is below this share of the bare step")
    args = ap.parse_args(argv)
    from ssl_core.kit.progress import set_quiet

    set_quiet(True)
    args.images = args.images or 10 * args.batch
    args.queue = args.queue or (65536 if args.device.startswith("cuda") else 16 * args.batch)
    wh = tuple(int(v) for v in args.source.split("x"))
    root = args.dir or Path(tempfile.gettempdir()) / f"sslc-bench-{args.source}-{args.images}"
    t0 = time.perf_counter()
    image_folder(root, args.images, wh)  # type: ignore[arg-type]
    print(f"{args.images} JPEGs {args.source} in {root} ({time.perf_counter() - t0:.1f} s)")
    print(f"MoCo-v2, {args.arch}, batch {args.batch}, {args.size} px, {args.device}"
          f"{' amp' if args.amp else ' fp32'}, {args.workers} workers, {args.warmup} warm-up + "
          f"{args.steps} timed steps, torch {torch.__version__}, {torch.get_num_threads()} threads")
    shares: list[float] = []
    bare = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.augment_on:
            trainer, sampler = build(args, mode, root, Path(tmp))
            fit, wait = fit_rate(trainer, args.warmup)
            if not bare:
                bare = bare_rate(trainer, args)
                label = "bare step (run_step on device)"
                print(f"  {label:<34}{bare:>9.1f} img/s  ms/step {args.batch / bare * 1e3:.1f}")
            share = fit / bare
            passed = args.bar is None or share >= args.bar
            shares.append(share)
            verdict = "" if args.bar is None else f"  {'ok' if passed else 'FAIL'} (bar {args.bar:.0%})"
            label = f"Trainer.fit, augment_on: {mode}"
            print(f"  {label:<34}{fit:>9.1f} img/s  {share:.0%} of the bare step, data wait {wait:.0%}"
                  f"{verdict}")
            if mode == "gpu":
                ms = on_device_ms(trainer, sampler)
                print(f"    on_device (jitter, gray, blur, flip, normalise) per batch: "
                      f"{ms['synced']:.1f} ms (host launch alone {ms['host_launch']:.1f} ms)")
            del trainer, sampler
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    return 0 if args.bar is None or max(shares) >= args.bar else 1


if __name__ == "__main__":
    sys.exit(main())
