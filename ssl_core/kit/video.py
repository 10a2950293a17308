"""Videos: the record a video dataset lists, and the one frame reader.

A video is either a file (mp4, avi, mkv, webm: decoded with decord) or a folder of
frame images (TrackingNet, GOT-10k: read with `load_rgb`). Either way samplers ask
`read_frames(video, indices)` for a uint8 (N, H, W, 3) array and never open files
themselves, so decoding, batching (`get_batch`) and error messages live here.

Object tracks (`VideoRecord.tracks`) are boxes per frame; a dataset that has them
(TrackingNet's `anno/*.txt`, GOT-10k's `groundtruth.txt`, sslc's `*.tracks.json`
sidecars) fills them in. sslc's sidecar format, next to a video `clip.mp4`::

    clip.tracks.json = {"num_frames": T, "size": [H, W], "fps": F,
                        "objects": [{"id": 1, "category": "chair", "instance": 7,
                                     "boxes": [[x1, y1, x2, y2] or null, ... T entries]}]}
"""

from __future__ import annotations

import json
import os
import threading
import zlib
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ssl_core.errors import ComponentError, DataError
from ssl_core.interfaces import Dataset, ImageRecord
from ssl_core.kit.boxes import check_boxes
from ssl_core.kit.imageio import load_rgb
from ssl_core.kit.memory import BudgetedCache

#: file suffixes decoded as videos (lower case)
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov")

#: k, the frames between a temporal pair's two frames. The paper's text does not print it (it
#: points to its Appendix B). 100 frames (3.3 s at TrackingNet's 30 fps) gives about the
#: paper's 118K pairs from TrackingNet's 30,132 training videos (~14.2M frames): sum over
#: videos of floor((T - 1) / k) ~ 127K.
TEMPORAL_GAP = 100


def temporal_pairs(num_frames: int, gap: int) -> list[tuple[int, int]]:
    """The paper's V_pairs for one video: (i, i + k) for every i with i mod k == 0, i + k < T.
    Every sampler of temporal pairs (frames, tracks, tracked regions) takes them from here,
    so models compared in the paper's Table 4 see the same pairs."""
    return [(i, i + gap) for i in range(0, num_frames - gap, gap)]


@dataclass(frozen=True)
class Track:
    """One object's boxes over a video: (T, 4) float32 x1, y1, x2, y2; NaN rows where absent."""

    boxes: np.ndarray
    label: str | None = None

    def present(self) -> np.ndarray:
        """Which frames have a box (bool, T)."""
        return ~np.isnan(self.boxes).any(axis=1)


@dataclass(frozen=True)
class VideoRecord:
    """One video as a dataset reader found it.

    `source` is the video file, or the folder holding `frames` (frame image paths in
    order) when the video is stored as images. `tracks` maps a track id to its boxes;
    the dataset's annotated (tracked) object, when it has one, is `main_track`.
    """

    name: str
    source: Path
    num_frames: int
    frames: tuple[Path, ...] = ()
    tracks: Mapping[str, Track] = field(default_factory=dict)
    main_track: str | None = None
    fps: float | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    #: the video's class when the dataset has one (a folder name, GOT-10k's object_class)
    label: str | None = None

    @property
    def is_file(self) -> bool:
        return not self.frames


class VideoDataset(Dataset):
    """A dataset of videos. `records()` lists frames as images (what a frame-level probe or
    evaluator would read); pair samplers use `videos()` and `read_frames`."""

    subsets: ClassVar[tuple[str, ...]] = ("all",)
    #: False for datasets of video files: they have no per-frame images (`records()`), so
    #: `sslc validate` refuses a probe or evaluator pointed at one
    frame_images: ClassVar[bool] = True

    @abstractmethod
    def videos(self, subset: str | None = None) -> list[VideoRecord]:
        """Every readable video of `subset`, in a stable order (after `prepare()`)."""

    def stats(self) -> dict[str, int]:
        """Counts a run's results should keep (videos read, skipped as unreadable, ...)."""
        return {}

    def records(self, subset: str | None = None) -> list[ImageRecord]:
        """Frames stored as images, one record per frame (group = the video's name);
        video files have no per-frame path, so they are refused by name."""
        out = []
        for video in self.videos(subset):
            if video.is_file:
                raise DataError(f"{video.source} is a video file; it has no per-frame images",
                                "use a video pair sampler (video-frames, frame-temporal, ...) "
                                "with this dataset")
            out += [ImageRecord(path=p, label=video.label, group=video.name, meta={"frame": i})
                    for i, p in enumerate(video.frames)]
        return out


