"""Pairs/s of sslc's training loader against the official MoCo-v2 loader, same files, same workers.

sslc: `Trainer.loader` (SeededItems over `aggressive-crop`'s pairs, RunSampler, persistent
prefetching workers) built by a real `ssl_core.run.trainer.Trainer`, with `augment_on: cpu` (the
whole augmentation in the workers) and, for reference, `augment_on: gpu` (the workers' share
only: decode, crop, parameter draws; uint8 out; the rest is `on_device`'s, timed by
bench_train_e2e.py on a GPU).

Baseline: the official MoCo-v2 loader (facebookresearch/moco `main_moco.py --aug-plus`): a plain
DataLoader(shuffle=True, drop_last=True) over an ImageFolder-like dataset whose items are
`TwoCropsTransform` of the v1 Compose (bench_augment.official_pipeline, re-implemented from
the facts).

Both read the same JPEGs (written once by the script, ImageNet-like 500x375 by default) with
the same batch size and number of workers, in the same run, in alternating rounds; each
loader's first `--warmup` batches (worker start-up) are left out.

    python benchmarks/bench_pipeline.py                       # 2 workers, batch 16, 224 px
    python benchmarks/bench_pipeline.py --workers 15 --batch 256 --batches 12
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_augment import official_pipeline  # noqa: E402


def _write_one(job: tuple[Path, int, int, int]) -> None:
    path, w, h, i = job
    rng = np.random.default_rng(i)
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    a = rng.uniform(0.5, 2.0, 3)
    img = np.stack([np.sin(a[0] * 6 * xx + i), np.cos(a[1] * 5 * yy), np.sin(a[2] * 4 * xx * yy)], -1) * 100 + 128
    for _ in range(4):
        x0, y0 = rng.integers(0, w - w // 4), rng.integers(0, h - h // 4)
        img[y0:y0 + h // 4, x0:x0 + w // 4] = rng.integers(0, 256, 3)
    img += rng.normal(0, 8, img.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)


def image_folder(root: Path, n: int, wh: tuple[int, int], classes: int = 8) -> list[Path]:
    """`n` photo-like JPEGs in ImageNet's class-per-folder layout, written once (in parallel)
    and reused while `root` holds them all."""
    paths = [root / f"c{i % classes}" / f"img{i:05d}.jpg" for i in range(n)]
    todo = [(p, wh[0], wh[1], i) for i, p in enumerate(paths) if not p.exists()]
    if todo:
        with multiprocessing.get_context("fork").Pool(max(1, os.cpu_count() or 1)) as pool:
            pool.map(_write_one, todo, chunksize=16)
    return paths


class OfficialImageFolder(torch.utils.data.Dataset):
    """ImageFolder(traindir, TwoCropsTransform(Compose(augmentation))): [query, key], target."""

    def __init__(self, paths: list[Path], size: int) -> None:
        self.paths = paths
        self.item = official_pipeline(size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[list[torch.Tensor], int]:
        return self.item(self.paths[index]), 0


def sslc_trainer(root: Path, size: int, batch: int, workers: int, steps: int, augment_on: str,
                 tmp: Path) -> Any:
    """A real Trainer over an image-folder dataset and `aggressive-crop`: its loader is the one
    `sslc run` trains from (the tiny model is never stepped here)."""
    from ssl_core.plugin.host import get_registry
    from ssl_core.recipe.schema import TrainConfig
    from ssl_core.run.trainer import Trainer

    reg = get_registry()
    dataset = reg.create("dataset", {"type": "image-folder", "root": str(root)})
    sampler = reg.create("pair-sampler", {"type": "aggressive-crop", "size": size, "augment_on": augment_on})
    pairs = sampler.pairs(dataset)
    objective = reg.create("objective", {"type": "moco-queue", "queue_size": batch * 4})
    objective.bind(reg.create("encoder", {"type": "resnet18"}))
    epochs = math.ceil(steps / (len(pairs) // batch))
    cfg = TrainConfig(dataset="-", pair_sampler={}, objective={}, batch_size=batch, epochs=epochs,
                      max_steps=steps, num_workers=workers, checkpoint_every=10**9)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return Trainer(objective, pairs, cfg, device=device, checkpoint_path=tmp / "checkpoint.pt",
                   fingerprint="bench", encoder_config={}, on_device=sampler.on_device)


def rate(batches: Iterable[Any], batch: int, warmup: int, timed: int) -> float:
    """Pairs/s over `timed` batches after `warmup` ones."""
    it = iter(batches)
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    for _ in range(timed):
        next(it)
    return timed * batch / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--source", default="500x375", help="JPEG width x height")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=None,
                    help="batches left out per loader (default: 2 x --workers, at least 2)")
    ap.add_argument("--batches", type=int, default=6, help="timed batches per loader and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=None, help="where the JPEGs live (kept); default: a temp dir")
    ap.add_argument("--no-gpu-mode", action="store_true", help="skip the augment_on: gpu worker figure")
    args = ap.parse_args(argv)
    # each worker prepares 2 batches ahead: a warm-up shorter than that times a full buffer
    # being drained, not the workers (an H200 run with 15 workers, 3 + 6 batches, printed 2.8x)
    if args.warmup is None:
        args.warmup = max(2, 2 * args.workers)
    elif args.workers and args.warmup < 2 * args.workers:
        ap.error(f"--warmup must be at least 2 x --workers ({2 * args.workers}) so the timed "
                 "batches are produced while timed, not prefetched before")
    wh = tuple(int(v) for v in args.source.split("x"))
    from ssl_core.kit.progress import set_quiet

    set_quiet(True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = args.dir or tmp / "images"
        paths = sorted(image_folder(root, args.images, wh))  # type: ignore[arg-type]
        steps = args.warmup + args.batches
        names = ["sslc (augment_on: cpu)", "official MoCo-v2"] + ([] if args.no_gpu_mode else
                                                                 ["sslc (augment_on: gpu), workers' share"])
        rates: dict[str, list[float]] = {n: [] for n in names}
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                if name.startswith("official"):
                    official = torch.utils.data.DataLoader(
                        OfficialImageFolder(paths, args.size), batch_size=args.batch, shuffle=True,
                        num_workers=args.workers, drop_last=True, pin_memory=torch.cuda.is_available())
                    loader: Iterable[Any] = (b for _ in range(steps) for b in official)  # epochs
                else:
                    mode = "gpu" if "gpu" in name else "cpu"
                    loader = sslc_trainer(root, args.size, args.batch, args.workers, steps, mode,
                                          tmp).loader(0)
                rates[name].append(rate(loader, args.batch, args.warmup, args.batches))
                del loader
    print(f"loader pairs/s: {args.images} JPEGs {args.source} -> {args.size} px, batch {args.batch}, "
          f"{args.workers} workers, {args.batches} batches x {args.rounds} rounds "
          f"(torch {torch.__version__}, {os.cpu_count()} CPUs)")
    base = float(np.mean(rates["official MoCo-v2"]))
    for name, rs in rates.items():
        mean = float(np.mean(rs))
        print(f"  {name:<40} {mean:>8.1f} pairs/s  ({' '.join(f'{x:.1f}' for x in rs)})  "
              f"{mean / base:.2f}x official")
    return 0


if __name__ == "__main__":
    sys.exit(main())
