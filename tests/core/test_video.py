"""ssl_core.video: the one frame reader (decord for files, load_rgb for frame folders)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ssl_core import DataError
from ssl_core.video import VideoRecord, inspect_video, read_frames, select_videos, xywh_to_xyxy


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
    out = xywh_to_xyxy(np.array([[1, 2, 3, 4], [0, 0, 0, 0], [5, 5, np.nan, 1]]))
    assert out[0].tolist() == [1, 2, 4, 6]
    assert np.isnan(out[1:]).all()


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
