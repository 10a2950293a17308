"""Tracks from region features, their cache on disk, and their quality against true boxes.

Tracking (the paper's sec. 5): every region of sampled frame t is matched to the region of
frame t+1 (the next sampled frame, `delta` video frames later) at the smallest feature
distance d = 1 - cos; the link is kept when d is at most the video's threshold: the
`threshold_quantile` quantile of all its regions' nearest distances, capped by `threshold`
(`video_threshold`). Following links recursively
(the matched region is the query of the next step) gives tracks; a track ends where its
last region's nearest neighbour is farther than the threshold. Several regions may link to
the same one (tracks merge); each region has at most one link forward.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ssl_core import Track, read_json, write_json
from sslc_plugins.region_tracker.proposals import box_iou

#: bump when the cached layout or the tracking rule changes: old caches are then ignored
CACHE_VERSION = 2


def link_frames(feat_a: np.ndarray, feat_b: np.ndarray, threshold: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """For each L2-normalised row of `feat_a`, the index of its nearest row of `feat_b` in
    cosine distance, or -1 when that distance exceeds `threshold`; and the distances."""
    if not len(feat_a) or not len(feat_b):
        return np.full(len(feat_a), -1, dtype=np.int64), np.full(len(feat_a), np.inf)
    dist = 1.0 - feat_a.astype(np.float64) @ feat_b.astype(np.float64).T
    nearest = dist.argmin(axis=1)
    best = dist[np.arange(len(feat_a)), nearest]
    return np.where(best <= threshold, nearest, -1).astype(np.int64), best


def nearest_regions(feat_a: np.ndarray, feat_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each L2-normalised row of `feat_a`, its nearest row of `feat_b` (cosine distance)
    and that distance (-1 and inf when `feat_b` is empty)."""
    if not len(feat_a) or not len(feat_b):
        return np.full(len(feat_a), -1, dtype=np.int64), np.full(len(feat_a), np.inf)
    dist = 1.0 - feat_a.astype(np.float64) @ feat_b.astype(np.float64).T
    nearest = dist.argmin(axis=1)
    return nearest.astype(np.int64), dist[np.arange(len(feat_a)), nearest]


def video_threshold(distances: list[np.ndarray], threshold: float,
                    quantile: float | None) -> float:
    """The largest match distance kept in one video: `threshold`, lowered to the `quantile`
    of the video's finite nearest-match distances when a quantile is given. Distances
    depend on the encoder (a random-init ResNet's are all tiny, a trained one's spread
    out), so a fixed threshold cuts everything on one and nothing on another; a quantile
    keeps the same share of the most confident matches whatever the encoder."""
    finite = np.concatenate([d[np.isfinite(d)] for d in distances] or [np.zeros(0)])
    if quantile is None or not len(finite):
        return float(threshold)
    return float(min(threshold, np.quantile(finite, quantile)))