@dataclass
class VideoSelection:
    """What `select_videos` kept and left out; `stats()` is what a run's results record."""

    videos: list[VideoRecord]
    #: video name -> why it could not be read (on_bad_video: skip)
    skipped: dict[str, str]
    #: videos left out as shorter than min_frames
    short: int

    def stats(self) -> dict[str, int]:
        return {"videos": len(self.videos), "skipped_bad_videos": len(self.skipped),
                "skipped_short_videos": self.short}


def select_videos(names: Sequence[str], read: Callable[[int], VideoRecord], *, min_frames: int,
                  on_bad_video: str, max_videos: int | None = None, progress: Any | None = None,
                  description: str = "reading videos") -> VideoSelection:
    """Read video `i` of `names` with `read(i)`, keeping those with `min_frames`+ frames.

    A `DataError` from `read` stops the scan (`on_bad_video: error`) or is counted
    (`skip`). With `max_videos`, videos are read in a stable order (a hash of the name, so
    every machine picks the same subset whatever else the folder holds) until that many
    are kept; a bad one is then replaced by the next. Kept videos stay in `names` order.
    """
    order = list(range(len(names)))
    if max_videos is not None:
        order.sort(key=lambda i: (zlib.crc32(names[i].encode()), names[i]))
    task = progress.add_task(description, total=len(names), info="") if progress is not None else None
    skipped: dict[str, str] = {}
    short = 0
    found: dict[int, VideoRecord] = {}
    for i in order:
        if max_videos is not None and len(found) >= max_videos:
            break
        try:
            video = read(i)
        except DataError as exc:
            if on_bad_video == "error":
                raise
            skipped[names[i]] = exc.message
            continue
        finally:
            if progress is not None and task is not None:
                progress.advance(task)
        if video.num_frames < min_frames:
            short += 1
            continue
        found[i] = video
    if progress is not None and task is not None:
        progress.update(task, completed=len(names))
    return VideoSelection([found[i] for i in sorted(found)], skipped, short)


class SelectedVideoDataset(VideoDataset):
    """A VideoDataset whose videos `select()` chooses once (with `select_videos`):
    `prepare`, `videos`, `stats` and `skipped` come from that selection."""

    #: the registered name, and the hint, of the error for a subset other than "all"
    dataset_name: ClassVar[str] = "this dataset"
    subset_hint: ClassVar[str] = "use 'all' (or leave it out)"
    _picked: VideoSelection | None = None

    @abstractmethod
    def select(self, progress: Any | None) -> VideoSelection:
        """Find and check the videos; a DataError when none is usable."""

    def prepare(self, progress: Any | None = None) -> None:
        self._picked = self.select(progress)

    def videos(self, subset: str | None = None) -> list[VideoRecord]:
        if subset not in (None, "all"):
            raise ComponentError(f"{self.dataset_name} has no subset {subset!r}", self.subset_hint)
        if self._picked is None:
            self._picked = self.select(None)
        return self._picked.videos

    def stats(self) -> dict[str, int]:
        self.videos()
        assert self._picked is not None
        return self._picked.stats()

    @property
    def skipped(self) -> dict[str, str]:
        """Video name -> why it was left out (`on_bad_video: skip`)."""
        return self._picked.skipped if self._picked is not None else {}


# --- decoding -------------------------------------------------------------------------------

_READERS: OrderedDict[str, Any] = OrderedDict()
_READERS_LOCK = threading.Lock()
_MAX_OPEN = 8
#: readers a forked child inherited from its parent: decord hangs using or freeing them, so a
#: child (a DataLoader worker) sets them aside, never touched, and opens its own
_INHERITED: list[Any] = []


