"""Pair-samplers from videos (the paper's section 5): `video-frames`, `frame-temporal`, `gt-tracks`.

- `video-frames` (the paper's "Baseline"): k frames per video, uniformly spaced in time,
  each an independent image for MoCo v2: a pair is two augmentations of one frame.
- `frame-temporal` ("Frame Temporal Invariance"): pairs (z_i, z_{i+k}) with i mod k == 0
  and i + k < T; each frame is augmented on its own.
- `gt-tracks` ("Ground Truth Tracks"): the annotated object's box in frames i and i+k
  (same rule, both boxes present), each crop augmented on its own.

Frames come from `ssl_core.read_frames` (the one frame reader: video files and frame
folders alike); each frame (or box) becomes a view through the view augmentation the
sampler composes, `views: {type: aggressive-crop, size: 224, ...}` by default (MoCo v2's).
All randomness is torch's: the trainer's per-(seed, epoch, index) seed fixes an item.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from PIL import Image
from pydantic import Field
from torch import Tensor

from ssl_core import (
    TEMPORAL_GAP,
    DataError,
    Dataset,
    PairSampler,
    Params,
    Register,
    VideoDataset,
    VideoRecord,
    ViewAugmentation,
    component_field,
    create_component,
    crop_box,
    hookimpl,
    read_frames,
    temporal_pairs,
)

VIDEO_DATASETS = "trackingnet, got10k or video-folder"
TRACK_DATASETS = ("trackingnet (anno/*.txt), got10k (groundtruth.txt) and video-folder "
                  "videos with a *.tracks.json sidecar")


# -- the frame-index rules ------------------------------------------------------------------
def uniform_frames(num_frames: int, k: int) -> list[int]:
    """k frames at the centres of k equal segments of the video: floor((j + 1/2) T / k).

    Distinct whenever T >= k (neighbours are T / k >= 1 apart); the first and last frames
    (often fades or cuts) are avoided."""
    return [(2 * j + 1) * num_frames // (2 * k) for j in range(k)]


def enlarge(box: np.ndarray, context: float) -> np.ndarray:
    """Grow an x1, y1, x2, y2 box about its centre: width and height times (1 + context)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw, hh = (box[2] - box[0]) * (1 + context) / 2, (box[3] - box[1]) * (1 + context) / 2
    return np.array([cx - hw, cy - hh, cx + hw, cy + hh], dtype=np.float32)


# -- params -----------------------------------------------------------------------------------
#: the view augmentation every sampler composes unless its recipe names another
DEFAULT_VIEWS = {"type": "aggressive-crop"}


class VideoPairParams(Params):
    """What the three samplers share: how a frame becomes a view, and the dataset subset."""

    views: dict[str, Any] = component_field(
        "view-augmentation", DEFAULT_VIEWS,
        "the view augmentation each frame (or box) goes through, `{type: <name>, ...}`; "
        "default aggressive-crop's MoCo-v2 pipeline at its defaults (size 224)")
    subset: str | None = Field(None, description="the dataset subset whose videos are read")


class VideoFramesParams(VideoPairParams):
    """How many frames each video gives (each frame: two views)."""

    frames_per_video: int = Field(
        3, ge=1, description="frames taken per video, uniformly spaced (the paper: 3)")


class FrameTemporalParams(VideoPairParams):
    """The frame gap k."""

    gap: int = Field(TEMPORAL_GAP, ge=1, description="k: pairs are frames (i, i + k), i mod k == 0")


class GtTracksParams(FrameTemporalParams):
    """frame-temporal's rule on annotated object boxes."""

    tracks: Literal["main", "all"] = Field(
        "main", description="main: the dataset's annotated (tracked) object; all: every track")
    context: float = Field(
        0.0, ge=0.0, description="grow each box's width and height by this fraction before "
        "cropping (about its centre, clipped to the frame)")
    min_box_size: float = Field(
        8.0, ge=1.0, description="skip a pair when either box (before context) is narrower or "
        "shorter than this, in pixels")


# -- the torch dataset ------------------------------------------------------------------------
@dataclass
class PairPlan:
    """What `pairs()` decided: per item, the video, its two frames and (gt-tracks) boxes."""

    video: np.ndarray  # (N,) int64 index into the video list
    frames: np.ndarray  # (N, 2) int64
    boxes: np.ndarray | None = None  # (N, 2, 4) float32 x1, y1, x2, y2 (context applied)

    def __len__(self) -> int:
        return len(self.video)


