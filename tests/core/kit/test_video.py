"""ssl_core.kit.video: the one frame reader (decord for files, load_rgb for frame folders)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ssl_core import DataError
from ssl_core.kit.video import (
    DECODED,
    DecodedVideos,
    VideoRecord,
    inspect_video,
    read_frames,
    read_tracks_sidecar,
    select_videos,
    xywh_to_xyxy,
)


def write_mp4(path: Path, frames: int, width: int, height: int = 32) -> Path:
    """Frame i is filled with grey level 10 * i, so a decoded frame tells its index."""
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (width, height))
    for i in range(frames):
        out.write(np.full((height, width, 3), 10 * i, np.uint8))
    out.release()
    return path


@pytest.mark.parametrize("width", [48, 64])  # decord's batched copy fails at some widths (48)
def test_frames_come_back_in_the_order_asked(tmp_path: Path, width: int) -> None:
    path = write_mp4(tmp_path / "a.mp4", 12, width)
    n, fps, size = inspect_video(path)
    assert (n, size) == (12, (32, width)) and fps == pytest.approx(10.0)
    frames = read_frames(VideoRecord("a", path, n), [9, 2, 9, 0])
    assert frames.shape == (4, 32, width, 3) and frames.dtype == np.uint8
    assert [round(float(f.mean()) / 10) for f in frames] == [9, 2, 9, 0]


def write_noise_mp4(path: Path, frames: int, width: int = 64, height: int = 48) -> Path:
    """Textured frames (a flat grey decodes the same from anywhere): seeking and decoding the
    whole video would differ here if they differed at all."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (height // 4, width // 4, 3), dtype=np.uint8)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (width, height))
    for i in range(frames):
        img = np.kron(np.roll(base, i, axis=1), np.ones((4, 4, 1), np.uint8))
        out.write(np.clip(img.astype(int) + 3 * i, 0, 255).astype(np.uint8))
    out.release()
    return path


def test_a_video_read_often_is_decoded_whole_once_with_the_same_frames(tmp_path: Path) -> None:
    path = write_noise_mp4(tmp_path / "a.mp4", 40)
    video = VideoRecord("a", path, 40)
    cache = DecodedVideos(budget_bytes=64 << 20)
    asks = [[17, 21], [33, 5, 33], [0, 39], [22, 26], [3, 7]]
    got = []
    for n, ask in enumerate(asks):
        got.append(read_frames(video, ask, cache=cache))
        if n == 0:  # one read has not cost a whole decode yet: it seeks
            assert cache.get(str(path)) is None
    whole = cache.get(str(path))
    assert whole is not None and whole.shape == (40, 48, 64, 3)
    none = DecodedVideos(budget_bytes=0)  # keeps nothing: every read seeks
    for ask, frames in zip(asks, got, strict=True):
        assert np.array_equal(frames, read_frames(video, ask, cache=none)), ask
    assert none.get(str(path)) is None


def test_a_long_video_is_never_kept_whole(tmp_path: Path) -> None:
    cache = DecodedVideos(budget_bytes=8 * 40 * (48 * 64 * 3))  # a 40-frame video is 1/8 of it
    short = VideoRecord("short", write_noise_mp4(tmp_path / "short.mp4", 40), 40)
    long = VideoRecord("long", write_noise_mp4(tmp_path / "long.mp4", 41), 41)
    for _ in range(4):  # from keyframes 0 and 24: 24 frames decoded per read
        for v in (short, long):
            read_frames(v, [11, 35], cache=cache)
    assert cache.get(str(short.source)) is not None
    assert cache.get(str(long.source)) is None


def test_decoded_videos_drop_the_least_recently_used_past_the_budget() -> None:
    cache = DecodedVideos(budget_bytes=250)
    cache.put("a", np.zeros(100, np.uint8))
    cache.put("b", np.zeros(100, np.uint8))
    assert cache.get("a") is not None  # used again: "b" is now the least recently used
    cache.put("c", np.zeros(100, np.uint8))
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None


def test_a_rewritten_video_is_decoded_again(tmp_path: Path) -> None:
    path = write_mp4(tmp_path / "a.mp4", 12, 64)
    for _ in range(2):
        read_frames(VideoRecord("a", path, 12), list(range(12)))
    assert DECODED.get(str(path)) is not None
    write_mp4(path, 6, 64)
    n, _, _ = inspect_video(path)  # what a dataset does before listing a changed file
    assert DECODED.get(str(path)) is None
    assert round(float(read_frames(VideoRecord("a", path, n), [5])[0].mean()) / 10) == 5


def test_a_bad_cache_size_is_one_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSLC_VIDEO_CACHE_MB", "lots")
    with pytest.raises(DataError, match="SSLC_VIDEO_CACHE_MB='lots' is not a size in MiB"):
        _ = DecodedVideos().budget
    monkeypatch.setenv("SSLC_VIDEO_CACHE_MB", "1.5")
    assert DecodedVideos().budget == 3 << 19


def test_a_frame_beyond_the_video_is_refused_by_name(tmp_path: Path) -> None:
    path = write_mp4(tmp_path / "a.mp4", 5, 64)
    with pytest.raises(DataError, match="video a has 5 frames; asked for frame 7"):
        read_frames(VideoRecord("a", path, 5), [0, 7])


