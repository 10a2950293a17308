"""`trackingnet`: TrackingNet read where the official devkit downloads and extracts it.

Layout (SilvioGiancola/TrackingNet-devkit: `download_TrackingNet.py` writes `zips/` and
`anno/` per chunk, `extract_frame.py` unzips each video into `frames/<video>/`)::

    TrackingNet/
        TRAIN_0/ ... TRAIN_11/     2,511 videos each (TEST: 511)
            zips/<video>.zip        as downloaded
            frames/<video>/0.jpg    1.jpg ... T-1.jpg: NOT zero-padded, sorted numerically
            anno/<video>.txt        one `x,y,w,h` line per frame (TEST: the first frame only)
        TEST/

Each video is a folder of frame images; its anno box is the main track ("1"). A video
whose frames and annotations disagree is an error naming both files, or, with
`on_bad_video: skip`, left out and counted in `stats()`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from ssl_core import (
    DataError,
    Params,
    Register,
    SelectedVideoDataset,
    Track,
    VideoRecord,
    VideoSelection,
    check_boxes,
    frame_size,
    hookimpl,
    select_videos,
    xywh_to_xyxy,
)

#: the track id of the annotated object (TrackingNet has one per video)
MAIN_TRACK = "1"
_TRAIN_CHUNK = re.compile(r"^TRAIN_(\d+)$", re.IGNORECASE)
_SEP = re.compile(r"[,\s]+")
_SKIP_HINT = "or set `on_bad_video: skip` to train on the other videos"


class TrackingNetParams(Params):
    root: Path = Field(description="the TrackingNet folder holding TRAIN_0 ... TRAIN_11 and TEST, "
                                   "or one chunk folder (holding frames/ and anno/)")
    split: Literal["train", "test"] = "train"
    chunks: list[int] | None = Field(None, description="which TRAIN_n chunks to read (None: every "
                                                       "chunk present)")
    max_videos: int | None = Field(None, ge=1, description="read only this many videos: a stable "
                                                           "subset (by a hash of the names), for quick runs")
    min_frames: int = Field(2, ge=1, description="leave out (and count) videos shorter than this")
    on_bad_video: Literal["error", "skip"] = "error"

    @field_validator("chunks")
    @classmethod
    def _chunks(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("give at least one chunk number, or leave `chunks` out for all")
        if any(c < 0 for c in value):
            raise ValueError("chunk numbers are 0 or more (TRAIN_0 ... TRAIN_11)")
        return sorted(set(value))

    @model_validator(mode="after")
    def _chunks_need_train(self) -> TrackingNetParams:
        if self.chunks is not None and self.split == "test":
            raise ValueError("`chunks` selects TRAIN_n folders; leave it out with split: test")
        return self


def numbered_frames(folder: Path) -> tuple[Path, ...]:
    """`0.jpg ... T-1.jpg` of a frames folder in numeric order (10.jpg after 9.jpg);
    a gap in the numbers is an error naming the folder and the first missing frame."""
    numbers: dict[int, str] = {}
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                stem, dot, ext = entry.name.rpartition(".")
                if dot and ext.lower() == "jpg" and stem.isdigit():
                    numbers[int(stem)] = entry.name
    except OSError as exc:
        raise DataError(f"cannot list frames folder {folder}: {exc.strerror or exc}",
                        f"check the folder's permissions, {_SKIP_HINT}") from None
    if not numbers:
        raise DataError(f"frames folder {folder} holds no frames (0.jpg, 1.jpg, ...)",
                        f"re-extract the video's zip (the devkit's extract_frame.py), {_SKIP_HINT}")
    count = max(numbers) + 1
    if len(numbers) != count:
        missing = next(i for i in range(count) if i not in numbers)
        raise DataError(f"frames folder {folder} is missing frame {missing}.jpg "
                        f"({len(numbers)} of the frames 0..{count - 1} present)",
                        f"re-extract the video's zip (the devkit's extract_frame.py), {_SKIP_HINT}")
    return tuple(folder / numbers[i] for i in range(count))


def parse_anno(path: Path) -> np.ndarray:
    """anno/<video>.txt -> (T, 4) float64 x, y, w, h; names the file and line on bad input."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataError(f"cannot read TrackingNet annotation {path}: {exc.strerror or exc}",
                        f"re-download the chunk's anno files, {_SKIP_HINT}") from None
    lines = text.strip().splitlines()
    try:  # one C conversion for the usual well-formed file (4 numbers on every line)
        if all(line.count(",") == 3 for line in lines):
            values = np.array([v for v in _SEP.split(text.strip()) if v], dtype=np.float64)
            if len(values) == 4 * len(lines):
                return values.reshape(-1, 4)
    except ValueError:
        pass
    rows = []
    for i, line in enumerate(lines):
        parts = [p for p in _SEP.split(line.strip()) if p]
        try:
            if len(parts) != 4:
                raise ValueError
            rows.append([float(p) for p in parts])
        except ValueError:
            raise DataError(f"{path}, line {i + 1}: expected 'x,y,w,h', got {line!r}",
                            "TrackingNet anno files hold one comma-separated x,y,w,h box per frame"
                            ) from None
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


