"""Pairs/s of the aggressive-crop pipeline beside the official MoCo-v2 loader, one core, one run.

Baseline: what facebookresearch/moco's `main_moco.py --aug-plus` runs per image: torchvision's
`pil_loader` (open, convert to RGB), then `TwoCropsTransform` of the v1 `transforms.Compose`
[RandomResizedCrop(size, scale 0.2-1), RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p 0.8),
RandomGrayscale(0.2), RandomApply([GaussianBlur([0.1, 2.0])], p 0.5), RandomHorizontalFlip,
ToTensor, Normalize(ImageNet)], its GaussianBlur being PIL's `ImageFilter.GaussianBlur(radius=
sigma)` with sigma from `random.uniform` (re-implemented below from those facts).

sslc: `AggressiveCrop(...).pairs(dataset)[i]` on the same files, i.e. everything a training
item costs (ssl_core.load_rgb, crop, two views).

Both run on one core (torch.set_num_threads(1)), interleaved round by round so a busy
neighbour slows both alike. Item i of round r runs under torch.manual_seed(r, i) in both
(as the trainer seeds items), so both see the same first crop of every item and, over the
rounds, the same spread of crop sizes; rates are over all rounds, as process CPU time and
wall time. Before timing, both pipelines with the blur off must give the same tensors
(to 1e-6: sslc fuses ToTensor and Normalize) under the same torch seed, since they draw
the same numbers, or the script exits 1. The bar: sslc at least 90% of the official
pairs/s at each size (exit 1 otherwise).

    python benchmarks/bench_augment.py
    python benchmarks/bench_augment.py --quick
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter
from torchvision import transforms

from ssl_core import IMAGENET_MEAN, IMAGENET_STD, Dataset, ImageRecord
from sslc_plugins.aggressive_crop import AggressiveCrop, AggressiveCropParams

#: output side -> source image (width, height): ImageNet-like photos for 224 px, small
#: synthetic-world-like images for 48 px
SOURCES = {224: (500, 375), 48: (96, 72)}
BAR = 0.90


class OfficialGaussianBlur:
    """The official MoCo-v2 blur: PIL GaussianBlur(radius=sigma), sigma ~ random.uniform(0.1, 2.0)."""

    def __init__(self, sigma: tuple[float, float] = (0.1, 2.0)) -> None:
        self.sigma = sigma

    def __call__(self, x: Image.Image) -> Image.Image:
        return x.filter(ImageFilter.GaussianBlur(radius=random.uniform(*self.sigma)))


def official_pipeline(size: int, blur_p: float = 0.5) -> Callable[[Path], list[torch.Tensor]]:
    """pil_loader + TwoCropsTransform(Compose(augmentation)), as main_moco.py builds it."""
    t = transforms.Compose([
        transforms.RandomResizedCrop(size, scale=(0.2, 1.0)),
        transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        transforms.RandomGrayscale(p=0.2),
        transforms.RandomApply([OfficialGaussianBlur([0.1, 2.0])], p=blur_p),  # type: ignore[arg-type]
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    ])

    def item(path: Path) -> list[torch.Tensor]:
        with open(path, "rb") as f:
            img = Image.open(f).convert("RGB")
        return [t(img), t(img)]

    return item


class Files(Dataset):
    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def records(self, subset: str | None = None) -> list[ImageRecord]:
        return [ImageRecord(path=p) for p in self.paths]


def write_images(folder: Path, n: int, wh: tuple[int, int], seed: int) -> list[Path]:
    """JPEGs with photo-like content: smooth gradients, a few shapes, mild noise."""
    rng = np.random.default_rng(seed)
    w, h = wh
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    paths = []
    for i in range(n):
        a = rng.uniform(0.5, 2.0, 3)
        img = np.stack([np.sin(a[0] * 6 * xx + i), np.cos(a[1] * 5 * yy), np.sin(a[2] * 4 * xx * yy)],
                       -1) * 100 + 128
        for _ in range(4):
            x0, y0 = rng.integers(0, w - w // 4), rng.integers(0, h - h // 4)
            img[y0:y0 + h // 4, x0:x0 + w // 4] = rng.integers(0, 256, 3)
        img += rng.normal(0, 8, img.shape)
        path = folder / f"img{i:03d}.jpg"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def same_draws_without_blur(paths: list[Path], size: int) -> bool:
    """With blur off both pipelines draw the same torch numbers: their tensors must be equal."""
    ours = AggressiveCrop(AggressiveCropParams(size=size, blur_p=0.0)).pairs(Files(paths))
    official = official_pipeline(size, blur_p=0.0)
    for i in range(min(4, len(paths))):
        torch.manual_seed(i)
        a = ours[i]
        torch.manual_seed(i)
        b = official(paths[i])
        for ours_view, official_view in ((a["query"], b[0]), (a["key"], b[1])):
            if not torch.allclose(ours_view, official_view, atol=1e-6, rtol=0):
                return False
    return True


def time_round(fn: Callable[[int], Any], n: int, round_: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) for items 0..n-1, item i seeded by (round, i)."""
    cpu = wall = 0.0
    for i in range(n):
        torch.manual_seed(round_ * 100_003 + i)
        random.seed(round_ * 100_003 + i)
        c, w = time.process_time(), time.perf_counter()
        fn(i)
        cpu += time.process_time() - c
        wall += time.perf_counter() - w
    return cpu, wall