def _drop_inherited_readers() -> None:
    global _READERS_LOCK
    _INHERITED.extend(_READERS.values())
    _READERS.clear()
    _READERS_LOCK = threading.Lock()
    DECODED.reset_lock()  # the decoded frames themselves stay: they are plain arrays


#: environment variable: MiB of whole decoded videos each process keeps (0: none)
CACHE_ENV = "SSLC_VIDEO_CACHE_MB"
DEFAULT_CACHE_MB = 256
#: a video is kept whole only if its frames take at most this share of the budget
WHOLE_VIDEO_SHARE = 8
#: what one seeking read costs beyond the frames it decodes, in frames: 1.6 ms of CPU even
#: at a keyframe, against 0.19 ms per frame decoding a 128x96 video whole (decord 0.6, mp4v)
READ_OVERHEAD_FRAMES = 8


@dataclass
class _SeekCost:
    """What reading one video by seeking has cost so far, in decoded frames."""

    keyframes: np.ndarray
    frame_bytes: int
    frames: int = 0


class DecodedVideos:
    """Whole decoded videos kept in memory, least recently used out first, one cache per
    process (each DataLoader worker fills its own).

    Samplers read two or three frames per item, and decord decodes each read from the
    keyframe before it: on short videos drawn from again and again over the epochs, decoding
    a video once and slicing it costs a fraction of that. A video is decoded whole once its
    reads have cost as many decoded frames as it has (so at most twice what seeking alone
    would have cost, however often it is read), and only when it takes at most 1/8 of the
    budget, so long videos are always read by seeking. The frames are the same either way.
    """

    def __init__(self, budget_bytes: int | None = None) -> None:
        self._budget = budget_bytes
        self._videos: BudgetedCache[np.ndarray] | None = None  # made once the budget is known
        self._seeks: dict[str, _SeekCost] = {}

    @property
    def budget(self) -> int:
        if self._budget is None:
            self._budget = _budget_from_env()
        return self._budget

    @property
    def videos(self) -> BudgetedCache[np.ndarray]:
        if self._videos is None:
            self._videos = BudgetedCache(self.budget)
        return self._videos

    def reset_lock(self) -> None:
        if self._videos is not None:
            self._videos.reset_lock()

    def get(self, key: str) -> np.ndarray | None:
        return self.videos.get(key)

    def wants(self, key: str, num_frames: int) -> bool:
        """Whether to decode `key` whole now: its reads have cost as much, and it fits."""
        seen = self._seeks.get(key)
        return (seen is not None and seen.frames >= num_frames
                and num_frames * seen.frame_bytes * WHOLE_VIDEO_SHARE <= self.budget)

    def count(self, key: str, reader: Any, ascending: Sequence[int], frame: np.ndarray) -> None:
        """Add what one seeking read of `ascending` cost, in decoded frames: estimated from
        the keyframes (decord decodes from the keyframe before a frame unless it is already
        there), plus the read's own overhead."""
        seen = self._seeks.get(key)
        if seen is None:
            try:
                keyframes = np.asarray(reader.get_key_indices(), dtype=np.int64)
            except Exception:  # no index: count as if every frame were a keyframe
                keyframes = np.zeros(0, dtype=np.int64)
            seen = self._seeks[key] = _SeekCost(keyframes, int(frame.nbytes))
        keys = seen.keyframes
        cost, at = READ_OVERHEAD_FRAMES, -1
        for i in ascending:
            k = int(np.searchsorted(keys, i, side="right")) - 1
            before = int(keys[k]) if k >= 0 else i  # no keyframe at or before it: the frame alone
            start = before if before > at else at + 1
            cost += i - start + 1
            at = i
        seen.frames += cost

    def put(self, key: str, frames: np.ndarray) -> None:
        self.videos.put(key, frames)

    def forget(self, key: str) -> None:
        self.videos.pop(key)
        self._seeks.pop(key, None)


def _budget_from_env() -> int:
    raw = os.environ.get(CACHE_ENV, "").strip()
    if not raw:
        return DEFAULT_CACHE_MB << 20
    try:
        mb = float(raw)
        if mb < 0:
            raise ValueError
    except ValueError:
        raise DataError(f"{CACHE_ENV}={raw!r} is not a size in MiB",
                        f"set {CACHE_ENV} to a number of MiB (0 keeps no decoded videos)") from None
    return int(mb * (1 << 20))