@dataclass
class VideoTracks:
    """One video's tracking: the sampled frames, their regions and the links between them.

    `boxes[t]` (R_t, 4) are frame-pixel boxes of sampled frame `frames[t]`; `links[t][r]` is
    the region of frame t+1 that region r of frame t matched, or -1 (len(links) =
    len(frames) - 1); `distances[t][r]` is the distance to its nearest region (linked or
    not: what a `threshold` is chosen from); `threshold` the distance the links were cut at."""

    frames: list[int]
    boxes: list[np.ndarray]
    links: list[np.ndarray]
    distances: list[np.ndarray] | None = None
    threshold: float | None = None

    def follow(self, t: int, steps: int) -> list[tuple[int, int]]:
        """(region in frame t, region in frame t+steps) for every track from t that lasts
        `steps` links."""
        out = []
        for r in range(len(self.boxes[t])):
            s = r
            for u in range(t, t + steps):
                s = int(self.links[u][s])
                if s < 0:
                    break
            else:
                out.append((r, s))
        return out

    def on_tracks(self) -> list[np.ndarray]:
        """Per sampled frame, which regions lie on a track of length >= 2 (a link in or out)."""
        on = [np.zeros(len(b), dtype=bool) for b in self.boxes]
        for t, link in enumerate(self.links):
            ok = link >= 0
            on[t] |= ok
            on[t + 1][link[ok]] = True
        return on

    def chains(self) -> list[list[tuple[int, int]]]:
        """Tracks of length >= 2 as lists of (sampled frame, region), each starting at a region
        no link reaches."""
        reached = [np.zeros(len(b), dtype=bool) for b in self.boxes]
        for t, link in enumerate(self.links):
            reached[t + 1][link[link >= 0]] = True
        out = []
        for t in range(len(self.links)):
            for r in np.flatnonzero(~reached[t] & (self.links[t] >= 0)):
                chain, u, s = [(t, int(r))], t, int(r)
                while u < len(self.links) and self.links[u][s] >= 0:
                    s = int(self.links[u][s])
                    u += 1
                    chain.append((u, s))
                out.append(chain)
        return out

    def to_json(self) -> dict[str, Any]:
        distances = self.distances or [np.full(len(link), np.inf) for link in self.links]
        return {"frames": self.frames, "boxes": [np.round(b, 2).tolist() for b in self.boxes],
                "links": [link.tolist() for link in self.links],
                "distances": [[round(float(d), 5) if np.isfinite(d) else None for d in row]
                              for row in distances], "threshold": self.threshold}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> VideoTracks:
        boxes = [np.asarray(b, dtype=np.float32).reshape(-1, 4) for b in doc["boxes"]]
        links = [np.asarray(link, dtype=np.int64).reshape(-1) for link in doc["links"]]
        frames = [int(f) for f in doc["frames"]]
        distances = [np.asarray([np.inf if d is None else d for d in row], dtype=np.float64)
                     for row in doc.get("distances", [])] or None
        if len(boxes) != len(frames) or len(links) != max(0, len(frames) - 1):
            raise ValueError("frames, boxes and links disagree in length")
        threshold = doc.get("threshold")
        return cls(frames, boxes, links, distances,
                   None if threshold is None else float(threshold))


def read_cached(path: Path, key: str) -> VideoTracks | None:
    """The tracks cached at `path` under exactly `key`, or None (missing, stale, damaged)."""
    doc = read_json(path)
    if doc is None or doc.get("version") != CACHE_VERSION or doc.get("key") != key:
        return None
    try:
        return VideoTracks.from_json(doc["tracks"])
    except (ValueError, KeyError, TypeError):
        return None


def write_cached(path: Path, key: str, identity: Mapping[str, Any], tracks: VideoTracks) -> None:
    """Atomically: a crash or a second process never leaves half a file."""
    write_json(path, {"version": CACHE_VERSION, "key": key, "identity": dict(identity),
                      "tracks": tracks.to_json()})


def track_quality(tracks: VideoTracks, truth: Mapping[str, Track], iou: float = 0.5
                  ) -> dict[str, int]:
    """Counts behind precision and recall at the sampled frames: track boxes (regions on a
    track of length >= 2) overlapping some true box of their frame by IoU >= `iou`, and true
    boxes (present) covered at IoU >= `iou` by some track box. Also links that start on a
    true object and how many of them end on the same object (the tracker's link accuracy)."""
    on = tracks.on_tracks()
    counts = {"track_boxes": 0, "track_boxes_matched": 0, "gt_boxes": 0, "gt_boxes_found": 0,
              "links_on_objects": 0, "links_same_object": 0}
    names = list(truth)
    owner = []  # per sampled frame: the true object each region overlaps best (IoU >= iou), or ""
    for t, frame in enumerate(tracks.frames):
        gt = np.full((len(names), 4), np.nan, dtype=np.float32)
        for g, name in enumerate(names):
            if frame < len(truth[name].boxes):
                gt[g] = truth[name].boxes[frame]
        present = np.logical_not(np.isnan(gt).any(axis=1))
        overlap = box_iou(tracks.boxes[t], np.nan_to_num(gt)) * present[None, :]
        hit = overlap >= iou
        counts["track_boxes"] += int(on[t].sum())
        counts["track_boxes_matched"] += int(hit[on[t]].any(axis=1).sum())
        counts["gt_boxes"] += int(present.sum())
        counts["gt_boxes_found"] += int(hit[on[t]].any(axis=0).sum())
        best = overlap.argmax(axis=1) if len(names) else np.zeros(len(overlap), dtype=np.int64)
        owner.append([names[b] if h.any() else "" for b, h in zip(best, hit, strict=True)])
    # links whose first region is on a true object: how many land on the same object
    for t, link in enumerate(tracks.links):
        for r in np.flatnonzero(link >= 0):
            if owner[t][r]:
                counts["links_on_objects"] += 1
                counts["links_same_object"] += int(owner[t + 1][link[r]] == owner[t][r])
    return counts
