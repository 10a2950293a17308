"""`video-folder`: every video file (mp4, avi, mkv, webm, mov) under a folder, decoded with decord.

Files are found recursively and sorted by their path under `root`. An sslc sidecar next to a
video (`x/clip.mp4` -> `x/clip.tracks.json`, format in docs/video.md) gives its object
tracks. `prepare()` inspects every video once (frame count, fps, size; the last frame is
decoded so a truncated file fails there, not mid-training) and keeps what it found in a
small json under `ssl_core.cache_dir()`, keyed by the root: a second prepare only
inspects files whose size or modification time changed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from ssl_core import (
    VIDEO_SUFFIXES,
    DataError,
    Params,
    Register,
    SelectedVideoDataset,
    VideoRecord,
    VideoSelection,
    cache_dir,
    hookimpl,
    inspect_video,
    read_json,
    read_tracks_sidecar,
    select_videos,
    write_json,
)

#: bump when the cached fields change meaning
CACHE_VERSION = 1
SIDECAR_SUFFIX = ".tracks.json"


class VideoFolderParams(Params):
    root: Path = Field(description="folder searched recursively for video files")
    labels: Literal["none", "folder"] = Field(
        "none", description="`folder`: a video's label is the name of the folder holding it")
    on_bad_video: Literal["error", "skip"] = Field(
        "error", description="`skip`: leave out (and count) videos that cannot be decoded")
    max_videos: int | None = Field(None, ge=1, description="use only this many videos: a stable "
                                                           "subset (by a hash of the paths)")
    min_frames: int = Field(2, ge=1, description="leave out (and count) videos shorter than this")


def sidecar_path(video: Path) -> Path:
    """`x/clip.mp4` -> `x/clip.tracks.json`."""
    return video.with_name(video.stem + SIDECAR_SUFFIX)


def find_videos(root: Path) -> list[Path]:
    """Video files under `root` (recursive, hidden files and folders left out), sorted by
    their path under root."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(folder, f) for f in files
                  if not f.startswith(".") and os.path.splitext(f)[1].lower() in VIDEO_SUFFIXES]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


class InspectionCache:
    """(frame count, fps, size) per video file, valid while its size and mtime are unchanged."""

    def __init__(self, root: Path) -> None:
        self.root = root
        key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
        self.path = cache_dir() / "video-folder" / f"{key}.json"
        self.entries: dict[str, dict[str, Any]] = {}
        self.changed = False
        doc = read_json(self.path)  # absent or unreadable: everything is inspected again
        if doc is not None and doc.get("version") == CACHE_VERSION \
                and doc.get("root") == str(root.resolve()) and isinstance(doc.get("videos"), dict):
            self.entries = dict(doc["videos"])

    @staticmethod
    def _stamp(path: Path) -> dict[str, int]:
        st = path.stat()
        return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}

    def inspect(self, path: Path) -> dict[str, Any]:
        """The cached entry when the file is unchanged, else a fresh inspection (a decode
        failure is kept too: {"error": message, "hint": hint})."""
        rel = path.relative_to(self.root).as_posix()
        stamp = self._stamp(path)
        entry = self.entries.get(rel)
        if entry is not None and all(entry.get(k) == v for k, v in stamp.items()):
            return entry
        try:
            frames, fps, (height, width) = inspect_video(path)
            entry = {**stamp, "frames": frames, "fps": fps, "height": height, "width": width}
        except DataError as exc:
            entry = {**stamp, "error": exc.message, "hint": exc.hint}
        self.entries[rel] = entry
        self.changed = True
        return entry

    def save(self, keep: set[str]) -> None:
        """Write the entries of files still present (a cache: failing to write is not an error)."""
        if not self.changed:
            return
        doc = {"version": CACHE_VERSION, "root": str(self.root.resolve()),
               "videos": {k: v for k, v in sorted(self.entries.items()) if k in keep}}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.path, doc)
        except OSError:
            pass


