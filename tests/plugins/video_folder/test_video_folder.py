"""video-folder: mp4 files written by OpenCV under a folder, read through the registry and
decoded with decord; sidecar tracks, bad videos, the inspection cache, and `sslc validate`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import assert_user_error, require_plugins
from rich.progress import Progress
from videokit import frame_index, truncate, write_mp4, write_sidecar

import sslc_plugins.video_folder as video_folder
from ssl_core import ComponentError, DataError, VideoDataset, cache_dir, read_frames
from ssl_core.plugin.host import PluginHost


def create(root: Path, **params: Any) -> video_folder.VideoFolder:
    host = PluginHost()
    assert host.add_plugin(video_folder, "video-folder")
    ds = host.registry.create("dataset", {"type": "video-folder", "root": str(root), **params})
    assert isinstance(ds, video_folder.VideoFolder) and isinstance(ds, VideoDataset)
    return ds


@pytest.fixture
def clips(tmp_path: Path) -> Path:
    """cats/a.mp4 (12 frames), cats/b.MP4 (3), dogs/c.mp4 (5, with a sidecar); noise around."""
    root = tmp_path / "clips"
    write_mp4(root / "cats" / "a.mp4", 12)
    write_mp4(root / "cats" / "b.MP4", 3, fps=25.0)
    c = write_mp4(root / "dogs" / "c.mp4", 5)
    write_sidecar(c, {7: [[1, 2, 11, 12], None, [3, 4, 13, 14], [3, 4, 13, 14], None]})
    (root / "dogs" / "notes.txt").write_text("not a video")
    write_mp4(root / ".hidden" / "x.mp4", 2)
    return root


def test_finds_videos_recursively_sorted(clips: Path) -> None:
    ds = create(clips)
    ds.prepare()
    videos = ds.videos()
    assert [(v.name, v.num_frames, v.fps) for v in videos] == [
        ("cats/a.mp4", 12, 10.0), ("cats/b.MP4", 3, 25.0), ("dogs/c.mp4", 5, 10.0)]
    assert all(v.is_file and v.source == clips / v.name for v in videos)
    assert videos[0].meta["size"] == (48, 64)
    assert [v.label for v in videos] == [None, None, None]
    assert [v.label for v in create(clips, labels="folder").videos()] == ["cats", "cats", "dogs"]
    assert ds.stats() == {"videos": 3, "skipped_bad_videos": 0, "skipped_short_videos": 0}


def test_read_frames_decodes_the_asked_frames_in_order(clips: Path) -> None:
    a = create(clips).videos()[0]
    frames = read_frames(a, [11, 0, 9, 10, 9])
    assert frames.shape == (5, 48, 64, 3) and frames.dtype == np.uint8
    assert [frame_index(f) for f in frames] == [11, 0, 9, 10, 9]
    with pytest.raises(DataError, match="has 12 frames; asked for frame 12"):
        read_frames(a, [0, 12])


def test_sidecar_tracks(clips: Path) -> None:
    a, _, c = create(clips).videos()
    assert a.tracks == {} and a.main_track is None
    assert list(c.tracks) == ["7"] and c.main_track == "7"
    track = c.tracks["7"]
    assert track.label == "chair"
    assert track.present().tolist() == [True, False, True, True, False]
    np.testing.assert_allclose(track.boxes[0], [1, 2, 11, 12])
    assert np.isnan(track.boxes[1]).all()


def test_bad_sidecar_names_it(clips: Path) -> None:
    c = clips / "dogs" / "c.mp4"
    write_sidecar(c, {1: [[1, 2, 3, 4]] * 4})
    with pytest.raises(DataError, match="describes 4 frames but .*c.mp4 has 5") as err:
        create(clips).prepare()
    assert str(clips / "dogs" / "c.tracks.json") in err.value.message
    write_sidecar(c, {1: [[1, 2, 3, 4]] * 5}, size=(240, 320))
    with pytest.raises(DataError, match=r"size \[240, 320\] \(height, width\)"):
        create(clips).prepare()
    ds = create(clips, on_bad_video="skip")
    assert [v.name for v in ds.videos()] == ["cats/a.mp4", "cats/b.MP4"]
    assert list(ds.skipped) == ["dogs/c.mp4"]


def test_truncated_video_is_an_error_naming_the_file(clips: Path) -> None:
    bad = truncate(write_mp4(clips / "cats" / "broken.mp4", 12))
    with pytest.raises(DataError, match="cannot decode video") as err:
        create(clips).prepare()
    assert str(bad) in err.value.message
    assert "on_bad_video: skip" in (err.value.hint or "")


def test_skip_trains_on_the_rest_and_counts(clips: Path) -> None:
    truncate(write_mp4(clips / "cats" / "broken.mp4", 12))
    ds = create(clips, on_bad_video="skip")
    ds.prepare()
    assert [v.name for v in ds.videos()] == ["cats/a.mp4", "cats/b.MP4", "dogs/c.mp4"]
    assert list(ds.skipped) == ["cats/broken.mp4"]
    assert "cannot decode video" in ds.skipped["cats/broken.mp4"]
    assert ds.stats() == {"videos": 3, "skipped_bad_videos": 1, "skipped_short_videos": 0}


def test_no_readable_video_at_all(tmp_path: Path) -> None:
    truncate(write_mp4(tmp_path / "v" / "a.mp4", 12))
    with pytest.raises(DataError, match="no usable video .*1 could not be read"):
        create(tmp_path / "v", on_bad_video="skip").prepare()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no video files"):
        create(tmp_path / "empty").prepare()
    with pytest.raises(DataError, match="does not exist"):
        create(tmp_path / "missing").prepare()


def test_min_frames_and_max_videos(clips: Path) -> None:
    ds = create(clips, min_frames=4)
    assert [v.name for v in ds.videos()] == ["cats/a.mp4", "dogs/c.mp4"]
    assert ds.stats()["skipped_short_videos"] == 1
    two = [v.name for v in create(clips, max_videos=2).videos()]
    assert len(two) == 2 and two == sorted(two)
    assert two == [v.name for v in create(clips, max_videos=2).videos()]


def test_records_are_refused_for_video_files(clips: Path) -> None:
    with pytest.raises(DataError, match="is a video file; it has no per-frame images"):
        create(clips).records()


def test_labels_folder_needs_class_folders(clips: Path) -> None:
    write_mp4(clips / "loose.mp4", 3)
    with pytest.raises(DataError, match="loose.mp4 is directly in root"):
        create(clips, labels="folder", on_bad_video="skip").prepare()


def test_inspection_is_cached_and_a_changed_file_reinspected(clips: Path) -> None:
    files = list((cache_dir() / "video-folder").glob("*.json")) if (cache_dir() / "video-folder").is_dir() else []
    create(clips).prepare()
    (cache_file,) = set((cache_dir() / "video-folder").glob("*.json")) - set(files)
    doc = json.loads(cache_file.read_text())
    assert doc["root"] == str(clips.resolve())
    assert sorted(doc["videos"]) == ["cats/a.mp4", "cats/b.MP4", "dogs/c.mp4"]
    entry = doc["videos"]["cats/a.mp4"]
    assert entry["frames"] == 12 and entry["fps"] == 10.0
    assert (entry["height"], entry["width"]) == (48, 64)
    assert entry["bytes"] == (clips / "cats" / "a.mp4").stat().st_size

    # the second prepare believes the cache for unchanged files (a doctored count shows)
    doc["videos"]["cats/a.mp4"]["frames"] = 11
    cache_file.write_text(json.dumps(doc))
    assert create(clips).videos()[0].num_frames == 11

    # a rewritten file (new size and mtime) is inspected again
    write_mp4(clips / "cats" / "a.mp4", 7)
    st = (clips / "cats" / "a.mp4").stat()
    os.utime(clips / "cats" / "a.mp4", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert create(clips).videos()[0].num_frames == 7
    assert json.loads(cache_file.read_text())["videos"]["cats/a.mp4"]["frames"] == 7

    # a bad file's failure is kept too, and still reported by name
    truncate(clips / "dogs" / "c.mp4")
    with pytest.raises(DataError, match="c.mp4"):
        create(clips).prepare()
    assert "error" in json.loads(cache_file.read_text())["videos"]["dogs/c.mp4"]
    with pytest.raises(DataError, match="cannot decode video .*c.mp4"):
        create(clips).prepare()


def test_prepare_reports_progress(clips: Path) -> None:
    with Progress(disable=True) as progress:
        create(clips).prepare(progress)
        (task,) = progress.tasks
        assert task.description == "inspecting videos" and task.completed == task.total == 3


def test_params_are_validated(clips: Path) -> None:
    host = PluginHost()
    assert host.add_plugin(video_folder, "video-folder")
    for bad, needle in (({"label": "folder"}, "unknown parameter"),
                        ({"labels": "parent"}, "labels"),
                        ({"on_bad_video": "ignore"}, "on_bad_video"),
                        ({"min_frames": 0}, "min_frames")):
        with pytest.raises(ComponentError, match=needle):
            host.registry.create("dataset", {"type": "video-folder", "root": str(clips), **bad})


RECIPE = """\
name: clips
data_root: {root}
datasets:
  clips: {{type: video-folder, root: clips, labels: folder, on_bad_video: {mode}, max_videos: 2}}
