"""MoCo-v2 views of two frames that move the tracked region boxes with the pixels.

Each item is a frame pair (frame t, frame t + j*delta) of one video with the tracked
regions linking them. Each frame is augmented as aggressive-crop does (RandomResizedCrop,
ColorJitter p 0.8, grayscale p 0.2, PIL blur p 0.5, horizontal flip, ImageNet
normalisation, in that order and with the same draws from torch's RNG), except that the
crop must keep a tracked region in view: crops are drawn (torchvision's RandomResizedCrop
rule) until one holds at least `min_visible` of some region's area, up to `crop_tries`
times, and the whole frame is used when none does. The key frame's crop must show a region
whose query box is in view. The boxes follow the geometric steps exactly (clipped to the
crop, scaled to the view, mirrored with a flip); a region pair is valid when its box keeps
`min_visible` of its area in both views.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision import transforms
from torchvision.transforms import functional as TF

from ssl_core import VideoRecord, read_frames
from sslc_plugins.aggressive_crop import GaussianBlur, ToNormalizedTensor
from sslc_plugins.region_tracker.params import SelectiveSearchTrackerParams
from sslc_plugins.region_tracker.tracking import VideoTracks

Crop = tuple[int, int, int, int]  # top, left, height, width


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
    """The MoCo-v2 pipeline of aggressive-crop with a region-aware crop and box bookkeeping."""

    def __init__(self, p: SelectiveSearchTrackerParams) -> None:
        self.p = p
        self.jitter = transforms.RandomApply(
            [transforms.ColorJitter(p.brightness, p.contrast, p.saturation, p.hue)], p=p.jitter_p)
        self.gray = transforms.RandomGrayscale(p=p.grayscale_p)
        self.blur = transforms.RandomApply([GaussianBlur(p.blur_sigma)], p=p.blur_p)
        self.to_tensor = ToNormalizedTensor(p.mean, p.std)

    def draw_crop(self, img: Image.Image, boxes: np.ndarray) -> Crop:
        """A RandomResizedCrop that shows `min_visible` of some box (or the whole frame)."""
        p = self.p
        for _ in range(p.crop_tries):
            top, left, h, w = transforms.RandomResizedCrop.get_params(img, list(p.scale),
                                                                      list(p.ratio))
            crop = (int(top), int(left), int(h), int(w))
            if not len(boxes) or (visible_fraction(boxes, crop) >= p.min_visible).any():
                return crop
        return 0, 0, img.height, img.width

    def __call__(self, img: Image.Image, boxes: np.ndarray, must_show: np.ndarray
                 ) -> tuple[Tensor, np.ndarray, np.ndarray]:
        """(view, boxes in the view, which boxes keep `min_visible` of their area); the crop is
        drawn to show one of `boxes[must_show]`."""
        p = self.p
        crop = self.draw_crop(img, boxes[must_show])
        visible = visible_fraction(boxes, crop) >= p.min_visible
        top, left, h, w = crop
        view = TF.resized_crop(img, top, left, h, w, [p.size, p.size],
                               transforms.InterpolationMode.BILINEAR, antialias=True)
        view = self.blur(self.gray(self.jitter(view)))
        flip = bool(torch.rand(1) < p.flip_p)  # RandomHorizontalFlip's draw
        if flip:
            view = TF.hflip(view)
        return self.to_tensor(view), boxes_in_view(boxes, crop, p.size, flip), visible


class TrackPairs(torch.utils.data.Dataset):
    """Items: `query` (frame t) and `key` (frame t + gap*delta) views, `query_boxes` and
    `key_boxes` (R, 4) float32 in view pixels (row i of each is one tracked region pair),
    `box_valid` (R,) bool, and `index`. R is `num_regions` for every item (rows past the
    pairs are zeros and invalid), so the default collate batches them."""

    def __init__(self, videos: Sequence[VideoRecord], tracks: Sequence[VideoTracks],
                 p: SelectiveSearchTrackerParams) -> None:
        self.videos = list(videos)
        self.tracks = list(tracks)
        self.p = p
        self.views = BoxViews(p)
        #: (video, sampled frame t, gap in steps, region pairs (n, 2))
        self.items: list[tuple[int, int, int, np.ndarray]] = []
        for v, tr in enumerate(self.tracks):
            for t in range(len(tr.frames) - 1):
                for gap in range(1, min(p.max_gap, len(tr.frames) - 1 - t) + 1):
                    pairs = tr.follow(t, gap)
                    if pairs:
                        self.items.append((v, t, gap, np.asarray(pairs, dtype=np.int64)))

    def __len__(self) -> int:
        return len(self.items)

    def region_pairs(self) -> int:
        return sum(len(item[3]) for item in self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        v, t, gap, pairs = self.items[index]
        tr, r = self.tracks[v], self.p.num_regions
        q_frame, k_frame = tr.frames[t], tr.frames[t + gap]
        frames = read_frames(self.videos[v], [q_frame, k_frame])
        q_boxes = tr.boxes[t][pairs[:, 0]]
        k_boxes = tr.boxes[t + gap][pairs[:, 1]]
        everyone = np.ones(len(pairs), dtype=bool)
        query, q_view, q_ok = self.views(Image.fromarray(frames[0]), q_boxes, everyone)
        key, k_view, k_ok = self.views(Image.fromarray(frames[1]), k_boxes, q_ok)
        out_q = np.zeros((r, 4), dtype=np.float32)
        out_k = np.zeros((r, 4), dtype=np.float32)
        valid = np.zeros(r, dtype=bool)
        n = min(r, len(pairs))
        out_q[:n], out_k[:n], valid[:n] = q_view[:n], k_view[:n], (q_ok & k_ok)[:n]
        return {"query": query, "key": key, "query_boxes": torch.from_numpy(out_q),
                "key_boxes": torch.from_numpy(out_k), "box_valid": torch.from_numpy(valid),
                "index": index}
