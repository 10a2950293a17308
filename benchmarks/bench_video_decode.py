"""Frames/s of sslc's batched video reads beside reading the same frames one at a time, in one run.

sslc: `ssl_core.read_frames(video, indices)`: one decord `VideoReader.get_batch` call per
video over the distinct indices in ascending order, then put back in the order asked (the
reader kept open between calls, as in training); once a video's reads have cost as many
decoded frames as it has, the whole video decoded once and later reads served from memory
(`DecodedVideos`). The row "sslc, no decoded-video cache" is the same reader with that
cache off, so the two rows show what the cache buys over `--rounds` reads per video.
Baseline: a decord `VideoReader` (opened once per video, `num_threads=1` like sslc's)
read frame by frame, `reader[i].asnumpy()` for each index in the order asked, as a loop over
a sampler's frames would. Two more rows show where the difference comes from: `get_batch`
in the order asked (no sorting), and frame by frame in ascending order. Every method
has its own readers: a reader's position after one read changes what the next costs.

Videos: `--videos` mp4 files of `--frames` frames at `--size` (default 8 x 120 frames at
320x240), written with OpenCV (fourcc mp4v, as tests/videokit.py does) into `--dir`, and
reused when they are already there. For each k in `--k`, each round draws k distinct frame
indices per video (numpy, seeded; in random order, as a pair sampler asks for a query and a
key) and reads them every way, rotating which goes first, so a busy neighbour slows all
alike. All must return identical pixels or the script exits 1. Rates are frames returned
per second of process CPU time (the steadier figure on a shared machine) and of wall time,
over all rounds.

    python benchmarks/bench_video_decode.py
    python benchmarks/bench_video_decode.py --quick --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ssl_core import VideoRecord, read_frames
from ssl_core.kit.video import DecodedVideos


def write_videos(folder: Path, count: int, frames: int, size: tuple[int, int], fps: float) -> list[Path]:
    """`count` mp4 (mp4v) files of moving noise-and-gradient frames; existing ones are reused."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    paths = []
    rng = np.random.default_rng(0)
    base = (np.add.outer(np.arange(h), np.arange(w)) % 256).astype(np.uint8)
    for v in range(count):
        path = folder / f"video_{v:02d}_{frames}f_{w}x{h}.mp4"
        paths.append(path)
        if path.is_file() and path.stat().st_size > 0:
            continue
        tmp = path.with_suffix(".partial.mp4")
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
        for i in range(frames):
            img = np.roll(base, 3 * i + 17 * v, axis=1)[:, :, None].repeat(3, axis=2).copy()
            noise = rng.integers(0, 32, (h // 8, w // 8, 3), dtype=np.uint8)
            img += np.kron(noise, np.ones((8, 8, 1), dtype=np.uint8))[:h, :w]
            writer.write(img)
        writer.release()
        tmp.rename(path)
    return paths


def frame_by_frame(reader: Any, indices: list[int]) -> np.ndarray:
    """The baseline: one decord read per frame."""
    return np.stack([reader[i].asnumpy() for i in indices])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--frames", type=int, default=120, help="frames per video")
    ap.add_argument("--size", type=int, nargs=2, default=[320, 240], metavar=("W", "H"))
    ap.add_argument("--k", type=int, nargs="+", default=[2, 8, 32], help="frames read per video per call")
    ap.add_argument("--rounds", type=int, default=5, help="draws of k frames per video (summed)")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "sslc-bench-video",
                    help="where the videos are written (and reused from)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="4 videos x 60 frames, 2 rounds")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = ap.parse_args(argv)
    if args.quick:
        args.videos, args.frames, args.rounds = 4, 60, 2
    if any(k > args.frames for k in args.k):
        ap.error("every --k must be at most --frames")

    import decord

    w, h = args.size
    paths = write_videos(args.dir, args.videos, args.frames, (w, h), 30.0)
    records = [VideoRecord(name=p.name, source=p, num_frames=args.frames) for p in paths]
    cache, off = DecodedVideos(), DecodedVideos(budget_bytes=0)
    methods: dict[str, Any] = {
        "sslc read_frames": lambda rec, reader, idx: read_frames(rec, idx, cache=cache),
        "sslc, no decoded-video cache": lambda rec, reader, idx: read_frames(rec, idx, cache=off),
        "frame by frame": lambda rec, reader, idx: frame_by_frame(reader, idx),
        "get_batch, order asked": lambda rec, reader, idx: reader.get_batch(idx).asnumpy(),
        "frame by frame, ascending": lambda rec, reader, idx: frame_by_frame(
            reader, sorted(idx))[np.argsort(np.argsort(idx))],
    }
    # each baseline its own reader per video (a reader's position after one read changes what
    # the next read costs, so readers are never shared between methods); sslc keeps its own
    readers = {m: [decord.VideoReader(str(p), num_threads=1) for p in paths] for m in methods}
    for v, rec in enumerate(records):  # open and warm every path
        for m in methods:
            assert len(readers[m][v]) == args.frames, f"{rec.source}: {len(readers[m][v])} frames"
            methods[m](rec, readers[m][v], [0])
    rng = np.random.default_rng(args.seed)
    results = []
    for k in args.k:
        wall = dict.fromkeys(methods, 0.0)
        cpu = dict.fromkeys(methods, 0.0)
        decoded = 0
        for r in range(args.rounds):
            for v, rec in enumerate(records):
                idx = [int(i) for i in rng.choice(args.frames, size=k, replace=False)]
                names = list(methods)
                shift = (r + v) % len(names)
                out: dict[str, np.ndarray] = {}
                for name in names[shift:] + names[:shift]:
                    t0, c0 = time.perf_counter(), time.process_time()
                    out[name] = np.asarray(methods[name](rec, readers[name][v], idx))
                    wall[name] += time.perf_counter() - t0
                    cpu[name] += time.process_time() - c0
                ref = out["frame by frame"]
                if any(not np.array_equal(a, ref) for a in out.values()):
                    print(f"FAIL: {rec.source} frames {idx}: the reads differ", file=sys.stderr)
                    return 1
                decoded += k
        results.append({
            "k": k, "frames_read": decoded,
            "fps_cpu": {m: decoded / max(cpu[m], 1e-9) for m in methods},
            "fps_wall": {m: decoded / wall[m] for m in methods},
            "speedup_cpu": cpu["frame by frame"] / max(cpu["sslc read_frames"], 1e-9),
            "speedup_wall": wall["frame by frame"] / wall["sslc read_frames"],
        })

    summary = {"videos": args.videos, "frames_per_video": args.frames, "size": [w, h],
               "codec": "mp4v", "rounds": args.rounds, "decord": decord.__version__,
               "results": results}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{args.videos} videos x {args.frames} frames at {w}x{h} (mp4v), {args.rounds} rounds, "
          f"decord {decord.__version__}, one decoding thread; frames/s, CPU time (wall time)")
    print()
    print("| k  | frames | " + " | ".join(f"{m:>26}" for m in methods) + " | sslc / frame by frame |")
    print("|---:|-------:|" + "|".join("-" * 27 + ":" for _ in methods) + "|----------------------:|")
    for res in results:
        cells = " | ".join(f"{res['fps_cpu'][m]:>14.1f} ({res['fps_wall'][m]:>7.1f})"
                           for m in methods)
        print(f"| {res['k']:>2} | {res['frames_read']:>6} | {cells} | "
              f"{res['speedup_cpu']:>7.2f}x ({res['speedup_wall']:.2f}x wall) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
