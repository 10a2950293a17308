"""GOT-10k reader (native layout) and the `got10k-occlusion` invariance probe.

Layout of a split folder (what `list.txt` sits in)::

    list.txt                      one sequence folder name a line
    GOT-10k_Train_000001/
        00000001.jpg ...          frames, 1-based 8-digit names
        groundtruth.txt           one `x,y,w,h` line per frame
        absence.label             one 0/1 a line (1: target absent)
        cover.label               one 0..8 a line (visible fraction of the target, in eighths)
        cut_by_image.label        one 0/1 a line (1: box extends past the image border)
        meta_info.ini             `[METAINFO]` then `key: value` lines (object_class, ...)

The dataset is also a `VideoDataset`: `videos()` gives each sequence folder as a video of
its frame images, groundtruth.txt as the main track ("1", NaN where absence.label says 1).
`records()` (one record per frame, what the occlusion probe reads) is unchanged by that.

The probe reproduces the authors' released code (extract_GOT10k_features.py): one
random frame per distinct cover level, numpy seed 1992, sequences whose cover levels
span fewer than 4 are dropped.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import AliasChoices, Field, model_validator

from ssl_core import (
    ComponentError,
    DataError,
    Dataset,
    ImageRecord,
    InvarianceProbe,
    Params,
    ProbeItem,
    ProbeSet,
    Register,
    Track,
    VideoDataset,
    VideoRecord,
    check_boxes,
    frame_size,
    hookimpl,
)

SPLITS = ("train", "val")
_BOX_SEP = re.compile(r"[,\s]+")
_RESOLUTION = re.compile(r"(\d+)\D+(\d+)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_FRAME_NAME = re.compile(r"^(\d{8})\.jpg$", re.IGNORECASE)
#: the track id of the annotated object in `videos()`
MAIN_TRACK = "1"


# -- parsing one sequence ---------------------------------------------------------------


def parse_meta_info(text: str) -> dict[str, str]:
    """`key: value` pairs of a meta_info.ini, tolerant of what configparser rejects.

    The first `[...]` header is skipped, lines without a colon are ignored, a value may
    itself contain colons (urls), and the first occurrence of a key wins.
    """
    info: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip().lstrip("\ufeff")
        if not line or (line.startswith("[") and line.endswith("]")) or ":" not in line:
            continue
        key, _, value = line.partition(":")
        info.setdefault(key.strip().lower(), value.strip())
    return info


def parse_resolution(value: str | None) -> tuple[int, int] | None:
    """`(1280, 720)` -> (1280, 720); None when absent or unparsable."""
    if not value:
        return None
    m = _RESOLUTION.search(value)
    return (int(m.group(1)), int(m.group(2))) if m else None


def parse_boxes(path: Path) -> np.ndarray:
    """groundtruth.txt -> float array (frames x 4) of x, y, w, h; blank lines become NaN."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        raise DataError(f"missing GOT-10k annotation file {path}",
                        "every sequence folder needs groundtruth.txt; re-extract the sequence "
                        "or use bad_sequences: skip") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if all(line.count(",") == 3 for line in lines):  # the real files: C-parsed fast path
        values = _fast_floats(",".join(lines), ",")
        if values is not None and len(values) == 4 * len(lines):
            return values.reshape(-1, 4)
    boxes = np.full((len(lines), 4), np.nan, dtype=np.float64)
    for i, line in enumerate(lines):
        line = line.strip()
        if not line:
            continue
        parts = [p for p in _BOX_SEP.split(line) if p]
        try:
            if len(parts) != 4:
                raise ValueError
            boxes[i] = [float(p) for p in parts]
        except ValueError:
            raise DataError(f"{path}, line {i + 1}: expected 'x,y,w,h', got {line!r}",
                            "groundtruth.txt holds one comma-separated x,y,w,h box per frame"
                            ) from None
    return boxes


def parse_labels(path: Path, frames: int) -> np.ndarray | None:
    """One integer a line (absence/cover/cut_by_image); None when the file is absent."""
    if not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    fast = _fast_floats(" ".join(lines), " ")
    if fast is not None and len(fast) == len(lines):
        values = fast.astype(np.int64)
    else:
        bad = next((i for i, v in enumerate(lines) if not _is_number(v)), 0)
        raise DataError(f"{path}, line {bad + 1}: expected one integer, got {lines[bad]!r}",
                        "label files hold one integer per frame")
    if len(values) != frames:
        raise DataError(
            f"{path} has {len(values)} lines but groundtruth.txt has {frames} frames",
            "label files need one line per frame; re-extract the sequence "
            "or use bad_sequences: skip",
        )
    return values


