"""Recipes of other shapes than the built-in ones train on videos (issue: learning from
video): a TrackingNet root with `frame-temporal` and `gt-tracks`, a folder of mp4 files with
`frame-temporal`, and the folder with one truncated mp4 under `on_bad_video: skip`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import assert_user_error, require_plugins
from videokit import truncate, write_mp4, write_trackingnet

PLUGINS = ("trackingnet", "video-folder", "video-pairs", "aggressive-crop", "resnet", "moco-queue")

RECIPE = """\
name: video-shapes
data_root: {root}
datasets:
  tn: {{type: trackingnet, root: TrackingNet}}
  clips: {{type: video-folder, root: clips, on_bad_video: {mode}}}
models:
  temporal-tn:
    encoder: {{type: resnet18, small_input: true}}
    train: {{dataset: tn, pair_sampler: {{type: frame-temporal, gap: 3, views: {{type: aggressive-crop, size: 16}}}}, {common}}}
  tracks-tn:
    encoder: {{type: resnet18, small_input: true}}
    train: {{dataset: tn, pair_sampler: {{type: gt-tracks, gap: 3, views: {{type: aggressive-crop, size: 16}}}}, {common}}}
  temporal-clips:
    encoder: {{type: resnet18, small_input: true}}
    train: {{dataset: clips, pair_sampler: {{type: frame-temporal, gap: 3, views: {{type: aggressive-crop, size: 16}}}}, {common}}}
"""
COMMON = ("objective: {type: moco-queue, queue_size: 16, dim: 8}, epochs: 1, batch_size: 2, "
          "max_steps: 2, num_workers: 0")


def write(tmp_path: Path, mode: str) -> Path:
    root = tmp_path / "data"
    write_trackingnet(root / "TrackingNet", {"TRAIN_0": {"a": 10, "b": 8}})
    for name in ("one", "two", "three"):
        write_mp4(root / "clips" / f"{name}.mp4", 12)
    truncate(write_mp4(root / "clips" / "broken.mp4", 12))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(root=root, mode=mode, common=COMMON))
    return recipe


@pytest.mark.slow
def test_trackingnet_and_video_folder_train_with_temporal_pairs_and_tracks(
        sslc: Any, tmp_path: Path) -> None:
    require_plugins("trackingnet", "video-folder", "frame-temporal", "gt-tracks", "resnet18",
                    "moco-queue")
    recipe = write(tmp_path, "skip")
    run = tmp_path / "run"
    result = sslc("run", str(recipe), "--run-dir", str(run), "--quiet",
                  env={"SSLC_LOAD_PLUGINS": ",".join(PLUGINS)})
    assert result.code == 0, result.err + result.out
    for model in ("temporal-tn", "tracks-tn", "temporal-clips"):
        train = json.loads((run / "models" / model / "train.json").read_text())
        assert train["steps"] == 2 and train["pair_stats"]["pairs"] > 0, train
    clips = json.loads((run / "models" / "temporal-clips" / "train.json").read_text())
    assert clips["dataset_stats"]["videos"] == 3
    assert clips["dataset_stats"]["skipped_bad_videos"] == 1


def test_a_truncated_mp4_stops_the_run_naming_it(sslc: Any, tmp_path: Path) -> None:
    require_plugins("trackingnet", "video-folder", "frame-temporal", "resnet18", "moco-queue")
    recipe = write(tmp_path, "error")
    result = sslc("run", str(recipe), "--run-dir", str(tmp_path / "run"), "--quiet",
                  "--set", "models.temporal-tn=null", "--set", "models.tracks-tn=null",
                  env={"SSLC_LOAD_PLUGINS": ",".join(PLUGINS)})
    assert_user_error(result, "broken.mp4")
