"""Box checks shared by every annotation reader (video tracks, COCO, VOC).

Readers check boxes when they read them, not when a sampler first crops one mid-training:
a box partly outside its frame is clipped to the frame; a box that is not finite, inverted
(x2 < x1 or y2 < y1), empty, wholly outside the frame or less than a pixel inside it is
bad, and the reader either refuses it (a `DataError` naming the file and line or object)
or skips it and counts it. An all-NaN row is an absent box (a frame without the target) and is kept as it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ssl_core.errors import DataError

OnBadBox = Literal["error", "skip"]


@dataclass(frozen=True)
class CheckedBoxes:
    """What `check_boxes` returns: the clipped boxes (bad rows NaN when skipped), which rows
    were bad, and how many boxes were clipped."""

    boxes: np.ndarray
    bad: np.ndarray
    clipped: int

    @property
    def skipped(self) -> int:
        return int(self.bad.sum())


def _show(row: Sequence[float]) -> str:
    """A box as plain numbers (never `np.float32(...)`)."""
    return "[" + ", ".join(f"{float(v):g}" for v in row) + "]"


def box_problem(row: Sequence[float], size: tuple[int, int] | None) -> str | None:
    """Why an (x1, y1, x2, y2) box is unusable, or None; `size` is (width, height)."""
    x1, y1, x2, y2 = (float(v) for v in row)
    if not all(map(math.isfinite, (x1, y1, x2, y2))):
        return "not finite"
    if x2 < x1 or y2 < y1:
        return "inverted (x2 < x1 or y2 < y1)"
    if x2 == x1 or y2 == y1:
        return "empty (zero width or height)"
    if size is not None:
        w, h = size
        if x2 <= 0 or y2 <= 0 or x1 >= w or y1 >= h:
            return f"wholly outside the {w}x{h} frame"
        if min(x2, w) - max(x1, 0) < 1 or min(y2, h) - max(y1, 0) < 1:
            return f"less than a pixel inside the {w}x{h} frame"
    return None


def check_boxes(boxes: np.ndarray, where: Callable[[int], str], *,
                size: tuple[int, int] | np.ndarray | None = None, on_bad: OnBadBox = "error",
                hint: str = "fix the annotation", written: np.ndarray | None = None,
                layout: str = "x1, y1, x2, y2") -> CheckedBoxes:
    """Check (N, 4) x1, y1, x2, y2 boxes read from an annotation file.

    `where(i)` names row i for the message ("anno/a.txt, line 3"); `size` is the frame's
    (width, height) when the reader knows it (boxes are then clipped to it), or an (N, 2)
    array of one size per row (a zero size: not known). With
    `on_bad="error"` the first bad box raises a DataError with `hint`; with "skip" bad rows
    become NaN (absent) and are counted in `bad`. `written` and `layout` are the rows as
    the file has them (x, y, w, h for most trackers), for the message.
    """
    arr = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    absent = np.isnan(arr).all(axis=1)
    finite = np.isfinite(arr).all(axis=1)
    bad = ~absent & ~finite
    bad |= ~absent & finite & ((arr[:, 2] <= arr[:, 0]) | (arr[:, 3] <= arr[:, 1]))
    clipped = 0
    sizes = None
    if size is not None:
        sizes = np.broadcast_to(np.asarray(size, dtype=np.float64).reshape(-1, 2), (len(arr), 2))
        w = np.where(sizes[:, 0] > 0, sizes[:, 0], np.inf)
        h = np.where(sizes[:, 1] > 0, sizes[:, 1], np.inf)
        outside = (arr[:, 2] <= 0) | (arr[:, 3] <= 0) | (arr[:, 0] >= w) | (arr[:, 1] >= h)
        bad |= ~absent & finite & outside
        good = ~absent & ~bad
        hi = np.stack([w, h, w, h], axis=1)
        inside = np.clip(arr, 0.0, hi)
        changed = good & (inside != arr).any(axis=1)
        # a box clipped to a sliver under a pixel wide cannot be cropped: bad, not clipped
        sliver = changed & ((inside[:, 2] - inside[:, 0] < 1) | (inside[:, 3] - inside[:, 1] < 1))
        bad |= sliver
        changed &= ~sliver
        clipped = int(changed.sum())
        arr[changed] = inside[changed]
    if bad.any():
        if on_bad == "error":
            i = int(np.flatnonzero(bad)[0])
            shown = np.asarray(boxes if written is None else written, dtype=np.float64)
            row_size = None if sizes is None or (sizes[i] <= 0).any() else (
                int(sizes[i, 0]), int(sizes[i, 1]))
            raise DataError(f"{where(i)}: box {_show(shown.reshape(-1, 4)[i])} ({layout}) is "
                            f"{box_problem(arr[i], row_size)}", hint)
        arr[bad] = np.nan
    return CheckedBoxes(arr, bad, clipped)


def frame_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image from its header (no decoding): the frame readers clip
    boxes to when the annotations do not give it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"cannot read image {path}: {exc}",
                        "re-extract or re-download the frames") from None
