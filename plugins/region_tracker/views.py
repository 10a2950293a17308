"""MoCo-v2 views of two frames that move the tracked region boxes with the pixels.

Each item is a frame pair (frame i, frame i + k) of one video with the region pairs
linking them (tracked regions, or annotated boxes for `gt-region-tracks`). Each frame goes through the composed view augmentation (`views`,
aggressive-crop's MoCo-v2 pipeline by default), except that the crop must keep a tracked
region in view: crops are drawn (`ViewAugmentation.draw_crop`, RandomResizedCrop's rule
for aggressive-crop) until one holds at least `min_visible` of some region's area, up to
`crop_tries` times, and the whole frame is used when none does; `finish` does the rest. The key frame's crop must show a region
whose query box is in view. The boxes follow the geometric steps exactly (clipped to the
crop, scaled to the view, mirrored with a flip); a region pair is valid when its box keeps
`min_visible` of its area in both views.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ssl_core import Crop, VideoRecord, ViewAugmentation, create_component, read_frames
from sslc_plugins.region_tracker.params import RegionPairParams


def visible_fraction(boxes: np.ndarray, crop: Crop) -> np.ndarray:
    """Fraction of each box's area inside `crop`."""
    top, left, h, w = crop
    ix = np.clip(np.minimum(boxes[:, 2], left + w) - np.maximum(boxes[:, 0], left), 0, None)
    iy = np.clip(np.minimum(boxes[:, 3], top + h) - np.maximum(boxes[:, 1], top), 0, None)
    area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-6)
    return ix * iy / area


def boxes_in_view(boxes: np.ndarray, crop: Crop, size: int, flip: bool) -> np.ndarray:
    """Frame-pixel boxes -> the view's pixels: clipped to the crop, scaled to size x size,
    mirrored when flipped (continuous coordinates: pixel i spans [i, i+1))."""
    top, left, h, w = crop
    x = (np.clip(boxes[:, [0, 2]], left, left + w) - left) * (size / w)
    y = (np.clip(boxes[:, [1, 3]], top, top + h) - top) * (size / h)
    if flip:
        x = size - x[:, ::-1]
    return np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1).astype(np.float32)


class BoxViews:
    """A view augmentation with a region-aware crop and box bookkeeping."""

    def __init__(self, p: RegionPairParams, views: ViewAugmentation) -> None:
        self.p = p
        self.views = views

    def draw_crop(self, img: Image.Image, boxes: np.ndarray) -> Crop:
        """A crop of the augmentation's rule that shows `min_visible` of some box (or the
        whole frame)."""
        p = self.p
        for _ in range(p.crop_tries):
            crop = self.views.draw_crop(img)
            if not len(boxes) or (visible_fraction(boxes, crop) >= p.min_visible).any():
                return crop
        return 0, 0, img.height, img.width

    def __call__(self, img: Image.Image, boxes: np.ndarray, must_show: np.ndarray
                 ) -> tuple[Tensor, np.ndarray, np.ndarray]:
        """(view, boxes in the view, which boxes keep `min_visible` of their area); the crop is
        drawn to show one of `boxes[must_show]`."""
        crop = self.draw_crop(img, boxes[must_show])
        visible = visible_fraction(boxes, crop) >= self.p.min_visible
        view, flip = self.views.finish(img, crop)
        return view, boxes_in_view(boxes, crop, self.views.size, flip), visible


class RegionPair(NamedTuple):
    """One item: video `video`, query frame, key frame, and the region pairs linking them:
    row i of `query_boxes` (n, 4) pairs with row i of `key_boxes`, frame pixels (n may be 0:
    the frame pair alone)."""

    video: int
    query_frame: int
    key_frame: int
    query_boxes: np.ndarray
    key_boxes: np.ndarray


class TrackPairs(torch.utils.data.Dataset):
    """Items: `query` (frame i) and `key` (frame i + k) views, `query_boxes` and
    `key_boxes` (R, 4) float32 in view pixels (row i of each is one region pair),
    `box_valid` (R,) bool, and `index`. R is `num_regions` for every item (rows past the
    pairs are zeros and invalid), so the default collate batches them."""

    def __init__(self, videos: Sequence[VideoRecord], items: Sequence[RegionPair],
                 p: RegionPairParams, views: ViewAugmentation | None = None) -> None:
        self.videos = list(videos)
        self.items = list(items)
        self.p = p
        if views is None:
            views = create_component("view-augmentation", p.views, where="region pairs: views")
        self.views = BoxViews(p, views)

    def __len__(self) -> int:
        return len(self.items)

    def region_pairs(self) -> int:
        return sum(min(len(item.query_boxes), self.p.num_regions) for item in self.items)

    def items_with_regions(self) -> int:
        return sum(len(item.query_boxes) > 0 for item in self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        r = self.p.num_regions
        frames = read_frames(self.videos[item.video], [item.query_frame, item.key_frame])
        q_boxes = np.asarray(item.query_boxes, dtype=np.float32).reshape(-1, 4)
        k_boxes = np.asarray(item.key_boxes, dtype=np.float32).reshape(-1, 4)
        everyone = np.ones(len(q_boxes), dtype=bool)
        query, q_view, q_ok = self.views(Image.fromarray(frames[0]), q_boxes, everyone)
        key, k_view, k_ok = self.views(Image.fromarray(frames[1]), k_boxes, q_ok)
        out_q = np.zeros((r, 4), dtype=np.float32)
        out_k = np.zeros((r, 4), dtype=np.float32)
        valid = np.zeros(r, dtype=bool)
        n = min(r, len(q_boxes))
        out_q[:n], out_k[:n], valid[:n] = q_view[:n], k_view[:n], (q_ok & k_ok)[:n]
        return {"query": query, "key": key, "query_boxes": torch.from_numpy(out_q),
                "key_boxes": torch.from_numpy(out_k), "box_valid": torch.from_numpy(valid),
                "index": index}
