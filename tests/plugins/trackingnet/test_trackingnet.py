"""trackingnet: the devkit's layout (TRAIN_n/frames/<video>/<i>.jpg, anno/<video>.txt) read
through the registry, as a recipe would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.progress import Progress
from videokit import (
    frame_index,
    trackingnet_box,
    write_trackingnet,
    write_trackingnet_video,
)

import sslc_plugins.trackingnet as trackingnet
from ssl_core import ComponentError, DataError, VideoDataset, read_frames, xywh_to_xyxy
from ssl_core.plugin.host import PluginHost

#: chunk -> {video: frame count}; TRAIN_10 sorts after TRAIN_1 and TRAIN_2 numerically
LAYOUT = {
    "TRAIN_0": {"vid_b": 12, "-3TIfnTSM6c_2": 3},
    "TRAIN_1": {"c": 4},
    "TRAIN_10": {"d": 2},
    "TEST": {"t": 5},
}


def create(root: Path, **params: Any) -> trackingnet.TrackingNet:
    host = PluginHost()
    assert host.add_plugin(trackingnet, "trackingnet")
    ds = host.registry.create("dataset", {"type": "trackingnet", "root": str(root), **params})
    assert isinstance(ds, trackingnet.TrackingNet) and isinstance(ds, VideoDataset)
    return ds


@pytest.fixture
def tn_root(tmp_path: Path) -> Path:
    return write_trackingnet(tmp_path / "TrackingNet", LAYOUT)


def test_lists_every_train_chunk_in_numeric_order(tn_root: Path) -> None:
    ds = create(tn_root)
    ds.prepare()
    videos = ds.videos()
    assert [(v.meta["chunk"], v.name, v.num_frames) for v in videos] == [
        ("TRAIN_0", "-3TIfnTSM6c_2", 3), ("TRAIN_0", "vid_b", 12),
        ("TRAIN_1", "c", 4), ("TRAIN_10", "d", 2)]
    assert ds.stats() == {"videos": 4, "skipped_bad_videos": 0, "skipped_short_videos": 0}
    assert ds.skipped == {}


def test_frames_sort_numerically_and_decode_in_order(tn_root: Path) -> None:
    video = next(v for v in create(tn_root).videos() if v.name == "vid_b")
    assert not video.is_file and video.source == tn_root / "TRAIN_0" / "frames" / "vid_b"
    assert [p.name for p in video.frames] == [f"{i}.jpg" for i in range(12)]  # 10 after 9
    frames = read_frames(video, [11, 0, 9, 10, 10])
    assert frames.shape == (5, 48, 64, 3) and frames.dtype == np.uint8
    assert [frame_index(f) for f in frames] == [11, 0, 9, 10, 10]


def test_anno_boxes_are_the_main_track_in_xyxy(tn_root: Path) -> None:
    video = next(v for v in create(tn_root).videos() if v.name == "vid_b")
    assert video.main_track == "1" and list(video.tracks) == ["1"]
    boxes = video.tracks["1"].boxes
    assert boxes.shape == (12, 4) and boxes.dtype == np.float32
    x, y, w, h = trackingnet_box(10)
    np.testing.assert_allclose(boxes[10], [x, y, x + w, y + h], atol=1e-4)
    expected = xywh_to_xyxy(np.array([trackingnet_box(i) for i in range(12)]))
    np.testing.assert_allclose(boxes, expected, atol=1e-4)
    assert video.tracks["1"].present().all()


def test_frames_as_image_records(tn_root: Path) -> None:
    recs = create(tn_root, chunks=[1]).records()
    assert [(r.path.name, r.group, r.meta["frame"]) for r in recs] == [
        (f"{i}.jpg", "c", i) for i in range(4)]


def test_chunks_and_a_chunk_as_root(tn_root: Path) -> None:
    assert [v.name for v in create(tn_root, chunks=[10, 1]).videos()] == ["c", "d"]
    assert [v.name for v in create(tn_root / "TRAIN_0").videos()] == ["-3TIfnTSM6c_2", "vid_b"]
    with pytest.raises(DataError, match="TRAIN_5 not found") as err:
        create(tn_root, chunks=[5]).prepare()
    assert "TRAIN_0, TRAIN_1, TRAIN_10" in err.value.message
    with pytest.raises(DataError, match="not one of chunks"):
        create(tn_root / "TRAIN_0", chunks=[1]).prepare()
    with pytest.raises(DataError, match="does not exist"):
        create(tn_root / "nope").prepare()


def test_test_split_has_the_first_box_only(tn_root: Path) -> None:
    for root in (tn_root, tn_root / "TEST"):
        (video,) = create(root, split="test").videos()
        assert video.name == "t" and video.num_frames == 5
        present = video.tracks["1"].present()
        assert present.tolist() == [True, False, False, False, False]
    with pytest.raises(DataError, match="test chunk but split is 'train'"):
        create(tn_root / "TEST").prepare()


def test_min_frames_and_a_stable_max_videos_subset(tn_root: Path) -> None:
    ds = create(tn_root, min_frames=3)
    assert [v.name for v in ds.videos()] == ["-3TIfnTSM6c_2", "vid_b", "c"]
    assert ds.stats()["skipped_short_videos"] == 1

    picked = [v.name for v in create(tn_root, max_videos=2).videos()]
    assert len(picked) == 2 and picked == [v.name for v in create(tn_root, max_videos=2).videos()]
    everything = [v.name for v in create(tn_root).videos()]
    assert picked == [n for n in everything if n in picked]  # natural order kept
    # a new video elsewhere changes the choice by at most one
    write_trackingnet_video(tn_root / "TRAIN_1", "zz_new", 3)
    again = [v.name for v in create(tn_root, max_videos=2).videos()]
    assert len(set(again) & set(picked)) >= 1


def test_anno_and_frame_count_mismatch_errors_or_is_skipped(tn_root: Path) -> None:
    write_trackingnet_video(tn_root / "TRAIN_1", "bad", 6, anno_lines=5)
    with pytest.raises(DataError) as err:
        create(tn_root).prepare()
    msg = err.value.message
    assert str(tn_root / "TRAIN_1" / "anno" / "bad.txt") in msg and "5 boxes" in msg
    assert str(tn_root / "TRAIN_1" / "frames" / "bad") in msg and "6 frames" in msg
    assert "on_bad_video: skip" in (err.value.hint or "")

    ds = create(tn_root, on_bad_video="skip")
    ds.prepare()
    assert [v.name for v in ds.videos()] == ["-3TIfnTSM6c_2", "vid_b", "c", "d"]
    assert list(ds.skipped) == ["bad"]
    assert ds.stats() == {"videos": 4, "skipped_bad_videos": 1, "skipped_short_videos": 0}


def test_missing_frame_number_names_the_folder(tn_root: Path) -> None:
    (tn_root / "TRAIN_0" / "frames" / "vid_b" / "4.jpg").unlink()
    with pytest.raises(DataError, match=r"missing frame 4\.jpg") as err:
        create(tn_root).videos()
    assert str(tn_root / "TRAIN_0" / "frames" / "vid_b") in err.value.message
    ds = create(tn_root, on_bad_video="skip")
    assert "vid_b" not in [v.name for v in ds.videos()] and list(ds.skipped) == ["vid_b"]


def test_annotation_without_frames_and_bad_lines(tn_root: Path) -> None:
    (tn_root / "TRAIN_1" / "anno" / "only_anno.txt").write_text("1,2,3,4\n")
    with pytest.raises(DataError, match="frames folder .*only_anno is missing"):
        create(tn_root).prepare()
    (tn_root / "TRAIN_1" / "anno" / "only_anno.txt").unlink()
    (tn_root / "TRAIN_1" / "anno" / "c.txt").write_text("1,2,3,4\n1,2,x,4\n1,2,3,4\n1,2,3,4\n")
    with pytest.raises(DataError, match=r"c\.txt, line 2: expected 'x,y,w,h'"):
        create(tn_root).prepare()


def test_frames_not_extracted_points_at_the_devkit(tmp_path: Path) -> None:
    (tmp_path / "TRAIN_3" / "zips").mkdir(parents=True)
    with pytest.raises(DataError, match="frames does not exist") as err:
        create(tmp_path).prepare()
    assert "extract_frame.py --chunk 3" in (err.value.hint or "")
    with pytest.raises(DataError, match="no TRAIN_<n> folders"):
        create(tmp_path / "TRAIN_3" / "zips").prepare()


def test_nothing_usable_is_an_error(tmp_path: Path) -> None:
    write_trackingnet(tmp_path, {"TRAIN_0": {"a": 1}})
    with pytest.raises(DataError, match="no readable TrackingNet video with 2\\+ frames"):
        create(tmp_path).videos()


def test_prepare_reports_progress(tn_root: Path) -> None:
    with Progress(disable=True) as progress:
        create(tn_root).prepare(progress)
        (task,) = progress.tasks
        assert task.completed == task.total == 4


def test_params_are_validated(tn_root: Path) -> None:
    host = PluginHost()
    assert host.add_plugin(trackingnet, "trackingnet")
    for bad, needle in (({"chunk": [1]}, "unknown parameter"),
                        ({"split": "test", "chunks": [1]}, "leave it out with split: test"),
                        ({"on_bad_video": "ignore"}, "on_bad_video"),
                        ({"max_videos": 0}, "max_videos")):
        with pytest.raises(ComponentError, match=needle):
            host.registry.create("dataset", {"type": "trackingnet", "root": str(tn_root), **bad})
    with pytest.raises(ComponentError, match="no subset"):
        create(tn_root).videos("val")


def test_lines_with_3_and_5_numbers_are_not_reshaped_into_boxes(tn_root: Path) -> None:
    """8 numbers over 2 lines divide by 4: they must still be refused, naming the line."""
    write_trackingnet_video(tn_root / "TRAIN_1", "c", 2)
    (tn_root / "TRAIN_1" / "anno" / "c.txt").write_text("1,2,3\n4,5,6,7,8\n")
    with pytest.raises(DataError, match=r"c\.txt, line 1: expected 'x,y,w,h', got '1,2,3'"):
        create(tn_root, chunks=[1]).prepare()


@pytest.mark.parametrize(("line", "why"), [
    ("1,2,inf,4", "not finite"), ("1,2,nan,4", "not finite"), ("5,5,-3,4", "inverted"),
    ("100,2,3,4", "wholly outside the 64x48 frame"), ("-20,-20,5,5", "wholly outside")])
def test_bad_boxes_are_refused_when_read_naming_file_and_line(tn_root: Path, line: str,
                                                              why: str) -> None:
    anno = tn_root / "TRAIN_1" / "anno" / "c.txt"
    anno.write_text(f"1,2,3,4\n1,2,3,4\n{line}\n1,2,3,4\n")
    with pytest.raises(DataError) as err:
        create(tn_root, chunks=[1]).prepare()
    assert f"{anno}, line 3: box" in err.value.message and why in err.value.message
    assert "np.float" not in err.value.message
    assert "on_bad_video: skip" in (err.value.hint or "")
    ds = create(tn_root, chunks=[1, 10], on_bad_video="skip")
    assert [v.name for v in ds.videos()] == ["d"] and ds.stats()["skipped_bad_videos"] == 1


def test_boxes_partly_outside_the_frame_are_clipped(tn_root: Path) -> None:
    (tn_root / "TRAIN_1" / "anno" / "c.txt").write_text("-5,2,10,4\n60,40,10,20\n0,0,0,0\n1,2,3,4\n")
    (video,) = create(tn_root, chunks=[1]).videos()
    boxes = video.tracks["1"].boxes
    np.testing.assert_allclose(boxes[0], [0, 2, 5, 6])
    np.testing.assert_allclose(boxes[1], [60, 40, 64, 48])
    assert np.isnan(boxes[2]).all(), "a zero-size box is an absent target"