def _plan(rows: Sequence[tuple[int, int, int]], boxes: Sequence[np.ndarray] | None = None) -> PairPlan:
    video = np.array([r[0] for r in rows], dtype=np.int64)
    frames = np.array([r[1:] for r in rows], dtype=np.int64).reshape(-1, 2)
    stacked = None if boxes is None else np.asarray(boxes, dtype=np.float32).reshape(-1, 2, 4)
    return PairPlan(video, frames, stacked)


class VideoPairs(torch.utils.data.Dataset):
    """Items {"query", "key", "index", "video", "frames"}: the views of two frames (or twice
    one frame), cropped to their boxes first when the plan has boxes.

    With `augment_on: gpu` views, query and key are the workers' uint8 crops plus their drawn
    parameters (`query_params`, `key_params`), finished by the sampler's `on_device`."""

    def __init__(self, videos: Sequence[VideoRecord], plan: PairPlan,
                 views: ViewAugmentation) -> None:
        self.videos = list(videos)
        self.plan = plan
        self.views = views

    def __len__(self) -> int:
        return len(self.plan)

    def images(self, index: int) -> tuple[Image.Image, Image.Image]:
        """The two (cropped) frames of item `index`, before augmentation."""
        video = self.videos[int(self.plan.video[index])]
        a, b = (int(f) for f in self.plan.frames[index])
        pixels = read_frames(video, [a] if a == b else [a, b])  # one decode for both frames
        first = Image.fromarray(pixels[0])
        second = first if a == b else Image.fromarray(pixels[1])
        if self.plan.boxes is None:
            return first, second
        box_a, box_b = self.plan.boxes[index]
        return (crop_box(first, tuple(box_a), f"{video.source} frame {a}", mode="clip"),
                crop_box(second, tuple(box_b), f"{video.source} frame {b}", mode="clip"))

    def __getitem__(self, index: int) -> dict[str, Any]:
        first, second = self.images(index)
        item: dict[str, Any] = {"index": index, "video": int(self.plan.video[index]),
                                "frames": torch.from_numpy(self.plan.frames[index].copy())}
        if self.views.augment_on == "gpu":
            item["query"], item["query_params"] = self.views.prepare(first)
            item["key"], item["key_params"] = self.views.prepare(second)
        else:
            query: Tensor = self.views(first)
            key: Tensor = self.views(second)
            item["query"], item["key"] = query, key
        return item


# -- samplers ---------------------------------------------------------------------------------
class VideoPairSampler(PairSampler):
    """What the three samplers share: checking the dataset, the composed views, stats."""

    name: ClassVar[str]
    params: VideoPairParams

    def __init__(self, params: VideoPairParams) -> None:
        self.params = params
        self.views: ViewAugmentation = create_component(
            "view-augmentation", params.views, where=f"pair-sampler {self.name}: views")
        self._stats: dict[str, int] = {}

    def on_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Finish `augment_on: gpu` views on the training device (identity otherwise)."""
        return self.views.on_device_batch(batch)

    def stats(self) -> dict[str, Any]:
        return dict(self._stats)

    def videos(self, dataset: Dataset) -> list[VideoRecord]:
        if not isinstance(dataset, VideoDataset):
            raise DataError(
                f"pair sampler {self.name} needs a video dataset; dataset "
                f"{type(dataset).__name__} at {getattr(dataset, 'root', '(no root)')} lists images",
                f"train {self.name} on a video dataset ({VIDEO_DATASETS}), or use aggressive-crop "
                "for image datasets")
        videos = dataset.videos(self.params.subset)
        if not videos:
            raise DataError(
                f"video dataset {type(dataset).__name__} at {getattr(dataset, 'root', '(no root)')} "
                f"has no videos in subset {self.params.subset or '(default)'}",
                "check the dataset root and the sampler's `subset` parameter")
        return videos

    @abstractmethod
    def plan(self, videos: Sequence[VideoRecord]) -> PairPlan:
        """Choose every item's video, frames (and boxes); fill `self._stats`."""

    def pairs(self, dataset: Dataset) -> VideoPairs:
        videos = self.videos(dataset)
        plan = self.plan(videos)
        if len(plan) == 0:
            raise DataError(
                f"pair sampler {self.name}: none of the {len(videos)} videos of "
                f"{type(dataset).__name__} at {getattr(dataset, 'root', '(no root)')} gives a pair "
                f"({self.why_none()})", self.fix_none())
        return VideoPairs(videos, plan, self.views)

    def why_none(self) -> str:
        return ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in self._stats.items())

    def fix_none(self) -> str:
        return "lower the sampler's frame count or gap, or add longer videos"


