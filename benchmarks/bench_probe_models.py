"""Probing N models in one `sslc probe` command against N separate commands: wall time and
scores.

Baseline: N separate `sslc probe --checkpoint C` commands, one per model, the way a user
compared checkpoints before `--checkpoint` could be repeated. Both start from an empty
feature cache of their own, on the same data (an image folder written here) and probes
(the `transform` probe: rotation by 0, 90, 180 and 270 degrees), so the difference is what one command
shares: one interpreter and torch start-up, the probes' trajectories built once, and each
image decoded once for all models (the prepared pixels). The scores must be identical;
exit 1 otherwise.

    python benchmarks/bench_probe_models.py
    python benchmarks/bench_probe_models.py --models 5 --images 64
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _data(root: Path, images: int, models: int) -> list[str]:
    import numpy as np
    import torch
    import torchvision
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(images):
        folder = root / "images" / f"c{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    checkpoints = []
    for m in range(models):
        torch.manual_seed(m)
        path = root / f"resnet18-{m}.pth"
        torch.save(torchvision.models.resnet18().state_dict(), path)
        checkpoints.append(str(path))
    return checkpoints


def _probe(checkpoints: list[str], root: Path, cache: Path) -> tuple[float, list[dict]]:
    """One `sslc probe` command; its wall time and each model's rows."""
    cmd = [sys.executable, "-m", "ssl_core.cli", "probe", "--json", "--quiet", "--workers", "0",
           "--probe", "transform", "--option", "sweep=rotation", "--option", "image_size=64",
           "--data", str(root / "images"), "--top-k", "10", "--resamples", "200"]
    for c in checkpoints:
        cmd += ["--checkpoint", c]
    start = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         env={**os.environ, "SSLC_CACHE_DIR": str(cache)})
    wall = time.perf_counter() - start
    doc = json.loads(out.stdout)
    models = doc.get("models", [doc])
    return wall, [{"checkpoint": m["source"]["checkpoint"],
                   "top10": [r["top10"] for r in m["probes"]]} for m in models]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--images", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoints = _data(root, args.images, args.models)
        separate_wall, separate = 0.0, []
        for i, c in enumerate(checkpoints):
            wall, rows = _probe([c], root, root / f"cache-separate-{i}")
            separate_wall += wall
            separate += rows
        one_wall, one = _probe(checkpoints, root, root / "cache-one")
    print(f"{args.models} ResNet-18 checkpoints x transform probe (rotation, 4 values) on "
          f"{args.images} images at 64 px, CPU, empty caches")
    print(f"  baseline: {args.models} separate commands  {separate_wall:7.1f} s")
    print(f"  one command, {args.models} --checkpoint       {one_wall:7.1f} s  "
          f"({separate_wall / one_wall:.2f}x faster)")
    same = separate == one
    print(f"  scores identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
