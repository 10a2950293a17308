"""Pair-sampler `selective-search-tracker`: regions tracked without labels (paper sec. 5).

Each sampled frame of each video (frames 0, delta, 2*delta, ...) is divided into R regions
by selective search (filtered to object-like ones: size, aspect, colour contrast with their
surroundings); the regions get layer3 ROI-pooled features from a frozen encoder (the
recipe's `sampler_encoder`, the paper's baseline MoCo trained on video frames), and each is
matched to its nearest region `delta` frames later, recursively, cutting a track where the
distance passes the video's threshold (a quantile of its match distances). Items are
frame-temporal's pairs (i, i + k), i mod k == 0 (k = `gap`), with the regions tracked from
frame i to frame i + k through the k / delta steps between as the region pairs: the
positives of the `region-moco` objective (frame-level and region-level losses).

`gt-region-tracks` gives the same items with the annotated boxes as the region pairs (the
paper's Ground Truth Tracks model: "annotated tracks rather than unsupervised tracks").

Tracks are computed once per (video file, encoder weights, tracking parameters) and cached
under `<cache>/tracks/`. Modules: `proposals` (selective search, filtering), `features`
(ROI pooling), `tracking` (links, cache, quality), `views` (box-aware augmentation).
"""

from __future__ import annotations

import copy
import hashlib
import json
import multiprocessing
import re
import warnings
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ssl_core import (
    ComponentError,
    DataError,
    Dataset,
    Encoder,
    PairSampler,
    Register,
    VideoDataset,
    VideoRecord,
    ViewAugmentation,
    barrier,
    cache_dir,
    create_component,
    hookimpl,
    progress_bar,
    read_frames,
    resolve_device,
    temporal_pairs,
    world_size,
)
from ssl_core import rank as this_rank
from sslc_plugins.region_tracker.features import RegionFeatures
from sslc_plugins.region_tracker.params import (
    TRACKING_FIELDS,
    GtRegionTracksParams,
    RegionPairParams,
    SelectiveSearchTrackerParams,
)
from sslc_plugins.region_tracker.proposals import color_contrast, filter_regions, selective_search
from sslc_plugins.region_tracker.tracking import (
    CACHE_VERSION,
    VideoTracks,
    nearest_regions,
    read_cached,
    track_quality,
    video_threshold,
    write_cached,
)
from sslc_plugins.region_tracker.views import RegionPair, TrackPairs

__all__ = ["GtRegionTracks", "GtRegionTracksParams", "RegionPair", "RegionPairParams",
           "SelectiveSearchTracker",
           "SelectiveSearchTrackerParams", "TrackPairs", "VideoTracks"]