class VideoFrames(VideoPairSampler):
    """The paper's baseline: k uniformly spaced frames per video, each an independent image."""

    name = "video-frames"
    params: VideoFramesParams

    def __init__(self, params: VideoFramesParams) -> None:
        super().__init__(params)

    def plan(self, videos: Sequence[VideoRecord]) -> PairPlan:
        k = self.params.frames_per_video
        rows = []
        short = 0
        for v, video in enumerate(videos):
            if video.num_frames < k:
                short += 1
                continue
            rows += [(v, f, f) for f in uniform_frames(video.num_frames, k)]
        self._stats = {"videos": len(videos), "videos_used": len(videos) - short,
                       "videos_too_short": short, "pairs": len(rows)}
        return _plan(rows)

    def fix_none(self) -> str:
        return f"every video has fewer than frames_per_video={self.params.frames_per_video} frames: lower it"


class FrameTemporal(VideoPairSampler):
    """Frame Temporal Invariance: (z_i, z_{i+k}), i mod k == 0, augmented separately."""

    name = "frame-temporal"
    params: FrameTemporalParams

    def __init__(self, params: FrameTemporalParams) -> None:
        super().__init__(params)

    def plan(self, videos: Sequence[VideoRecord]) -> PairPlan:
        rows = []
        short = 0
        for v, video in enumerate(videos):
            pairs = temporal_pairs(video.num_frames, self.params.gap)
            short += not pairs
            rows += [(v, a, b) for a, b in pairs]
        self._stats = {"videos": len(videos), "videos_used": len(videos) - short,
                       "videos_too_short": short, "pairs": len(rows)}
        return _plan(rows)

    def fix_none(self) -> str:
        return f"every video has at most gap={self.params.gap} frames: lower `gap`"


class GtTracks(VideoPairSampler):
    """Ground Truth Tracks: the annotated object's boxes in frames i and i + k, cropped and
    augmented separately."""

    name = "gt-tracks"
    params: GtTracksParams

    def __init__(self, params: GtTracksParams) -> None:
        super().__init__(params)

    def track_ids(self, video: VideoRecord) -> list[str]:
        if not video.tracks:
            raise DataError(f"gt-tracks: video {video.name} ({video.source}) has no object tracks",
                            f"gt-tracks needs annotated boxes: {TRACK_DATASETS} carry them; "
                            "use frame-temporal for videos without")
        if self.params.tracks == "all":
            return sorted(video.tracks)
        if video.main_track is None or video.main_track not in video.tracks:
            raise DataError(f"gt-tracks: video {video.name} ({video.source}) has "
                            f"{len(video.tracks)} tracks but no main (annotated) track",
                            "set `tracks: all` on the sampler to use every track")
        return [video.main_track]

    def plan(self, videos: Sequence[VideoRecord]) -> PairPlan:
        p = self.params
        rows: list[tuple[int, int, int]] = []
        boxes: list[np.ndarray] = []
        short = no_pairs = absent = small = 0
        for v, video in enumerate(videos):
            ids = self.track_ids(video)
            candidates = temporal_pairs(video.num_frames, p.gap)
            if not candidates:
                short += 1
                continue
            before = len(rows)
            for tid in ids:
                track = video.tracks[tid].boxes
                for a, b in candidates:
                    if b >= len(track) or np.isnan(track[[a, b]]).any():
                        absent += 1
                        continue
                    sides = track[[a, b], 2:] - track[[a, b], :2]
                    if sides.min() < p.min_box_size:
                        small += 1
                        continue
                    rows.append((v, a, b))
                    boxes.append(np.stack([enlarge(track[a], p.context),
                                           enlarge(track[b], p.context)]))
            no_pairs += len(rows) == before
        self._stats = {"videos": len(videos), "videos_used": len(videos) - short - no_pairs,
                       "videos_too_short": short, "videos_without_pairs": no_pairs,
                       "pairs": len(rows), "pairs_skipped_absent": absent,
                       "pairs_skipped_small": small}
        return _plan(rows, boxes)

    def fix_none(self) -> str:
        return ("lower `gap` or `min_box_size`, or use videos whose object is present in frames "
                "i and i + gap")


@hookimpl
def register_pair_samplers(register: Register) -> None:
    register("video-frames", VideoFrames, params=VideoFramesParams,
             summary="k uniformly spaced frames per video, two views of each (the paper's baseline)")
    register("frame-temporal", FrameTemporal, params=FrameTemporalParams,
             summary="frames i and i+k of a video (i mod k == 0), each augmented by `views`")
    register("gt-tracks", GtTracks, params=GtTracksParams,
             summary="the annotated object's boxes in frames i and i+k, each augmented by `views`")
