"""Fixture writers for video datasets in their real on-disk formats (import as
`from videokit import ...`).

- mp4 files written by OpenCV (`cv2.VideoWriter`, fourcc mp4v), frame i a flat grey of
  `frame_level(i)`, so a decoded frame tells which frame it is (`frame_index`);
- truncated copies of them (the moov atom lost, as an interrupted download leaves them);
- sslc `*.tracks.json` sidecars;
- TrackingNet chunks as the devkit extracts them: `TRAIN_n/frames/<video>/<i>.jpg`
  (not zero-padded), `anno/<video>.txt` with one `x,y,w,h` line per frame, `zips/`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

#: frame (width, height) of the written videos and TrackingNet frames
VIDEO_SIZE = (64, 48)
MAX_FRAMES = 15  # distinct grey levels 8, 24, ..., 232


def frame_level(i: int) -> int:
    """The grey level frame i is written with."""
    if not 0 <= i < MAX_FRAMES:
        raise ValueError(f"videokit encodes at most {MAX_FRAMES} frames")
    return 8 + 16 * i


def frame_index(frame: np.ndarray) -> int:
    """Which frame a decoded (H, W, 3) image is (codec and JPEG shift levels by a few units)."""
    return int(round((float(np.asarray(frame).mean()) - 8) / 16))


def write_mp4(path: Path, num_frames: int = 12, size: tuple[int, int] = VIDEO_SIZE,
              fps: float = 10.0) -> Path:
    """An mp4 (mp4v) of `num_frames` flat grey frames, frame i at `frame_level(i)`."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    try:
        for i in range(num_frames):
            writer.write(np.full((size[1], size[0], 3), frame_level(i), dtype=np.uint8))
    finally:
        writer.release()
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut a file to `keep` of its bytes, as an interrupted copy or download leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def write_sidecar(video: Path, objects: Mapping[int, Sequence[Sequence[float] | None]], *,
                  size: tuple[int, int] | None = (VIDEO_SIZE[1], VIDEO_SIZE[0]),
                  fps: float = 10.0, num_frames: int | None = None,
                  category: str = "chair") -> Path:
    """`<video stem>.tracks.json` beside `video`: {object id: one [x1, y1, x2, y2] or None
    per frame}; `size` is (height, width) as in the format."""
    n = num_frames if num_frames is not None else len(next(iter(objects.values())))
    doc: dict[str, object] = {"num_frames": n, "fps": fps,
                              "objects": [{"id": oid, "category": category, "instance": oid,
                                           "boxes": [None if b is None else list(map(float, b))
                                                     for b in boxes]}
                                          for oid, boxes in objects.items()]}
    if size is not None:
        doc["size"] = list(size)
    path = video.with_name(video.stem + ".tracks.json")
    path.write_text(json.dumps(doc))
    return path


def trackingnet_box(i: int) -> tuple[float, float, float, float]:
    """The x, y, w, h box written for frame i of every TrackingNet fixture video."""
    return (1.5 + i, 2.0, 10.25, 8.0 + i)


def write_trackingnet_video(chunk: Path, name: str, num_frames: int, *,
                            anno_lines: int | None = None, size: tuple[int, int] = VIDEO_SIZE,
                            zip_file: bool = True) -> Path:
    """One video of a chunk: frames/<name>/0.jpg ..., anno/<name>.txt (`anno_lines` boxes,
    default one per frame), and an empty zips/<name>.zip placeholder."""
    folder = chunk / "frames" / name
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    for i in range(num_frames):
        Image.fromarray(np.full((h, w, 3), frame_level(i), dtype=np.uint8)).save(
            folder / f"{i}.jpg", quality=95)
    (chunk / "anno").mkdir(parents=True, exist_ok=True)
    lines = [",".join(f"{v:.2f}" for v in trackingnet_box(i))
             for i in range(num_frames if anno_lines is None else anno_lines)]
    (chunk / "anno" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    if zip_file:
        (chunk / "zips").mkdir(parents=True, exist_ok=True)
        (chunk / "zips" / f"{name}.zip").write_bytes(b"")
    return folder


def write_trackingnet(root: Path, chunks: Mapping[str, Mapping[str, int]]) -> Path:
    """A TrackingNet folder: {chunk folder name (TRAIN_0, TEST): {video: frame count}}.
    TEST annotations hold the first frame's box only, as in the release."""
    for chunk, videos in chunks.items():
        for name, frames in videos.items():
            write_trackingnet_video(root / chunk, name, frames,
                                    anno_lines=1 if chunk.upper() == "TEST" else None)
    return root