models:
  m:
    encoder: {{type: resnet18, small_input: true}}
"""


def test_sslc_validate_accepts_a_video_folder_dataset(sslc: Any, clips: Path, tmp_path: Path) -> None:
    require_plugins("video-folder", "resnet18")
    env = {"SSLC_LOAD_PLUGINS": "video-folder,resnet"}  # just these: start-up stays short
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(root=clips.parent, mode="skip"))
    result = sslc("validate", str(recipe), env=env)
    assert result.code == 0, result.err + result.out
    assert "valid" in result.out

    recipe.write_text(RECIPE.format(root=clips.parent, mode="ignore"))
    assert_user_error(sslc("validate", str(recipe), env=env), "on_bad_video", "recipe.yaml:4")


TRAIN_RECIPE = """\
name: clips-train
data_root: {root}
datasets:
  clips: {{type: video-folder, root: clips}}
models:
  m:
    encoder: {{type: resnet18, small_input: true}}
    train:
      dataset: clips
      pair_sampler: {{type: aggressive-crop, size: 16}}
      objective: {{type: moco-queue, queue_size: 16, dim: 8}}
      epochs: 1
      batch_size: 2
      num_workers: 0
"""


def test_sslc_run_reports_a_truncated_video_by_name(sslc: Any, clips: Path, tmp_path: Path) -> None:
    """The dataset is prepared before any sampler runs: a bad video stops `sslc run` with one
    `error:` line naming the file, exit 2, no traceback."""
    require_plugins("video-folder", "resnet18", "aggressive-crop", "moco-queue")
    bad = truncate(write_mp4(clips / "cats" / "broken.mp4", 12))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(TRAIN_RECIPE.format(root=clips.parent))
    env = {"SSLC_LOAD_PLUGINS": "video-folder,resnet,aggressive-crop,moco-queue"}
    result = sslc("run", str(recipe), "--run-dir", str(tmp_path / "run"), "--quiet", env=env)
    assert_user_error(result, "cannot decode video", str(bad), "on_bad_video: skip")
