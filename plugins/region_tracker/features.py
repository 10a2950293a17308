"""Region features by ROI pooling: one encoder forward per frame for all its regions.

The paper pools "features at layer3 of the ResNet using ROI-Pooling": each frame goes
through the encoder once, and every region is cut out of its layer3 map
(`torchvision.ops.roi_pool`, or ROI-align), averaged to one vector and L2-normalised.
Cutting the regions out of the image and running the encoder on each crop would cost
one forward per region instead (benchmarks/bench_tracker.py measures the difference).
`pool_regions` (and `roi_align_mean`) live in the core's kit (`ssl_core.pool_regions`),
shared with the `region-moco` objective; they are re-exported here for old imports.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_core import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Encoder,
    RoiOp,
    device_constant,
    pool_regions,
    roi_align_mean,
)

__all__ = ["RegionFeatures", "RoiOp", "frames_to_input", "pool_regions", "roi_align_mean"]


def frames_to_input(frames: np.ndarray, short_side: int, device: torch.device) -> Tensor:
    """uint8 (N, H, W, 3) frames -> ImageNet-normalised float (N, 3, h, w) with the shorter
    side resized to `short_side` (aspect kept), on `device`."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    s = short_side / min(h, w)
    size = (max(1, round(h * s)), max(1, round(w * s)))
    if size != (h, w):
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    mean = device_constant(IMAGENET_MEAN, device).view(1, 3, 1, 1) * 255.0
    std = device_constant(IMAGENET_STD, device).view(1, 3, 1, 1) * 255.0
    return (x - mean) / std


class RegionFeatures:
    """L2-normalised layer3 region vectors of frames, one encoder forward per `batch_frames`
    frames (all their regions at once). `forwards` counts the encoder calls."""

    def __init__(self, encoder: Encoder, device: torch.device, short_side: int,
                 op: RoiOp = "roi_pool", output_size: int = 7, batch_frames: int = 8) -> None:
        self.encoder = encoder
        self.device = device
        self.short_side = short_side
        self.op: RoiOp = op
        self.output_size = output_size
        self.batch_frames = max(1, batch_frames)
        self.forwards = 0

    @torch.no_grad()
    def __call__(self, frames: np.ndarray, boxes: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Vectors (k_i, C) float32 for `boxes[i]` (x1, y1, x2, y2 in frame pixels) of frame i."""
        out: list[np.ndarray] = []
        for start in range(0, len(frames), self.batch_frames):
            chunk = frames[start:start + self.batch_frames]
            chunk_boxes = boxes[start:start + self.batch_frames]
            x = frames_to_input(chunk, self.short_side, self.device)
            self.forwards += 1
            maps = self.encoder.feature_map(x, "layer3")
            s = x.shape[-1] / chunk.shape[2]  # frame pixels -> input pixels
            rois = [torch.as_tensor(np.asarray(b, dtype=np.float32).reshape(-1, 4) * s,
                                    device=self.device) for b in chunk_boxes]
            vectors = F.normalize(pool_regions(maps, rois, x.shape[-1], self.op,
                                               self.output_size), dim=1).cpu().numpy()
            counts = np.cumsum([0] + [len(r) for r in rois])
            out += [vectors[a:b] for a, b in zip(counts[:-1], counts[1:], strict=True)]
        return out
