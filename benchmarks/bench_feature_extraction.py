"""Feature extraction speed: batched DataLoader extraction vs one image at a time.

Baseline: the simple loop a probing script would write (open an image, preprocess it,
forward it alone). Measured: `ssl_core.measure.features.extract_features` (batches, DataLoader
workers decoding images in parallel), in NCHW and in NHWC (`channels_last`, its default
on CPU), each decoding the images; and once more in NHWC with the images' pixels already
prepared in memory by the run before (`ssl_core.measure.features.PREPARED`), which is what every
model after the first sees when a recipe probes several. All run in the same process on
the same encoder and the same ALOI viewpoint images, and must give the same features.

    python benchmarks/bench_feature_extraction.py                 # synthetic world (small)
    python benchmarks/bench_feature_extraction.py --data /data/aloi --arch resnet50
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from ssl_core.interfaces import ImageRecord, ProbeItem, ProbeSet
from ssl_core.measure import features
from ssl_core.measure.features import (
    PreparedPixels,
    build_transform,
    crop_box,
    default_device,
    extract_features,
    load_rgb,
)
from ssl_core.plugin.host import get_registry

_VIEW = re.compile(r"^(\d+)_r(\d+)\.png$")


def synthworld_aloi_root(size: str = "small") -> Path:
    """Render (once, cached) the synthetic world and return its ALOI folder."""
    world = get_registry().create("dataset", {"type": "synthworld", "size": size})
    world.prepare()
    return Path(world.root) / "aloi"


def aloi_view_probe_set(root: Path, image_size: int, limit: int | None) -> ProbeSet:
    """aloi_red2_view/{obj}/{obj}_r{angle}.png as a ProbeSet (one trajectory per object)."""
    reg = get_registry()
    if "aloi-viewpoint" in reg.names("invariance-probe"):
        probe = reg.create("invariance-probe", {"type": "aloi-viewpoint", "image_size": image_size})
        dataset = reg.create("dataset", {"type": probe.dataset_type, "root": str(root)})
        dataset.prepare()
        ps = probe.build(dataset)
    else:  # the aloi plugin is not installed: read the layout directly
        folder = root / "aloi_red2_view"
        items = []
        for obj_dir in sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: int(p.name)):
            files = [(int(m.group(2)), f) for f in obj_dir.iterdir() if (m := _VIEW.match(f.name))]
            for _, f in sorted(files):
                items.append(ProbeItem(ImageRecord(path=f, label=obj_dir.name, group=obj_dir.name),
                                       trajectory=obj_dir.name, label=obj_dir.name))
        if not items:
            sys.exit(f"no ALOI viewpoint images under {folder}")
        ps = ProbeSet("aloi-viewpoint", items, (image_size, image_size))
    if limit:
        ps = ProbeSet(ps.probe, list(ps.items)[:limit], ps.image_size)
    return ps


def one_at_a_time(encoder: torch.nn.Module, ps: ProbeSet, device: torch.device) -> np.ndarray:
    """The baseline: open, preprocess and forward each image alone."""
    transform = build_transform(ps.image_size)
    out = []
    with torch.inference_mode():
        for item in ps.items:
            rec = item.record
            x = transform(crop_box(load_rgb(rec.path), rec.box, rec.path))
            out.append(encoder(x[None].to(device)).float().cpu().numpy()[0])
    return np.stack(out).astype(np.float32)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, help="ALOI root holding aloi_red2_view/ "
                    "(default: the synthetic world's aloi folder)")
    ap.add_argument("--world-size", default="small", help="synthworld size when --data is absent")
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N images (0: all)")
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)

    root = args.data or synthworld_aloi_root(args.world_size)
    ps = aloi_view_probe_set(root, args.image_size, args.limit or None)
    device = torch.device(args.device) if args.device else default_device()
    torch.manual_seed(0)
    encoder = get_registry().create("encoder", {"type": args.arch}).eval().to(device)
    n = len(ps.items)

    # warm-up (allocator, cudnn autotune, page cache) on a few images, not timed
    warm = ProbeSet(ps.probe, list(ps.items)[: min(8, n)], ps.image_size)
    extract_features(encoder, warm, batch_size=8, device=device, progress=False)
    one_at_a_time(encoder, warm, device)

    t0 = time.perf_counter()
    base = one_at_a_time(encoder, ps, device)
    t_base = time.perf_counter() - t0
    timed: dict[str, tuple[float, np.ndarray]] = {}
    for name, nhwc, fresh in (("NCHW", False, True), ("NHWC", True, True),
                              ("NHWC, pixels prepared before", True, False)):
        if fresh:  # nothing prepared: this run decodes every image
            features.PREPARED = PreparedPixels()
        t0 = time.perf_counter()
        feats = extract_features(encoder, ps, batch_size=args.batch_size, num_workers=args.workers,
                                 device=device, progress=False, channels_last=nhwc)
        timed[name] = (time.perf_counter() - t0, feats)
    same = all(np.allclose(f, base, rtol=1e-3, atol=1e-4) for _, f in timed.values())
    max_diff = max(float(np.abs(f - base).max()) for _, f in timed.values())

    table = Table(title=f"feature extraction: {n} ALOI images ({root}), {args.arch}, "
                        f"{ps.image_size[0]}x{ps.image_size[1]}, {device}, "
                        f"{torch.get_num_threads()} torch threads")
    for col in ("method", "seconds", "images/s", "speed-up"):
        table.add_column(col, justify="left" if col == "method" else "right")
    table.add_row("one image at a time (baseline)", f"{t_base:.2f}", f"{n / t_base:.1f}", "1.00x")
    for name, (seconds, _) in timed.items():
        table.add_row(f"extract_features (batch {args.batch_size}, {args.workers} workers, {name})",
                      f"{seconds:.2f}", f"{n / seconds:.1f}", f"{t_base / seconds:.2f}x")
    console = Console()
    console.print(table)
    console.print(f"same features: {same} (max abs difference {max_diff:.2e})")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