#: this process's decoded videos
DECODED = DecodedVideos()

os.register_at_fork(after_in_child=_drop_inherited_readers)


def _reader(path: Path) -> Any:
    """A decord VideoReader for `path`, kept open (a few per process: DataLoader workers
    each keep their own, since readers do not pickle)."""
    key = str(path)
    with _READERS_LOCK:
        if key in _READERS:
            _READERS.move_to_end(key)
            return _READERS[key]
    import decord

    try:
        reader = decord.VideoReader(key, num_threads=1)
    except Exception as exc:  # decord raises its own DECORDError / RuntimeError
        raise bad_video(path, exc) from None
    with _READERS_LOCK:
        _READERS[key] = reader
        while len(_READERS) > _MAX_OPEN:
            _READERS.popitem(last=False)
    return reader


def bad_video(path: Path, exc: BaseException | str) -> DataError:
    """The one error for a video that cannot be decoded."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DataError(f"cannot decode video {path}: {reason[:200]}",
                     "re-encode or remove the file, or set `on_bad_video: skip` on the dataset "
                     "to train on the other videos")


def inspect_video(path: Path) -> tuple[int, float, tuple[int, int]]:
    """(frame count, fps, (height, width)) of a video file, decoding its last frame so a
    truncated file fails here (one DataError naming it) rather than mid-training.
    A reader kept open from before is dropped first: the file may have been rewritten."""
    _forget(path)
    reader = _reader(path)
    try:
        n = len(reader)
        if n == 0:
            raise ValueError("no frames")
        last = reader[n - 1].asnumpy()
        if last.ndim != 3 or last.shape[2] != 3:  # decord's small-width bug (_opencv_frames)
            last = _opencv_frames(path, [n - 1])[0]
        fps = float(reader.get_avg_fps())
    except DataError:
        raise
    except Exception as exc:
        _forget(path)
        raise bad_video(path, exc) from None
    return n, fps, (int(last.shape[0]), int(last.shape[1]))


def _forget(path: Path) -> None:
    with _READERS_LOCK:
        _READERS.pop(str(path), None)
    DECODED.forget(str(path))


def read_frames(video: VideoRecord, indices: Sequence[int], cache: DecodedVideos | None = None) -> np.ndarray:
    """Frames `indices` of `video` as uint8 (N, H, W, 3), in the order asked (repeats allowed).

    Video files are decoded in one `get_batch` call over the distinct indices in ascending
    order (decord then never seeks backwards, and decodes a repeated frame once; 1.5-3x
    faster than the asked order, see benchmarks/bench_video_decode.py), then put back in
    the order asked; a short video read often comes from `cache` (default: this process's
    `DECODED`) instead. Frame folders load each image.
    """
    idx = [int(i) for i in indices]
    bad = [i for i in idx if not 0 <= i < video.num_frames]
    if bad:
        raise DataError(f"video {video.name} has {video.num_frames} frames; asked for frame {bad[0]}",
                        "check the sampler's frame gap against the video lengths")
    if not video.is_file:
        return np.stack([np.asarray(load_rgb(video.frames[i])) for i in idx])
    cache = DECODED if cache is None else cache
    key = str(video.source)
    whole = cache.get(key)
    if whole is None and cache.wants(key, video.num_frames):
        whole = _decode(video.source, list(range(video.num_frames)))
        cache.put(key, whole)
    if whole is not None:
        return whole[idx]
    ascending = sorted(set(idx))
    batch = _decode(video.source, ascending)
    if cache.budget:
        cache.count(key, _reader(video.source), ascending, batch[0])
    if ascending == idx:
        return batch
    row = {frame: i for i, frame in enumerate(ascending)}
    return batch[[row[i] for i in idx]]


def _decode(path: Path, ascending: list[int]) -> np.ndarray:
    """Frames `ascending` of a video file in one decord `get_batch` call."""
    reader = _reader(path)
    try:
        batch = np.asarray(reader.get_batch(ascending).asnumpy())
    except Exception:  # decord 0.6 mis-strides some small widths (48, 72 px): OpenCV then
        return _opencv_frames(path, ascending)
    if batch.shape[-1] != 3:
        return _opencv_frames(path, ascending)
    return batch


def _opencv_frames(path: Path, indices: Sequence[int]) -> np.ndarray:
    """Frames `indices` (ascending) decoded by OpenCV, for the frame widths decord 0.6 gets
    wrong (it returns 4 mis-strided channels, and `get_batch` fails)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames, want, i = [], list(indices), 0
    try:
        while want:
            ok, frame = capture.read()
            if not ok:
                raise bad_video(path, f"frame {want[0]} could not be read")
            while want and want[0] == i:
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                want.pop(0)
            i += 1
    finally:
        capture.release()
    return np.stack(frames)