def _fast_floats(text: str, sep: str) -> np.ndarray | None:
    """numpy's C text parser; None when the text is not all numbers (callers then look
    line by line for the culprit)."""
    if not text.strip():
        return np.zeros(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # "could not be read to its end"
        try:
            return np.fromstring(text, dtype=np.float64, sep=sep)
        except (ValueError, DeprecationWarning):
            return None


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


@dataclass
class Got10kSequence:
    """The annotations of one sequence; frames are 0-based (file = frame + 1)."""

    name: str
    folder: Path
    object_class: str  # spaces already replaced by underscores, as the authors did
    boxes: np.ndarray  # frames x 4: x, y, w, h
    cover: np.ndarray | None
    absence: np.ndarray | None
    cut_by_image: np.ndarray | None
    info: dict[str, str] = field(default_factory=dict)
    #: boxes not finite, inverted or wholly outside the frame, made absent when read
    bad_boxes: int = 0

    def __post_init__(self) -> None:
        # per-frame values computed once: records() builds ~1.4M of them on the real split
        x, y, w, h = self.boxes.T
        valid = np.isfinite(self.boxes).all(axis=1) & (w > 0) & (h > 0)
        xyxy = np.stack([x, y, x + w, y + h], axis=1)
        self._boxes: list[tuple[float, float, float, float] | None] = [
            tuple(b) if ok else None for b, ok in zip(xyxy.tolist(), valid.tolist(), strict=True)
        ]
        absent = ~valid if self.absence is None else (~valid | (self.absence == 1))
        self._absent: list[bool] = absent.tolist()
        self._cover: list[int | None] = (
            [None] * len(valid) if self.cover is None else self.cover.tolist())
        self._cut: list[bool | None] = (
            [None] * len(valid) if self.cut_by_image is None
            else (self.cut_by_image != 0).tolist())
        self.image_size: tuple[int, int] | None = parse_resolution(self.info.get("resolution"))
        """(width, height) from meta_info.ini's `resolution`, when it has one."""

    @property
    def num_frames(self) -> int:
        return len(self.boxes)

    def frame_path(self, frame: int) -> Path:
        return Path(f"{self.folder}/{frame + 1:08d}.jpg")

    def box(self, frame: int) -> tuple[float, float, float, float] | None:
        """(x1, y1, x2, y2), or None when the box is NaN or has no area."""
        return self._boxes[frame]

    def record(self, frame: int) -> ImageRecord:
        meta: dict[str, Any] = {
            "frame": frame,
            "cover": self._cover[frame],
            "absent": self._absent[frame],
            "cut_by_image": self._cut[frame],
            "image_size": self.image_size,
        }
        return ImageRecord(path=self.frame_path(frame), label=self.object_class,
                           group=self.name, box=self._boxes[frame], meta=meta)


def read_sequence(folder: Path) -> Got10kSequence:
    """Read one sequence's annotation files (never its frames)."""
    meta_file = folder / "meta_info.ini"
    try:
        info = parse_meta_info(meta_file.read_text(encoding="utf-8", errors="replace"))
    except FileNotFoundError:
        raise DataError(f"missing GOT-10k annotation file {meta_file}",
                        "every sequence folder needs meta_info.ini; re-extract the sequence "
                        "or use bad_sequences: skip") from None
    object_class = info.get("object_class", "")
    if not object_class:
        raise DataError(f"{meta_file}: no 'object_class: ...' line",
                        "meta_info.ini must name the object class, e.g. 'object_class: dog'")
    gt = folder / "groundtruth.txt"
    boxes = parse_boxes(gt)
    n = len(boxes)
    absence = parse_labels(folder / "absence.label", n)
    bad = _bad_boxes(boxes, absence, parse_resolution(info.get("resolution")),
                     lambda i: f"{gt}, line {i + 1}")
    boxes[bad] = np.nan
    return Got10kSequence(
        name=folder.name,
        folder=folder,
        object_class=object_class.replace(" ", "_"),
        boxes=boxes,
        cover=parse_labels(folder / "cover.label", n),
        absence=absence,
        cut_by_image=parse_labels(folder / "cut_by_image.label", n),
        info=info,
        bad_boxes=int(bad.sum()),
    )


def _xyxy(boxes: np.ndarray, absence: np.ndarray | None) -> np.ndarray:
    """x, y, w, h -> x1, y1, x2, y2 in float64; NaN where the target is absent (absence.label,
    all-NaN or zero-size rows), so only the boxes that claim a target are checked."""
    x, y, w, h = boxes.T
    out = np.stack([x, y, x + w, y + h], axis=1)
    absent = np.isnan(boxes).all(axis=1) | (w == 0) | (h == 0)
    if absence is not None:
        absent |= absence == 1
    out[absent] = np.nan
    return out


def _bad_boxes(boxes: np.ndarray, absence: np.ndarray | None, size: tuple[int, int] | None,
               where: Any) -> np.ndarray:
    """Which rows are not finite, inverted or wholly outside the frame: skipped (counted),
    as the probe already drops frames without a usable box."""
    return check_boxes(_xyxy(boxes, absence), where, size=size, on_bad="skip").bad


# -- the dataset ----------------------------------------------------------------------------


def find_split_dir(root: Path, split: str) -> Path:
    """The folder holding list.txt: root itself, root/<split>, or root/GOT-10k/<split>."""
    root = Path(root).expanduser()
    candidates = [root, root / split, root / "GOT-10k" / split]
    for cand in candidates:
        if (cand / "list.txt").is_file():
            return cand
    if not root.exists():
        raise DataError(f"GOT-10k root {root} does not exist",
                        "set root to the GOT-10k 'train' folder (the one holding list.txt), "
                        "the GOT-10k folder, or a data root holding GOT-10k/train")
    raise DataError(
        f"GOT-10k list file not found: looked for {', '.join(str(c / 'list.txt') for c in candidates)}",
        "set root to the GOT-10k split folder that holds list.txt and the "
        "GOT-10k_Train_* sequence folders",
    )


class Got10kParams(Params):
    root: Path
    split: Literal["train", "val"] = "train"
    bad_sequences: Literal["error", "skip"] = Field(
        "error", validation_alias=AliasChoices("bad_sequences", "on_bad_video"),
        description="`skip`: leave out (and count) missing or malformed sequences; "
                    "`on_bad_video`, the other video datasets' name, is accepted too")

    @model_validator(mode="before")
    @classmethod
    def _one_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "bad_sequences" in data and "on_bad_video" in data:
            raise ValueError("give bad_sequences or on_bad_video (the same setting), not both")
        return data


def parse_fps(value: str | None) -> float | None:
    """meta_info.ini's `anno_fps: 10Hz` -> 10.0; None when absent or unparsable."""
    m = _NUMBER.search(value or "")
    return float(m.group(0)) if m else None


def sequence_frames(seq: Got10kSequence) -> tuple[Path, ...]:
    """The frame paths 00000001.jpg ... of a sequence, checked against its groundtruth.txt."""
    try:
        with os.scandir(seq.folder) as entries:
            present = {int(m.group(1)) for e in entries if (m := _FRAME_NAME.match(e.name))}
    except OSError as exc:
        raise DataError(f"cannot list sequence folder {seq.folder}: {exc.strerror or exc}",
                        "check its permissions, or use bad_sequences: skip") from None
    expected = set(range(1, seq.num_frames + 1))
    if present != expected:
        missing, extra = sorted(expected - present), sorted(present - expected)
        what = (f"is missing frame {missing[0]:08d}.jpg" if missing
                else f"has frame {extra[0]:08d}.jpg beyond the last box")
        raise DataError(f"sequence folder {seq.folder} {what} ({len(present)} frames, "
                        f"groundtruth.txt has {seq.num_frames} boxes)",
                        "re-extract the sequence, or use bad_sequences: skip")
    return tuple(seq.frame_path(i) for i in range(seq.num_frames))


def sequence_video(seq: Got10kSequence) -> VideoRecord:
    """A sequence as a video of its frame images; the box is NaN where the target is absent."""
    frames = sequence_frames(seq)
    size = seq.image_size or (frame_size(frames[0]) if frames else None)
    checked = check_boxes(_xyxy(seq.boxes, seq.absence), lambda i: f"{seq.folder}, frame {i + 1}",
                          size=size, on_bad="skip")  # clipped to the frame for training crops
    seq.bad_boxes += checked.skipped
    boxes = checked.boxes.astype(np.float32)
    return VideoRecord(name=seq.name, source=seq.folder, num_frames=seq.num_frames,
                       frames=frames,
                       tracks={MAIN_TRACK: Track(boxes, seq.object_class)}, main_track=MAIN_TRACK,
                       fps=parse_fps(seq.info.get("anno_fps")), label=seq.object_class,
                       meta={"cover": seq.cover, "image_size": seq.image_size})


class Got10kDataset(VideoDataset):
    """GOT-10k train/val split read in place: one record per frame, grouped by sequence;
    `videos()` gives the same sequences as videos of frame images."""

    subsets: ClassVar[tuple[str, ...]] = ("all",)

    def __init__(self, params: Got10kParams) -> None:
        self.params = params
        self.given_root = Path(params.root)
        self.split: str = params.split
        self.bad_sequences: str = params.bad_sequences
        self._split_dir: Path | None = None
        #: sequence name -> why it was skipped (bad_sequences: skip)
        self.skipped: dict[str, str] = {}
        self._videos: list[VideoRecord] | None = None
        self._video_skipped: int = 0
        self._bad_boxes: int = 0

    @property
    def root(self) -> Path:  # type: ignore[override]
        if self._split_dir is None:
            self._split_dir = find_split_dir(self.given_root, self.split)
        return self._split_dir

    def sequence_names(self) -> list[str]:
        """list.txt in file order; the order the probe's random draws follow."""
        list_file = self.root / "list.txt"
        names = [ln.strip() for ln in list_file.read_text(encoding="utf-8").splitlines()]
        names = [n for n in names if n]
        if not names:
            raise DataError(f"{list_file} lists no sequences",
                            "list.txt holds one sequence folder name a line")
        return names

    def prepare(self, progress: Any | None = None) -> None:
        """Check list.txt and that every listed folder exists; parse the first sequence."""
        names = self.sequence_names()
        missing = [n for n in names if not (self.root / n).is_dir()]
        if missing and self.bad_sequences == "error":
            raise DataError(
                f"{len(missing)} sequence folder(s) listed in {self.root / 'list.txt'} are "
                f"missing, e.g. {self.root / missing[0]}",
                "finish extracting the split, or set bad_sequences: skip to leave them out",
            )
        present = [n for n in names if n not in set(missing)]
        if present:
            read_sequence(self.root / present[0])

    def iter_sequences(self) -> Iterator[Got10kSequence]:
        """Each listed sequence in list.txt order, read lazily (no image is opened)."""
        self.skipped = {}
        for name in self.sequence_names():
            folder = self.root / name
            try:
                if not folder.is_dir():
                    raise DataError(
                        f"sequence folder {folder} (listed in {self.root / 'list.txt'}) is missing",
                        "finish extracting the split, or set bad_sequences: skip",
                    )
                seq = read_sequence(folder)
            except DataError as exc:
                if self.bad_sequences == "error":
                    raise
                self.skipped[name] = exc.message
                continue
            yield seq

    def records(self, subset: str | None = None) -> list[ImageRecord]:
        if subset not in (None, "all"):
            raise ComponentError(f"got10k has no subset {subset!r}", "use 'all' (or leave it out)")
        return [seq.record(i) for seq in self.iter_sequences() for i in range(seq.num_frames)]

    def videos(self, subset: str | None = None) -> list[VideoRecord]:
        """Each sequence as a video (list.txt order); its frame files are checked against
        groundtruth.txt, so a partly extracted sequence fails (or is skipped) here."""
        if subset not in (None, "all"):
            raise ComponentError(f"got10k has no subset {subset!r}", "use 'all' (or leave it out)")
        if self._videos is None:
            videos = []
            self._bad_boxes = 0
            for seq in self.iter_sequences():
                try:
                    videos.append(sequence_video(seq))
                    self._bad_boxes += seq.bad_boxes
                except DataError as exc:
                    if self.bad_sequences == "error":
                        raise
                    self.skipped[seq.name] = exc.message
            if not videos:
                raise DataError(f"no readable GOT-10k sequence in {self.root} "
                                f"({len(self.skipped)} skipped)",
                                "check the split folder and its sequence folders")
            self._videos, self._video_skipped = videos, len(self.skipped)
        return self._videos

    def stats(self) -> dict[str, int]:
        videos = self.videos()
        return {"videos": len(videos), "skipped_bad_videos": self._video_skipped,
                "skipped_bad_boxes": self._bad_boxes}


# -- the occlusion probe ------------------------------------------------------------------


class OcclusionParams(Params):
    image_size: int = 128
    seed: int = 1992
    min_cover_span: int = 4


class Got10kOcclusionProbe(InvarianceProbe):
    """Occlusion trajectories: one frame per cover level of each GOT-10k sequence.

    Exactly the authors' procedure (extract_GOT10k_features.py), in this order:

    1. one ``RandomState(seed)`` (seed 1992), equivalent to their single
       ``np.random.seed(1992)`` before the loop;
    2. sequences in list.txt order; a sequence without cover.label (their code fills
       -1) or whose distinct cover levels span less than ``min_cover_span``
       (max - min < 4) is dropped *before* any draw;
    3. for each distinct cover level in ascending order (``np.unique``), one
       ``choice`` among the 0-based indices of that level's frames, absent frames
       included, as the authors did.

    A drawn frame whose box cannot be cropped (NaN or zero size) is dropped after the
    draw, so the random stream and every other choice stay the authors'. A box that
    leaves the frame is kept: like the authors' crop, its outside part is black. Trajectory = sequence name, class = object_class
    with spaces replaced by underscores. Counts of what was dropped are in `stats`.
    """

    dataset_type: ClassVar[str] = "got10k"
    invariance: ClassVar[str] = "occlusion"

    def __init__(self, params: OcclusionParams | None = None) -> None:
        self.params = params or OcclusionParams()
        self.stats: dict[str, int] = {}

    def build(self, dataset: Dataset) -> ProbeSet:
        if not isinstance(dataset, Got10kDataset):
            raise ComponentError(
                f"probe got10k-occlusion needs a got10k dataset, got {type(dataset).__name__}",
                "give the probe a dataset of type got10k",
            )
        p = self.params
        rng = np.random.RandomState(p.seed)
        stats: Counter[str] = Counter()
        items: list[ProbeItem] = []
        for seq in dataset.iter_sequences():
            stats["sequences"] += 1
            if seq.cover is None:
                stats["skipped_no_cover_label"] += 1
                continue
            levels = np.unique(seq.cover)
            if len(levels) == 0 or levels.max() - levels.min() < p.min_cover_span:
                stats["skipped_cover_span"] += 1
                continue
            stats["kept_sequences"] += 1
            for level in levels:
                frame = int(rng.choice(np.where(seq.cover == level)[0]))
                box = seq.box(frame)
                if box is None:
                    stats["dropped_frames_without_box"] += 1
                    continue
                items.append(ProbeItem(seq.record(frame), trajectory=seq.name,
                                       label=seq.object_class))
        stats["skipped_bad_sequences"] = len(dataset.skipped)
        self.stats = dict(stats)
        if not items:
            raise DataError(
                f"got10k-occlusion: no sequence in {dataset.root} has cover levels spanning "
                f"{p.min_cover_span} or more ({stats['sequences']} read, "
                f"{stats['skipped_no_cover_label']} without cover.label)",
                "check that the sequences have cover.label files",
            )
        return ProbeSet(probe="got10k-occlusion", items=items,
                        image_size=(p.image_size, p.image_size), stats=self.stats)


# -- registration ----------------------------------------------------------------------------


@hookimpl
def register_datasets(register: Register) -> None:
    register("got10k", Got10kDataset, params=Got10kParams,
             summary="GOT-10k tracking sequences in their native layout (one record per frame)")


@hookimpl
def register_invariance_probes(register: Register) -> None:
    register("got10k-occlusion", Got10kOcclusionProbe, params=OcclusionParams,
             summary="occlusion: one GOT-10k frame per cover level (authors' seed-1992 draw)")