def test_a_truncated_video_is_one_error_naming_the_file(tmp_path: Path) -> None:
    good = write_mp4(tmp_path / "a.mp4", 12, 64).read_bytes()
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(good[: len(good) // 3])
    with pytest.raises(DataError, match=r"cannot decode video .*cut\.mp4"):
        inspect_video(bad)


def test_xywh_boxes_become_corners_and_absent_targets_nan() -> None:
    out = xywh_to_xyxy(np.array([[1, 2, 3, 4], [0, 0, 0, 0], [np.nan] * 4, [5, 5, np.nan, 1]]))
    assert out[0].tolist() == [1, 2, 4, 6]
    assert np.isnan(out[1:3]).all()
    # one NaN value is a malformed box, not an absent target: kept for check_boxes to name
    assert not np.isnan(out[3]).all()


def _sidecar(path: Path, objects: list, size: list[int] | None = None) -> Path:
    doc: dict = {"num_frames": 3, "objects": objects}
    if size is not None:
        doc["size"] = size
    path.write_text(json.dumps(doc))
    return path


def test_sidecar_points_instead_of_boxes_are_refused_naming_the_object(tmp_path: Path) -> None:
    side = _sidecar(tmp_path / "a.tracks.json", [
        {"id": 1, "boxes": [[1, 2, 5, 6], None, [1, 2, 5, 6]]},
        {"id": 2, "boxes": [[1, 2], [3, 4], [5, 6], [7, 8]]}])
    with pytest.raises(DataError, match=r"a\.tracks\.json, object 2 \(id 2\), frame 1: .*4 numbers"):
        read_tracks_sidecar(side)


def test_sidecar_objects_sharing_an_id_are_refused(tmp_path: Path) -> None:
    side = _sidecar(tmp_path / "a.tracks.json", [
        {"id": 7, "boxes": [None, None, None]}, {"id": 7, "boxes": [[1, 2, 5, 6]] * 3}])
    with pytest.raises(DataError, match=r"object 2 has id 7, as object 1"):
        read_tracks_sidecar(side)


@pytest.mark.parametrize(("box", "why"), [
    ([1, 2, "Infinity", 6], "not finite"), ([5, 2, 1, 6], "inverted"),
    ([40, 2, 50, 6], "wholly outside the 32x24 frame"),
    ([31.6, 2, 40, 6], "less than a pixel inside the 32x24 frame")])
def test_sidecar_bad_boxes_are_refused_when_read(tmp_path: Path, box: list, why: str) -> None:
    side = tmp_path / "a.tracks.json"
    side.write_text(json.dumps({"num_frames": 2, "size": [24, 32], "objects": [
        {"id": "car", "boxes": [[1, 2, 5, 6], box]}]}).replace('"Infinity"', "Infinity"))
    with pytest.raises(DataError, match=rf"object 1 \(id 'car'\), frame 2: box .*{why}"):
        read_tracks_sidecar(side)


def test_sidecar_boxes_partly_outside_are_clipped(tmp_path: Path) -> None:
    side = _sidecar(tmp_path / "a.tracks.json", [{"id": 1, "boxes": [[-4, 2, 5, 30], None, None]}],
                    size=[24, 32])
    tracks, _ = read_tracks_sidecar(side)
    assert tracks["1"].boxes[0].tolist() == [0, 2, 5, 24]
    # without a size in the file, the reader's frame size (height, width) is used
    side = _sidecar(tmp_path / "b.tracks.json", [{"id": 1, "boxes": [[-4, 2, 5, 30], None, None]}])
    tracks, _ = read_tracks_sidecar(side, frame_size=(24, 32))
    assert tracks["1"].boxes[0].tolist() == [0, 2, 5, 24]


def test_select_videos_keeps_a_stable_subset_and_replaces_bad_ones() -> None:
    names = [f"v{i}" for i in range(20)]
    lengths = {"v3": 1}  # too short: counted, not kept

    def read(i: int) -> VideoRecord:
        if names[i] == "v5":
            raise DataError("cannot decode video v5.mp4: broken")
        return VideoRecord(names[i], Path(names[i]), lengths.get(names[i], 8))

    every = select_videos(names, read, min_frames=2, on_bad_video="skip")
    assert [v.name for v in every.videos] == [n for n in names if n not in ("v3", "v5")]
    assert every.stats() == {"videos": 18, "skipped_bad_videos": 1, "skipped_short_videos": 1}
    assert every.skipped == {"v5": "cannot decode video v5.mp4: broken"}

    some = select_videos(names, read, min_frames=2, on_bad_video="skip", max_videos=6)
    again = select_videos(list(reversed(names)), lambda i: read(19 - i), min_frames=2,
                          on_bad_video="skip", max_videos=6)
    assert len(some.videos) == 6 and {v.name for v in some.videos} == {v.name for v in again.videos}
    assert [v.name for v in some.videos] == sorted((v.name for v in some.videos), key=names.index)
    with pytest.raises(DataError, match="v5.mp4"):
        select_videos(names, read, min_frames=2, on_bad_video="error")