def _frame_namer(where: str) -> Callable[[int], str]:
    return lambda i: f"{where}, frame {i + 1}"


def read_tracks_sidecar(path: Path, frame_size: tuple[int, int] | None = None
                        ) -> tuple[dict[str, Track], dict[str, Any]]:
    """Tracks (by object id) and the other fields of an sslc `*.tracks.json` sidecar.

    Every box is checked as it is read (`check_boxes`): four numbers, finite, not inverted,
    not wholly outside the frame (the sidecar's `size`, else `frame_size`, both (height,
    width)); boxes partly outside are clipped. Two objects with one id are refused."""
    hint = ("see docs/video.md for the *.tracks.json format, or set `on_bad_video: skip` to "
            "train on the other videos")
    try:
        doc = json.loads(path.read_text())
        objects = doc["objects"]
        hw = doc.get("size", frame_size)
        size = None if hw is None else (int(hw[1]), int(hw[0]))
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise DataError(f"cannot read track annotations {path}: {exc}", hint) from None
    if not isinstance(objects, list):
        raise DataError(f"{path}: `objects` is not a list", hint)
    tracks: dict[str, Track] = {}
    first: dict[str, int] = {}
    for k, obj in enumerate(objects, 1):
        try:
            oid = str(obj["id"])
            where = f"{path}, object {k} (id {obj['id']!r})"
            boxes = obj["boxes"]
            if not isinstance(boxes, list):
                raise TypeError("`boxes` is not a list")
        except (KeyError, TypeError) as exc:
            raise DataError(f"{path}, object {k}: {exc}", hint) from None
        if oid in first:
            raise DataError(f"{path}: object {k} has id {obj['id']!r}, as object {first[oid]}; "
                            "one would silently replace the other", "give every object its own id")
        first[oid] = k
        rows = []
        for t, b in enumerate(boxes, 1):
            if b is None:
                rows.append([np.nan] * 4)
                continue
            try:
                if not isinstance(b, list) or len(b) != 4:
                    raise ValueError
                rows.append([float(v) for v in b])
            except (ValueError, TypeError):
                raise DataError(f"{where}, frame {t}: expected a box [x1, y1, x2, y2] (4 numbers) "
                                f"or null, got {json.dumps(b)}", hint) from None
        checked = check_boxes(np.array(rows, dtype=np.float64).reshape(-1, 4),
                              _frame_namer(where), size=size, hint=hint)
        category = obj.get("category") if isinstance(obj, dict) else None
        tracks[oid] = Track(checked.boxes.astype(np.float32), category)
    return tracks, {k: v for k, v in doc.items() if k != "objects"}


def xywh_to_xyxy(rows: np.ndarray) -> np.ndarray:
    """(T, 4) x, y, w, h boxes (TrackingNet, GOT-10k) -> x1, y1, x2, y2; all-NaN rows and
    zero-size rows (an absent target) become NaN. Other bad rows (a NaN or infinite value,
    a negative size) are kept as they are for `check_boxes` to name."""
    rows = np.asarray(rows, dtype=np.float32).reshape(-1, 4)
    out = np.concatenate([rows[:, :2], rows[:, :2] + rows[:, 2:]], axis=1)
    absent = (rows[:, 2] == 0) | (rows[:, 3] == 0) | np.isnan(rows).all(axis=1)
    out[absent] = np.nan
    return out