class TrackingNet(SelectedVideoDataset):
    """TrackingNet videos (frame folders) with their annotated box as the main track."""

    subsets: ClassVar[tuple[str, ...]] = ("all",)
    dataset_name = "trackingnet"
    subset_hint = ("use 'all' (or leave it out); choose chunks with `chunks` and "
                   "train/test with `split`")

    def __init__(self, params: TrackingNetParams) -> None:
        self.params = params
        self.root = Path(params.root).expanduser()

    # -- layout ---------------------------------------------------------------------------

    def chunk_dirs(self) -> list[Path]:
        """The chunk folders to read, in chunk order (TRAIN_2 before TRAIN_10)."""
        root, p = self.root, self.params
        if not root.is_dir():
            raise DataError(f"TrackingNet root {root} does not exist",
                            "set root to the TrackingNet folder holding TRAIN_0 ... TRAIN_11 and "
                            "TEST (or to one of those chunk folders)")
        if (root / "frames").is_dir() or (root / "anno").is_dir() or (root / "zips").is_dir():
            m = _TRAIN_CHUNK.match(root.name)
            if p.chunks is not None and m and int(m.group(1)) not in p.chunks:
                raise DataError(f"root {root} is chunk TRAIN_{m.group(1)}, not one of chunks "
                                f"{p.chunks}", "point root at the TrackingNet folder to choose "
                                "chunks, or leave `chunks` out")
            if (root.name.upper() == "TEST" and p.split == "train") or (m and p.split == "test"):
                raise DataError(f"root {root} is a {'test' if m is None else 'train'} chunk but "
                                f"split is {p.split!r}", "set split to match the chunk, or point "
                                "root at the TrackingNet folder")
            return [root]
        subdirs = {d.name.upper(): d for d in root.iterdir() if d.is_dir()}
        if p.split == "test":
            if "TEST" not in subdirs:
                raise DataError(f"no TEST folder in {root}",
                                "download it with the devkit: python download_TrackingNet.py "
                                "--chunk Test, then extract_frame.py --chunk Test")
            return [subdirs["TEST"]]
        present = {int(m.group(1)): d for name, d in subdirs.items()
                   if (m := _TRAIN_CHUNK.match(name))}
        if not present:
            raise DataError(f"no TRAIN_<n> folders in {root}",
                            "set root to the TrackingNet folder the devkit downloaded into (it "
                            "holds TRAIN_0 ... TRAIN_11), or to one TRAIN_<n> folder")
        wanted = p.chunks if p.chunks is not None else sorted(present)
        missing = [c for c in wanted if c not in present]
        if missing:
            raise DataError(f"chunk(s) {', '.join(f'TRAIN_{c}' for c in missing)} not found in "
                            f"{root} (present: {', '.join(f'TRAIN_{c}' for c in sorted(present))})",
                            "download them with the devkit (--chunk " + ",".join(map(str, missing))
                            + "), or change `chunks`")
        return [present[c] for c in wanted]

    def _candidates(self, chunk: Path) -> list[str]:
        """Video names of one chunk: its frame folders, plus anno files without one (train)."""
        frames_dir = chunk / "frames"
        if not frames_dir.is_dir():
            extract = (f"extract the frames: python extract_frame.py --chunk "
                       f"{chunk.name.upper().removeprefix('TRAIN_')}")
            raise DataError(f"{frames_dir} does not exist",
                            extract if (chunk / "zips").is_dir() else
                            "download the chunk with the devkit's download_TrackingNet.py, then "
                            + extract)
        names = {d.name for d in os.scandir(frames_dir) if d.is_dir()}
        anno_dir = chunk / "anno"
        if self.params.split == "train":
            if not anno_dir.is_dir():
                raise DataError(f"{anno_dir} does not exist",
                                "download the annotations: python download_TrackingNet.py --data anno")
            names |= {f.name[:-4] for f in os.scandir(anno_dir) if f.name.endswith(".txt")}
        return sorted(names)

    def read_video(self, chunk: Path, name: str) -> VideoRecord:
        """One video's frames and main track; DataError naming the file at fault."""
        folder, anno = chunk / "frames" / name, chunk / "anno" / f"{name}.txt"
        if not folder.is_dir():
            raise DataError(f"TrackingNet video {name}: frames folder {folder} is missing "
                            f"(its annotation {anno} exists)",
                            f"extract the chunk's zips (the devkit's extract_frame.py), {_SKIP_HINT}")
        frames = numbered_frames(folder)
        tracks: dict[str, Track] = {}
        if anno.is_file():
            boxes = parse_anno(anno)
            if self.params.split == "test" and len(boxes) == 1:
                # the test set's anno has the first frame's box only
                boxes = np.vstack([boxes, np.full((len(frames) - 1, 4), np.nan)])
            if len(boxes) != len(frames):
                raise DataError(f"{anno} has {len(boxes)} boxes but {folder} has "
                                f"{len(frames)} frames",
                                f"re-download the annotation or re-extract the frames, {_SKIP_HINT}")
            checked = check_boxes(xywh_to_xyxy(boxes), lambda i: f"{anno}, line {i + 1}",
                                  size=frame_size(frames[0]), written=boxes, layout="x, y, w, h",
                                  hint=f"fix or re-download the annotation, {_SKIP_HINT}")
            tracks[MAIN_TRACK] = Track(checked.boxes.astype(np.float32))
        elif self.params.split == "train":
            raise DataError(f"TrackingNet video {name}: annotation {anno} is missing",
                            f"download the annotations (--data anno), {_SKIP_HINT}")
        return VideoRecord(name=name, source=folder, num_frames=len(frames), frames=frames,
                           tracks=tracks, main_track=MAIN_TRACK if tracks else None,
                           meta={"chunk": chunk.name})

    # -- the dataset ----------------------------------------------------------------------

    def select(self, progress: Any | None) -> VideoSelection:
        p = self.params
        candidates = [(chunk, name) for chunk in self.chunk_dirs() for name in self._candidates(chunk)]
        picked = select_videos([name for _, name in candidates],
                               lambda i: self.read_video(*candidates[i]),
                               min_frames=p.min_frames, on_bad_video=p.on_bad_video,
                               max_videos=p.max_videos, progress=progress,
                               description="reading TrackingNet")
        if not picked.videos:
            why = (f"; {len(picked.skipped)} unreadable, e.g. {next(iter(picked.skipped.values()))}"
                   if picked.skipped else "")
            raise DataError(f"no readable TrackingNet video with {p.min_frames}+ frames in "
                            f"{', '.join(str(c) for c in self.chunk_dirs())}{why}",
                            "check root and split (and min_frames)")
        return picked


@hookimpl
def register_datasets(register: Register) -> None:
    register("trackingnet", TrackingNet, params=TrackingNetParams,
             summary="TrackingNet as the devkit extracts it: TRAIN_n/frames/<video>/<i>.jpg "
                     "with anno/<video>.txt boxes")