class VideoFolder(SelectedVideoDataset):
    """Video files under a folder, with optional sidecar tracks and folder labels."""

    subsets: ClassVar[tuple[str, ...]] = ("all",)
    frame_images: ClassVar[bool] = False  # video files: no per-frame images to probe
    dataset_name = "video-folder"

    def __init__(self, params: VideoFolderParams) -> None:
        self.params = params
        self.root = Path(params.root).expanduser()

    def _check_labels(self, files: list[Path]) -> None:
        """labels: folder needs every video inside a class folder (a layout error, never skipped)."""
        loose = [f for f in files if f.parent == self.root]
        if self.params.labels == "folder" and loose:
            raise DataError(f"{loose[0]} is directly in root, but labels: folder takes a video's "
                            "label from the folder holding it",
                            f"move it into a class folder ({self.root}/<class>/{loose[0].name}), "
                            "or set labels: none")

    def _record(self, path: Path, entry: dict[str, Any]) -> VideoRecord:
        """The video's record, with its sidecar's tracks; DataError for a bad video or sidecar."""
        if "error" in entry:
            raise DataError(entry["error"], entry.get("hint"))
        frames, size = int(entry["frames"]), (int(entry["height"]), int(entry["width"]))
        rel = path.relative_to(self.root).as_posix()
        tracks: dict[str, Any] = {}
        sidecar = sidecar_path(path)
        if sidecar.is_file():
            tracks, fields = read_tracks_sidecar(sidecar, frame_size=size)
            declared = fields.get("num_frames", frames)
            bad = [t for t, track in tracks.items() if len(track.boxes) != frames]
            if declared != frames or bad:
                n = declared if declared != frames else len(tracks[bad[0]].boxes)
                raise DataError(f"{sidecar} describes {n} frames but {path} has {frames}",
                                "the sidecar needs num_frames and one box (or null) per frame "
                                "for each object; see docs/video.md")
            if "size" in fields and list(fields["size"]) != list(size):
                raise DataError(f"{sidecar} gives size {list(fields['size'])} (height, width) "
                                f"but {path} is {size[0]}x{size[1]}",
                                "boxes are in the video's pixels: write the sidecar for this "
                                "encoding of the video; see docs/video.md")
        return VideoRecord(name=rel, source=path, num_frames=frames, tracks=tracks,
                           main_track=next(iter(tracks)) if len(tracks) == 1 else None,
                           fps=float(entry["fps"]),
                           label=path.parent.name if self.params.labels == "folder" else None,
                           meta={"size": size})

    def select(self, progress: Any | None) -> VideoSelection:
        p = self.params
        if not self.root.is_dir():
            raise DataError(f"video-folder root {self.root} does not exist",
                            "set root to a folder holding video files (searched recursively)")
        files = find_videos(self.root)
        if not files:
            raise DataError(f"no video files ({', '.join(VIDEO_SUFFIXES)}) under {self.root}",
                            "check root; files are found recursively by their extension")
        self._check_labels(files)
        rels = [f.relative_to(self.root).as_posix() for f in files]
        cache = InspectionCache(self.root)
        try:
            picked = select_videos(rels, lambda i: self._record(files[i], cache.inspect(files[i])),
                                   min_frames=p.min_frames, on_bad_video=p.on_bad_video,
                                   max_videos=p.max_videos, progress=progress,
                                   description="inspecting videos")
        finally:
            cache.save(set(rels))
        if not picked.videos:
            why = (f"{len(picked.skipped)} could not be read, e.g. {next(iter(picked.skipped.values()))}"
                   if picked.skipped else f"{picked.short} shorter than min_frames={p.min_frames}")
            raise DataError(f"no usable video under {self.root}: {why}",
                            "check the files (and min_frames)")
        return picked


@hookimpl
def register_datasets(register: Register) -> None:
    register("video-folder", VideoFolder, params=VideoFolderParams,
             summary="video files (mp4, avi, mkv, webm, mov) under a folder, decoded with decord; "
                     "optional *.tracks.json sidecar tracks")