def _search(job: tuple[np.ndarray, int, int, int, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """selective_search on one (frame, max_side, base_k, inc_k, sigma, ring), and each box's
    colour contrast with its ring: a picklable job."""
    frame, side, base_k, inc_k, sigma, ring = job
    boxes = selective_search(frame, side, base_k, inc_k, sigma)
    return boxes, color_contrast(frame, boxes, ring, side)


def video_identity(video: VideoRecord) -> dict[str, Any]:
    """What changes when the video's pixels may have: its path, frame count, and the size and
    mtime of the file (or of the first and last frame images)."""
    files = [video.source] if video.is_file else [video.frames[0], video.frames[-1]]
    stats: list[list[int] | None] = []
    for f in files:
        try:
            st = Path(f).stat()
            stats.append([st.st_size, st.st_mtime_ns])
        except OSError:
            stats.append(None)
    return {"source": str(Path(video.source).resolve()), "num_frames": video.num_frames,
            "files": stats}


#: what region pairs add to a batch (TrackPairs' items)
REGION_KEYS = frozenset({"query", "key", "query_boxes", "key_boxes", "box_valid"})


class SelectiveSearchTracker(PairSampler):
    """Positive pairs = regions tracked by feature matching (and their frames)."""

    batch_keys = REGION_KEYS

    wants_encoder: ClassVar[bool] = True

    def __init__(self, params: SelectiveSearchTrackerParams) -> None:
        self.params = params
        self.views: ViewAugmentation = create_component(
            "view-augmentation", params.views, where="selective-search-tracker: views")
        self._encoder: Encoder | None = None
        self.encoder_id: str | None = None
        #: work done by the last `pairs()`: what a cache hit saves is visible here
        self.encoder_forwards = 0
        self.searched_frames = 0
        self._stats: dict[str, Any] = {}

    def use_encoder(self, encoder: Encoder, encoder_id: str) -> None:
        self._encoder = encoder
        self.encoder_id = encoder_id

    # -- tracking one video ----------------------------------------------------------------
    def cache_key(self, video: VideoRecord) -> tuple[str, dict[str, Any]]:
        p = self.params
        identity = {"video": video_identity(video), "encoder": self.encoder_id,
                    "tracker": {f: getattr(p, f) for f in TRACKING_FIELDS},
                    "version": CACHE_VERSION}
        text = json.dumps(identity, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest(), identity

    def cache_path(self, video: VideoRecord, key: str) -> Path:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", video.name)[-60:] or "video"
        return cache_dir() / "tracks" / f"{stem}-{key[:20]}.json"

    def _device(self) -> torch.device:
        return resolve_device(self.params.device, "selective-search-tracker device")

    def _featurizer(self) -> RegionFeatures:
        assert self._encoder is not None
        device = self._device()
        encoder = self._encoder
        current = next(iter(encoder.parameters()), torch.empty(0)).device
        if current != device:  # a copy: the runner keeps using its own encoder where it is
            encoder = copy.deepcopy(encoder).to(device)
        encoder.eval()
        p = self.params
        return RegionFeatures(encoder, device, p.feature_size, p.roi_op, p.roi_output,
                              p.batch_frames)

    def _regions(self, chunk: np.ndarray, pool: Executor | None) -> list[np.ndarray]:
        """Selective search on each frame (in `pool`'s processes when given), then filtered."""
        p = self.params
        jobs = [(frame, p.search_side, p.search_k, p.search_k, p.search_sigma, p.contrast_ring)
                for frame in chunk]
        found = list(pool.map(_search, jobs)) if pool is not None else [_search(j) for j in jobs]
        self.searched_frames += len(chunk)
        return [filter_regions(boxes, frame.shape[:2], p.num_regions, min_area=p.min_area,
                               max_area=p.max_area, max_aspect=p.max_aspect, nms_iou=p.nms_iou,
                               order=p.order, contrast=contrast, min_contrast=p.min_contrast)
                for (boxes, contrast), frame in zip(found, chunk, strict=True)]

    def track_video(self, video: VideoRecord, features: RegionFeatures,
                    pool: Executor | None = None) -> VideoTracks:
        """Selective search on each sampled frame, region features, links between neighbours
        (cut at the video's threshold)."""
        p = self.params
        frames = list(range(0, video.num_frames, p.delta))
        if p.max_frames:
            frames = frames[:p.max_frames]
        boxes: list[np.ndarray] = []
        nearest: list[np.ndarray] = []
        distances: list[np.ndarray] = []
        previous: np.ndarray | None = None
        for start in range(0, len(frames), p.batch_frames):
            chunk = read_frames(video, frames[start:start + p.batch_frames])
            chunk_boxes = self._regions(chunk, pool)
            before = features.forwards
            vectors = features(chunk, chunk_boxes)
            self.encoder_forwards += features.forwards - before
            for vec in vectors:
                if previous is not None:
                    near, dist = nearest_regions(previous, vec)
                    nearest.append(near)
                    distances.append(dist)
                previous = vec
            boxes += chunk_boxes
        cut = video_threshold(distances, p.threshold, p.threshold_quantile)
        links = [np.where(d <= cut, n, -1).astype(np.int64)
                 for n, d in zip(nearest, distances, strict=True)]
        return VideoTracks(frames, boxes, links, distances, cut)

    def _load_or_track(self, videos: list[VideoRecord], mine: list[int]
                       ) -> tuple[dict[int, VideoTracks], dict[int, VideoTracks]]:
        """Tracks of videos `mine` by index: (newly tracked, read from the cache). New tracks
        are cached and kept in memory, so an unwritable cache only costs a warning."""
        todo, cached = [], {}
        for i in mine:
            key, identity = self.cache_key(videos[i])
            path = self.cache_path(videos[i], key)
            found = read_cached(path, key)
            if found is None:
                todo.append((i, key, identity, path))
            else:
                cached[i] = found
        if not todo:
            return {}, cached
        features = self._featurizer()
        workers = self.params.workers
        pool = (ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
                if workers > 0 else None)
        done: dict[int, VideoTracks] = {}
        try:
            with progress_bar() as progress:
                task = progress.add_task("tracking regions", total=len(todo), info="")
                for i, key, identity, path in todo:
                    done[i] = self.track_video(videos[i], features, pool)
                    try:
                        write_cached(path, key, identity, done[i])
                    except OSError as err:
                        warnings.warn(f"selective-search-tracker: cannot cache tracks in {path} "
                                      f"({err}); they will be computed again next time",
                                      stacklevel=2)
                    progress.update(task, advance=1, info=videos[i].name)
        finally:
            if pool is not None:
                pool.shutdown()
        return done, cached

    # -- the pair sampler -------------------------------------------------------------------
    def pairs(self, dataset: Dataset) -> TrackPairs:
        p = self.params
        if not isinstance(dataset, VideoDataset):
            raise DataError(f"selective-search-tracker tracks regions through videos; dataset "
                            f"{type(dataset).__name__} has none",
                            "train on a video dataset (one listing videos, e.g. synthworld "
                            "videos, TrackingNet, GOT-10k)")
        if self._encoder is None:
            raise ComponentError("selective-search-tracker needs a frozen encoder to match "
                                 "regions by their features",
                                 "set `sampler_encoder: <model name>` in the train section "
                                 "(the paper uses the baseline MoCo trained on video frames)")
        self.encoder_forwards = self.searched_frames = 0
        videos = dataset.videos(p.subset)
        if not videos:
            raise DataError(f"dataset {type(dataset).__name__} at "
                            f"{getattr(dataset, 'root', '(no root)')} has no videos in subset "
                            f"{p.subset or '(default)'}", "check the dataset root and `subset`")
        # under torchrun each rank tracks its share, then every rank reads all from the cache
        rank, world = this_rank(), world_size()
        fresh, cached = self._load_or_track(videos, list(range(rank, len(videos), world)))
        if world > 1:  # the others' shares, from the cache (tracked here if it is not shared)
            barrier()
            others = [i for i in range(len(videos)) if i % world != rank]
            more_fresh, more_cached = self._load_or_track(videos, others)
            fresh.update(more_fresh)
            cached.update(more_cached)
        tracks: list[VideoTracks] = []
        quality = {"track_boxes": 0, "track_boxes_matched": 0, "gt_boxes": 0,
                   "gt_boxes_found": 0, "links_on_objects": 0, "links_same_object": 0}
        gt_videos = 0
        for i, video in enumerate(videos):
            found = fresh[i] if i in fresh else cached[i]
            tracks.append(found)
            if video.tracks:
                gt_videos += 1
                for name, value in track_quality(found, video.tracks).items():
                    quality[name] += value
        result = TrackPairs(videos, self.items(tracks), p, self.views)
        self._stats = self._summarise(tracks, result, len(videos) - len(fresh), quality,
                                      gt_videos)
        if not result.region_pairs():
            raise DataError(
                f"selective-search-tracker found no region tracked from frame i to i + {p.gap} "
                f"in {len(videos)} video(s) (delta {p.delta}, threshold {p.threshold}, "
                f"threshold_quantile {p.threshold_quantile})",
                "raise `threshold_quantile`, lower `gap` or `delta`, or loosen the region "
                "filters (min_area, max_area, max_aspect, min_contrast)")
        return result

    def items(self, tracks: list[VideoTracks]) -> list[RegionPair]:
        """frame-temporal's pairs (i, i + gap), i mod gap == 0, each with the regions tracked
        from frame i to frame i + gap through gap / delta links (none: the frame pair alone,
        so the item count equals frame-temporal's)."""
        p = self.params
        steps = p.gap // p.delta
        out = []
        for v, tr in enumerate(tracks):
            index = {f: t for t, f in enumerate(tr.frames)}
            last = tr.frames[-1] if tr.frames else -1
            for i, _ in temporal_pairs(last + 1, p.gap):
                t = index[i]
                pairs = np.asarray(tr.follow(t, steps), dtype=np.int64).reshape(-1, 2)
                out.append(RegionPair(v, i, i + p.gap, tr.boxes[t][pairs[:, 0]],
                                      tr.boxes[t + steps][pairs[:, 1]]))
        return out

    def _summarise(self, tracks: list[VideoTracks], result: TrackPairs, cached: int,
                   quality: dict[str, int], gt_videos: int) -> dict[str, Any]:
        chains = [c for tr in tracks for c in tr.chains()]
        dist = np.concatenate([d for tr in tracks for d in (tr.distances or [])] or [np.zeros(0)])
        dist = dist[np.isfinite(dist)]
        quantiles = ({f"p{q}": round(float(np.percentile(dist, q)), 5) for q in (10, 50, 90)}
                     if len(dist) else {})
        out: dict[str, Any] = {
            "tracker": {f: getattr(self.params, f) for f in TRACKING_FIELDS},
            "encoder_id": self.encoder_id,
            "videos": len(tracks), "videos_cached": cached,
            "frames_searched": self.searched_frames, "encoder_forwards": self.encoder_forwards,
            "regions": int(sum(len(b) for tr in tracks for b in tr.boxes)),
            "tracks": len(chains),
            "mean_track_length": float(np.mean([len(c) for c in chains])) if chains else 0.0,
            "items": len(result), "items_with_regions": result.items_with_regions(),
            "region_pairs": result.region_pairs(),
            "thresholds": ({f"p{q}": round(float(np.percentile(cuts, q)), 5) for q in (10, 50, 90)}
                           if (cuts := [tr.threshold for tr in tracks
                                        if tr.threshold is not None]) else {}),
            "match_distance": quantiles,
            "gt_videos": gt_videos, **quality,
            "track_precision": None, "track_recall": None, "link_accuracy": None,
        }
        if quality["track_boxes"]:
            out["track_precision"] = quality["track_boxes_matched"] / quality["track_boxes"]
        if quality["gt_boxes"]:
            out["track_recall"] = quality["gt_boxes_found"] / quality["gt_boxes"]
        if quality["links_on_objects"]:
            out["link_accuracy"] = quality["links_same_object"] / quality["links_on_objects"]
        return out

    def stats(self) -> dict[str, Any]:
        """Tracker parameters, counts, and track precision/recall (IoU >= 0.5) on videos with
        true tracks (None without any)."""
        return dict(self._stats)


class GtRegionTracks(PairSampler):
    """The Ground Truth Tracks model's pairs: frame-temporal's (i, i + k) with the annotated
    objects' boxes in both frames as the region pairs (the region tracker with annotated
    instead of unsupervised tracks)."""

    batch_keys = REGION_KEYS

    def __init__(self, params: GtRegionTracksParams) -> None:
        self.params = params
        self.views: ViewAugmentation = create_component(
            "view-augmentation", params.views, where="gt-region-tracks: views")
        self._stats: dict[str, Any] = {}

    def region_boxes(self, video: VideoRecord, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """The annotated boxes present (and at least `min_box_size`) in frames a and b."""
        p = self.params
        if p.tracks == "main":
            if video.main_track is None or video.main_track not in video.tracks:
                raise DataError(f"gt-region-tracks: video {video.name} ({video.source}) has "
                                f"{len(video.tracks)} tracks but no main (annotated) track",
                                "set `tracks: all` on the sampler to use every track")
            ids = [video.main_track]
        else:
            ids = sorted(video.tracks)
        qa, kb = [], []
        for tid in ids:
            track = video.tracks[tid].boxes
            if b >= len(track) or np.isnan(track[[a, b]]).any():
                continue
            sides = track[[a, b], 2:] - track[[a, b], :2]
            if sides.min() < max(p.min_box_size, 1e-3):
                continue
            qa.append(track[a])
            kb.append(track[b])
        return (np.asarray(qa, dtype=np.float32).reshape(-1, 4),
                np.asarray(kb, dtype=np.float32).reshape(-1, 4))

    def pairs(self, dataset: Dataset) -> TrackPairs:
        p = self.params
        if not isinstance(dataset, VideoDataset):
            raise DataError(f"gt-region-tracks pairs frames of videos; dataset "
                            f"{type(dataset).__name__} has none",
                            "train on a video dataset with annotated tracks (trackingnet, "
                            "got10k, video-folder with *.tracks.json sidecars)")
        videos = dataset.videos(p.subset)
        items: list[RegionPair] = []
        for v, video in enumerate(videos):
            if not video.tracks:
                raise DataError(f"gt-region-tracks: video {video.name} ({video.source}) has no "
                                "annotated tracks",
                                "use videos with annotated boxes (trackingnet anno/*.txt, got10k "
                                "groundtruth.txt, *.tracks.json sidecars), or "
                                "selective-search-tracker for unannotated ones")
            for i, _ in temporal_pairs(video.num_frames, p.gap):
                items.append(RegionPair(v, i, i + p.gap, *self.region_boxes(video, i, i + p.gap)))
        result = TrackPairs(videos, items, p, self.views)
        self._stats = {"videos": len(videos), "items": len(result),
                       "items_with_regions": result.items_with_regions(),
                       "region_pairs": result.region_pairs(), "gap": p.gap, "tracks": p.tracks}
        if not result.region_pairs():
            raise DataError(f"gt-region-tracks: no annotated box is present in both frames of "
                            f"any pair (i, i + {p.gap}) of the {len(videos)} video(s)",
                            "lower `gap` or `min_box_size`")
        return result

    def stats(self) -> dict[str, Any]:
        return dict(self._stats)


@hookimpl
def register_pair_samplers(register: Register) -> None:
    register("selective-search-tracker", SelectiveSearchTracker,
             params=SelectiveSearchTrackerParams,
             summary="regions proposed by selective search, tracked by layer3 ROI features of a "
                     "frozen encoder; frame and region pairs (paper sec. 5)")
    register("gt-region-tracks", GtRegionTracks, params=GtRegionTracksParams,
             summary="frames i and i+k with the annotated boxes as region pairs (the paper's "
                     "Ground Truth Tracks model, for region-moco)")
