"""Unsupervised region proposals: OpenCV's selective search (fast mode), then filtered.

The paper divides each frame into R regions "using an off-the-shelf unsupervised region
proposal method" (selective search, its reference [42]). Selective search returns
hundreds to thousands of boxes, many tiny, sliver-shaped or near duplicates; the filter
keeps R boxes worth tracking: size between `min_area` and `max_area` of the frame,
aspect ratio at most `max_aspect`, an objectness-like cue at least `min_contrast` (how
much the box's colours differ from a ring around it: the "colour contrast" cue of
Alexe et al.'s objectness measure, high for a thing standing out from its surroundings,
low for a patch of floor or wall), near duplicates removed (greedy NMS at `nms_iou`),
then the first R in selective search's own ranking (`order: proposal`), the R largest
(`order: largest`) or the R most contrasted (`order: contrast`).
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any, Literal

import numpy as np
import torch
from torchvision.ops import nms

Order = Literal["proposal", "largest", "contrast"]

#: colour histogram bins per RGB channel of the contrast cue (8^3 = 512 bins)
CONTRAST_BINS = 8


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


def color_contrast(frame: np.ndarray, boxes: np.ndarray, ring: float = 0.5,
                   max_side: int = 256) -> np.ndarray:
    """Per box, the chi-square distance (0..1) between the colour histogram of the box and
    that of a ring around it (the box grown by `ring` of its width and height on each side,
    clipped to the frame). Computed with integral histograms on the frame downscaled to
    `max_side` (cost: one pass over the pixels, then O(bins) per box)."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if not len(boxes):
        return np.zeros(0, dtype=np.float32)
    import cv2

    h, w = frame.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    image = frame
    if scale < 1.0:
        image = cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))),
                           interpolation=cv2.INTER_AREA)
    ih, iw = image.shape[:2]
    q = (image.astype(np.int64) * CONTRAST_BINS) // 256
    bins = (q[..., 0] * CONTRAST_BINS + q[..., 1]) * CONTRAST_BINS + q[..., 2]
    onehot = np.eye(CONTRAST_BINS ** 3, dtype=np.float32)[bins]  # (ih, iw, B)
    integral = np.zeros((ih + 1, iw + 1, onehot.shape[-1]), dtype=np.float32)
    integral[1:, 1:] = onehot.cumsum(0).cumsum(1)

    def hist(b: np.ndarray) -> np.ndarray:  # (N, 4) integer boxes -> (N, B) counts
        x1, y1, x2, y2 = b.T
        return integral[y2, x2] - integral[y1, x2] - integral[y2, x1] + integral[y1, x1]

    sx, sy = iw / w, ih / h
    inner = boxes * np.asarray([sx, sy, sx, sy], dtype=np.float32)
    bw, bh = inner[:, 2] - inner[:, 0], inner[:, 3] - inner[:, 1]
    outer = inner + np.stack([-ring * bw, -ring * bh, ring * bw, ring * bh], axis=1)
    limits = np.asarray([iw, ih, iw, ih])
    inner_i = np.clip(np.round(inner), 0, limits).astype(np.int64)
    outer_i = np.clip(np.round(outer), 0, limits).astype(np.int64)
    h_in = hist(inner_i)
    h_ring = hist(outer_i) - h_in
    p = h_in / np.maximum(h_in.sum(1, keepdims=True), 1.0)
    r = h_ring / np.maximum(h_ring.sum(1, keepdims=True), 1.0)
    chi = 0.5 * ((p - r) ** 2 / np.maximum(p + r, 1e-12)).sum(1)
    chi[h_ring.sum(1) < 1] = 0.0  # a box covering the whole frame has no surroundings
    return chi.astype(np.float32)


def filter_regions(boxes: np.ndarray, frame_hw: tuple[int, int], num: int, *,
                   min_area: float, max_area: float, max_aspect: float, nms_iou: float,
                   order: Order, contrast: np.ndarray | None = None,
                   min_contrast: float = 0.0) -> np.ndarray:
    """At most `num` of `boxes` (ranked as selective search gave them): area between
    `min_area` and `max_area` (fractions of the frame), long side / short side at most
    `max_aspect`, `contrast` (one per box, `color_contrast`; needed by `min_contrast` > 0
    and `order: contrast`) at least `min_contrast`, no two overlapping by more than
    `nms_iou` IoU."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    h, w = frame_hw
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    area = bw * bh / float(h * w)
    aspect = np.maximum(bw, bh) / np.maximum(np.minimum(bw, bh), 1e-6)
    keep = (bw >= 1) & (bh >= 1) & (area >= min_area) & (area <= max_area) & (aspect <= max_aspect)
    if contrast is None and (min_contrast > 0 or order == "contrast"):
        raise ValueError("filter_regions: min_contrast and order 'contrast' need `contrast`")
    if contrast is not None:
        keep &= np.asarray(contrast, dtype=np.float32).reshape(-1) >= min_contrast
    kept = boxes[keep]
    if not len(kept):
        return kept
    # NMS keeps the higher score of two overlapping boxes: rank (earlier = better), area or
    # contrast
    if order == "proposal":
        score = -np.arange(len(kept), dtype=np.float32)
    elif order == "largest":
        score = area[keep]
    else:
        assert contrast is not None
        score = np.asarray(contrast, dtype=np.float32).reshape(-1)[keep]
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
