"""Region features for tracking: ROI pooling (one forward per frame) vs one forward per region.

The selective-search tracker needs a feature vector for each of R regions of every tracked
frame. Measured: what the tracker does (`sslc_plugins.region_tracker.features.RegionFeatures`):
each frame goes through the encoder once (several frames per batch) and every region is
ROI-pooled out of its layer3 map. Baseline: the R-CNN way, each region cropped from the
frame, resized to `--crop-size` and forwarded alone, its layer3 map averaged. Same frames,
same regions (selective search, filtered as the tracker does; not timed), same encoder,
same process. The issue's bar: ROI pooling at least 5x the frames/s of per-region crops.

    python benchmarks/bench_tracker.py                          # synthetic 360x640 frames
    python benchmarks/bench_tracker.py --video clip.mp4 --arch resnet50 --device cuda --json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from ssl_core import Encoder, VideoRecord, inspect_video, read_frames
from ssl_core.plugin.host import get_registry
from sslc_plugins.region_tracker.features import RegionFeatures, frames_to_input
from sslc_plugins.region_tracker.proposals import filter_regions, selective_search


def synthetic_frames(count: int, height: int = 360, width: int = 640, seed: int = 0) -> np.ndarray:
    """Coloured rectangles moving over a blocky, noisy background: uint8 (N, H, W, 3)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(40, 160, (height // 16 + 1, width // 16 + 1, 3)).astype(np.uint8)
    background = np.repeat(np.repeat(blocks, 16, axis=0), 16, axis=1)[:height, :width]
    background = np.clip(background + rng.integers(-12, 12, background.shape), 0, 255)
    objects = [(rng.integers(0, 255, 3), rng.integers(40, 120, 2), rng.integers(0, 200, 2),
                rng.uniform(-6, 6, 2)) for _ in range(6)]
    frames = []
    for t in range(count):
        frame = background.copy()
        for colour, (w, h), (x0, y0), (vx, vy) in objects:
            x, y = int(x0 + vx * t) % (width - w), int(y0 + vy * t) % (height - h)
            frame[y:y + h, x:x + w] = colour
        frames.append(frame.astype(np.uint8))
    return np.stack(frames)


def video_frames(path: Path, count: int) -> np.ndarray:
    num_frames, _, _ = inspect_video(path)
    video = VideoRecord(name=path.stem, source=path, num_frames=num_frames)
    picks = np.linspace(0, num_frames - 1, min(count, num_frames)).round().astype(int)
    return read_frames(video, picks.tolist())


@torch.no_grad()
def per_region_crops(encoder: Encoder, frames: np.ndarray, boxes: list[np.ndarray],
                     crop_size: int, device: torch.device) -> tuple[list[np.ndarray], int]:
    """The baseline: crop each region, resize it to crop_size x crop_size, forward it alone,
    average its layer3 map. Returns the vectors per frame and the number of forwards."""
    out, forwards = [], 0
    for frame, frame_boxes in zip(frames, boxes, strict=True):
        vectors = []
        for x1, y1, x2, y2 in np.asarray(frame_boxes).round().astype(int):
            crop = frame[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)]
            x = frames_to_input(crop[None], crop_size, device)
            x = F.interpolate(x, size=(crop_size, crop_size), mode="bilinear", align_corners=False)
            forwards += 1
            vectors.append(F.normalize(encoder.feature_maps(x)["layer3"].mean(dim=(2, 3)), dim=1))
        out.append(torch.cat(vectors).cpu().numpy() if vectors else np.zeros((0, 0)))
    return out, forwards


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--video", type=Path, help="read frames from this video (default: synthetic)")
    ap.add_argument("--frames", type=int, default=8, help="frames to featurize")
    ap.add_argument("--regions", type=int, default=16, help="R: regions per frame")
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--feature-size", type=int, default=224,
                    help="ROI: the frame's shorter side at the encoder's input")
    ap.add_argument("--crop-size", type=int, default=224, help="baseline: side of each region crop")
    ap.add_argument("--batch-frames", type=int, default=8, help="ROI: frames per forward")
    ap.add_argument("--roi-op", default="roi_pool", choices=("roi_pool", "roi_align"))
    ap.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    frames = video_frames(args.video, args.frames) if args.video else synthetic_frames(args.frames)
    boxes = [filter_regions(selective_search(f, 256), f.shape[:2], args.regions, min_area=0.01,
                            max_area=0.5, max_aspect=4.0, nms_iou=0.7, order="proposal")
             for f in frames]
    n_regions = sum(len(b) for b in boxes)
    torch.manual_seed(0)
    encoder = get_registry().create("encoder", {"type": args.arch}).eval().to(device)
    roi = RegionFeatures(encoder, device, args.feature_size, args.roi_op, 7, args.batch_frames)

    # warm-up (allocator, cudnn autotune) on one frame, not timed
    roi(frames[:1], boxes[:1])
    per_region_crops(encoder, frames[:1], boxes[:1], args.crop_size, device)
    roi.forwards = 0

    sync(device)
    t0 = time.perf_counter()
    roi(frames, boxes)
    sync(device)
    t_roi = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, crop_forwards = per_region_crops(encoder, frames, boxes, args.crop_size, device)
    sync(device)
    t_crop = time.perf_counter() - t0

    n = len(frames)
    h, w = frames.shape[1:3]
    result = {
        "frames": n, "frame_size": [int(h), int(w)], "regions": n_regions,
        "regions_per_frame": n_regions / n, "arch": args.arch, "device": str(device),
        "torch_threads": torch.get_num_threads(), "feature_size": args.feature_size,
        "crop_size": args.crop_size, "roi_op": args.roi_op,
        "roi": {"seconds": t_roi, "frames_per_s": n / t_roi, "forwards": roi.forwards},
        "per_region_crops": {"seconds": t_crop, "frames_per_s": n / t_crop,
                             "forwards": crop_forwards},
        "speedup": t_crop / t_roi, "bar": 5.0,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    table = Table(title=f"region features: {n} frames {h}x{w} "
                        f"({args.video or 'synthetic'}), {n_regions / n:.1f} regions/frame, "
                        f"{args.arch}, {device}, {torch.get_num_threads()} torch threads")
    for col in ("method", "forwards", "seconds", "frames/s", "speed-up"):
        table.add_column(col, justify="left" if col == "method" else "right")
    table.add_row(f"crop + resize {args.crop_size} + forward per region (baseline)",
                  str(crop_forwards), f"{t_crop:.2f}", f"{n / t_crop:.2f}", "1.00x")
    table.add_row(f"{args.roi_op} on layer3, one forward per {args.batch_frames} frames "
                  f"(short side {args.feature_size})", str(roi.forwards), f"{t_roi:.2f}",
                  f"{n / t_roi:.2f}", f"{t_crop / t_roi:.2f}x")
    console = Console()
    console.print(table)
    verdict = "meets" if result["speedup"] >= 5.0 else "MISSES"
    console.print(f"ROI pooling is {result['speedup']:.1f}x per-region crops ({verdict} the 5x bar)")


if __name__ == "__main__":
    main()