def bench(size: int, n: int, rounds: int, folder: Path) -> dict[str, float]:
    paths = write_images(folder, n, SOURCES[size], seed=size)
    if not same_draws_without_blur(paths, size):
        print(f"error: at {size} px the pipelines differ with the blur off", file=sys.stderr)
        sys.exit(1)
    pairs = AggressiveCrop(AggressiveCropParams(size=size)).pairs(Files(paths))
    official = official_pipeline(size)
    runs: dict[str, Callable[[int], Any]] = {
        "sslc": lambda i: pairs[i], "official": lambda i: official(paths[i])}
    total = {name: [0.0, 0.0] for name in runs}
    for fn in runs.values():  # warm-up, on seeds no round uses
        time_round(fn, min(n, 8), rounds)
    for r in range(rounds):
        for name, fn in (runs.items() if r % 2 == 0 else reversed(runs.items())):
            cpu, wall = time_round(fn, n, r)
            total[name][0] += cpu
            total[name][1] += wall
    return {f"{name}_{what}": n * rounds / t for name, (c, w) in total.items()
            for what, t in (("cpu", c), ("wall", w))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=64, help="images per size")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (summed)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 48], choices=sorted(SOURCES))
    ap.add_argument("--quick", action="store_true", help="16 images, 3 rounds")
    args = ap.parse_args(argv)
    if args.quick:
        args.images, args.rounds = 16, 3
    torch.set_num_threads(1)
    print(f"pairs/s on one core (torch {torch.__version__}, Pillow {Image.__version__}); "
          f"{args.images} JPEGs per size, {args.rounds} interleaved rounds")
    print(f"{'size':>5} {'source':>8} | {'sslc cpu':>9} {'official cpu':>12} {'ratio':>6} | "
          f"{'sslc wall':>9} {'official wall':>13} {'ratio':>6} | bar")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            folder = Path(tmp) / str(size)
            folder.mkdir()
            r = bench(size, args.images, args.rounds, folder)
            ratio_cpu = r["sslc_cpu"] / r["official_cpu"]
            ratio_wall = r["sslc_wall"] / r["official_wall"]
            passed = ratio_cpu >= BAR
            ok &= passed
            w, h = SOURCES[size]
            print(f"{size:>5} {f'{w}x{h}':>8} | {r['sslc_cpu']:>9.1f} {r['official_cpu']:>12.1f} "
                  f"{ratio_cpu:>6.2f} | {r['sslc_wall']:>9.1f} {r['official_wall']:>13.1f} "
                  f"{ratio_wall:>6.2f} | {'ok' if passed else 'FAIL'} (>= {BAR:.2f} of official)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
