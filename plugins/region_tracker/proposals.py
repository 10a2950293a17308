"""Unsupervised region proposals: OpenCV's selective search (fast mode), then filtered.

The paper divides each frame into R regions "using an off-the-shelf unsupervised region
proposal method" (selective search, its reference [42]). Selective search returns
hundreds to thousands of boxes, many tiny, sliver-shaped or near duplicates; the filter
keeps R boxes worth tracking: size between `min_area` and `max_area` of the frame,
aspect ratio at most `max_aspect`, near duplicates removed (greedy NMS at `nms_iou`),
then the first R in selective search's own ranking (`order: proposal`) or the R
largest (`order: largest`).
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any, Literal

import numpy as np
import torch
from torchvision.ops import nms

Order = Literal["proposal", "largest"]


@functools.cache
def _libc() -> Any:
    """The C library's symbols (rand/srand) as this process resolves them (None where they
    cannot be loaded this way, e.g. Windows: proposals then rank differently run to run)."""
    try:
        return ctypes.CDLL(None)
    except (OSError, TypeError):
        return None


def selective_search(frame: np.ndarray, max_side: int, base_k: int = 150, inc_k: int = 150,
                     sigma: float = 0.8, seed: int = 0) -> np.ndarray:
    """Selective search (fast mode) boxes of an RGB uint8 (H, W, 3) frame, in its ranking
    order, as float32 (N, 4) x1, y1, x2, y2 in the frame's pixels.

    Frames whose longer side exceeds `max_side` are searched downscaled (the search's cost
    grows faster than the pixel count) and the boxes scaled back."""
    import cv2  # opencv-contrib: cv2.ximgproc; imported here so loading the plugin stays fast

    h, w = frame.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    image = np.ascontiguousarray(frame[:, :, ::-1])  # OpenCV wants BGR
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    # OpenCV ranks the proposals with C's rand() (rank = rand() * hierarchy level): seeding it
    # per frame makes a frame's regions the same whatever ran before (reproducible tracks)
    libc = _libc()
    if libc is not None:
        libc.srand(seed)
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(image)
    search.switchToSelectiveSearchFast(base_k, inc_k, sigma)
    rects = np.asarray(search.process(), dtype=np.float32).reshape(-1, 4)  # x, y, w, h
    boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
    sx, sy = w / image.shape[1], h / image.shape[0]
    boxes *= np.asarray([sx, sy, sx, sy], dtype=np.float32)
    return np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)


def filter_regions(boxes: np.ndarray, frame_hw: tuple[int, int], num: int, *,
                   min_area: float, max_area: float, max_aspect: float, nms_iou: float,
                   order: Order) -> np.ndarray:
    """At most `num` of `boxes` (ranked as selective search gave them): area between
    `min_area` and `max_area` (fractions of the frame), long side / short side at most
    `max_aspect`, no two overlapping by more than `nms_iou` IoU."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    h, w = frame_hw
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    area = bw * bh / float(h * w)
    aspect = np.maximum(bw, bh) / np.maximum(np.minimum(bw, bh), 1e-6)
    keep = (bw >= 1) & (bh >= 1) & (area >= min_area) & (area <= max_area) & (aspect <= max_aspect)
    kept = boxes[keep]
    if not len(kept):
        return kept
    # NMS keeps the higher score of two overlapping boxes: rank (earlier = better) or area
    score = -np.arange(len(kept), dtype=np.float32) if order == "proposal" else area[keep]
    idx = nms(torch.from_numpy(kept), torch.from_numpy(np.ascontiguousarray(score)), nms_iou)
    return kept[idx.numpy()[:num]]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of x1, y1, x2, y2 boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
