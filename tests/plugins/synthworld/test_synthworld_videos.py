"""The synthetic world's videos part (mp4 + tracks sidecar, TrackingNet's layout) and the
world's parts: each rendered, cached and completed on its own."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import numpy as np
import pytest
from helpers import require_plugins
from PIL import Image
from pydantic import ValidationError

import sslc_plugins.synthworld as synthworld
from ssl_core import DataError, inspect_video, read_frames, read_tracks_sidecar
from ssl_core.plugin.host import get_registry
from sslc_plugins.synthworld import common, writer
from sslc_plugins.synthworld.write_videos import (
    TRACKINGNET,
    YAW_STEP,
    plan_video,
    render_frame,
    video_name,
)

TINY = common.SIZES["tiny"]


def _render(cache: Path, parts: list[str], seed: int = 0) -> Path:
    return synthworld.synthesize("tiny", seed, cache_dir=cache, parts=parts)


@pytest.fixture(scope="module")
def videos_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny world's videos part alone."""
    return _render(tmp_path_factory.mktemp("videos-a"), ["videos"])


def _names() -> list[str]:
    return [video_name(n) for n in range(1, TINY.videos + 1)]


def _files(root: Path, *folders: str) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for f in folders for p in sorted((root / f).rglob("*")) if p.is_file()}


def test_videos_part_writes_mp4_sidecar_and_trackingnet_layout(videos_root: Path) -> None:
    h, w = TINY.video_size
    t = TINY.video_frames
    assert sorted(p.name for p in (videos_root / "videos").glob("*.mp4")) == [n + ".mp4" for n in _names()]
    assert sorted(p.name for p in (videos_root / TRACKINGNET / "anno").iterdir()) == \
        [n + ".txt" for n in _names()]
    assert not (videos_root / "imagenet").exists() and not (videos_root / "aloi.json").exists()
    for name in _names():
        frames, fps, size = inspect_video(videos_root / "videos" / f"{name}.mp4")  # decord
        assert (frames, size, fps) == (t, (h, w), pytest.approx(TINY.video_fps))
        doc = json.loads((videos_root / "videos" / f"{name}.tracks.json").read_text())
        assert (doc["num_frames"], doc["size"], doc["fps"]) == (t, [h, w], TINY.video_fps)
        assert 2 <= len(doc["objects"]) <= 4
        assert [o["id"] for o in doc["objects"]] == list(range(1, len(doc["objects"]) + 1))
        for obj in doc["objects"]:
            assert obj["category"] in TINY.categories and isinstance(obj["instance"], int)
            assert len(obj["boxes"]) == t
            for b in obj["boxes"]:
                assert b is None or (0 <= b[0] < b[2] <= w and 0 <= b[1] < b[3] <= h)
        tracks, fields = read_tracks_sidecar(videos_root / "videos" / f"{name}.tracks.json")
        assert set(tracks) == {str(o["id"]) for o in doc["objects"]} and fields["num_frames"] == t
        # TrackingNet: frames 0.jpg .. (T-1).jpg, one x,y,w,h line per frame for object 1
        folder = videos_root / TRACKINGNET / "frames" / name
        assert sorted(p.name for p in folder.iterdir()) == sorted(f"{i}.jpg" for i in range(t))
        assert Image.open(folder / "0.jpg").size == (w, h)
        lines = (videos_root / TRACKINGNET / "anno" / f"{name}.txt").read_text().splitlines()
        assert len(lines) == t
        main = doc["objects"][0]["boxes"]
        assert all(b is not None for b in main)  # the main object is in view in every frame
        for line, (x1, y1, x2, y2) in zip(lines, main, strict=True):
            x, y, bw, bh = (float(v) for v in line.split(","))
            assert (x, y, x + bw, y + bh) == pytest.approx((x1, y1, x2, y2))
    manifest = json.loads((videos_root / "videos.json").read_text())
    assert manifest["part"] == "videos" and manifest["counts"]["videos"] == TINY.videos
    meta = [json.loads(x) for x in (videos_root / "videos" / "meta.jsonl").read_text().splitlines()]
    assert [m["name"] for m in meta] == _names()


def test_the_video_readers_read_the_part(videos_root: Path) -> None:
    """`trackingnet` (TrackingNet/) and `video-folder` (videos/) see the same videos and tracks."""
    require_plugins("trackingnet", "video-folder")
    reg = get_registry()
    tn = reg.create("dataset", {"type": "trackingnet", "root": str(videos_root / "TrackingNet")})
    vf = reg.create("dataset", {"type": "video-folder", "root": str(videos_root / "videos")})
    tn.prepare()
    vf.prepare()
    tn_videos, vf_videos = tn.videos(), vf.videos()
    assert [v.name for v in tn_videos] == _names() and len(vf_videos) == TINY.videos
    for a, b in zip(tn_videos, vf_videos, strict=True):
        assert a.num_frames == b.num_frames == TINY.video_frames
        main = a.tracks[a.main_track].boxes
        assert np.allclose(main, b.tracks["1"].boxes)  # TrackingNet's object = the sidecar's object 1
        jpg, mp4 = read_frames(a, [0, 5]).astype(float), read_frames(b, [0, 5]).astype(float)
        assert jpg.shape == mp4.shape == (2, *TINY.video_size, 3)
        assert np.abs(jpg - mp4).mean() < 12  # the same frames (JPEG vs mp4v artefacts aside)


def test_same_seed_same_bytes_other_seed_other_frames(videos_root: Path, tmp_path: Path) -> None:
    again = _render(tmp_path / "b", ["videos"])
    folders = ("videos", TRACKINGNET)
    a, b = _files(videos_root, *folders), _files(again, *folders)
    assert set(a) == set(b)
    jpgs = [k for k in a if k.endswith(".jpg")]
    sidecars = [k for k in a if k.endswith(".tracks.json")]
    assert len(jpgs) == TINY.videos * TINY.video_frames and len(sidecars) == TINY.videos
    for key in [*jpgs, *sidecars, *(k for k in a if k.endswith(".txt"))]:
        assert a[key] == b[key], key
    other = _render(tmp_path / "c", ["videos"], seed=1)
    first = f"{TRACKINGNET}/frames/{video_name(1)}/0.jpg"
    assert (other / first).read_bytes() != a[first]


@pytest.mark.parametrize("n", range(1, TINY.videos + 1))
def test_boxes_hold_the_objects_and_the_objects_move(videos_root: Path, n: int) -> None:
    """Each box holds pixels that differ from the empty stage (same camera and light) and
    touches them on all four sides; nothing outside the boxes differs."""
    name = video_name(n)
    doc = json.loads((videos_root / "videos" / f"{name}.tracks.json").read_text())
    plan = plan_video(0, n, TINY.video_frames, TINY.video_size, list(TINY.categories))
    assert len(plan.tracks) == len(doc["objects"])  # the plan the writer used (no redraw on tiny)
    for f in range(TINY.video_frames):
        scene, _ = render_frame(plan, f, TINY.supersample)
        empty, _ = render_frame(plan, f, TINY.supersample, objects=False)
        written = np.asarray(Image.open(videos_root / TRACKINGNET / "frames" / name / f"{f}.jpg"), float)
        assert np.abs(written - scene.image).mean() < 8  # the jpg is this frame (JPEG noise aside)
        differs = np.abs(scene.image.astype(int) - empty.image.astype(int)).max(axis=2) > 0
        covered = np.zeros_like(differs)
        for obj in doc["objects"]:
            b = obj["boxes"][f]
            if b is None:
                continue
            x1, y1, x2, y2 = (int(v) for v in b)
            inside = differs[y1:y2, x1:x2]
            assert inside.mean() > 0.15, (name, f, obj["id"])
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            covered[y1:y2, x1:x2] = True
        assert not (differs & ~covered).any(), (name, f)
    # the objects move and turn: boxes seen in the first and last frames differ
    for obj in doc["objects"]:
        first, last = obj["boxes"][0], obj["boxes"][-1]
        if first is not None and last is not None:
            assert first != last, (name, obj["id"])
    frames = [np.asarray(Image.open(videos_root / TRACKINGNET / "frames" / name / f"{f}.jpg"), float)
              for f in (0, TINY.video_frames - 1)]
    assert np.abs(frames[0] - frames[1]).mean() > 5


def test_nearby_frames_change_viewpoint_and_light(videos_root: Path) -> None:
    """What makes two nearby frames a positive pair with viewpoint and illumination change."""
    for line in (videos_root / "videos" / "meta.jsonl").read_text().splitlines():
        meta = json.loads(line)
        for obj in meta["objects"]:
            steps = np.abs((np.diff(obj["yaw"]) + 180) % 360 - 180)
            assert (steps >= YAW_STEP[0] - 1e-3).all() and (steps <= YAW_STEP[1] + 1e-3).all()
        light = meta["light"]
        assert np.abs(np.diff(light["temperature"])).min() >= 40  # kelvin a frame
        assert np.abs(np.diff(light["azimuth"])).min() >= 1.0  # degrees a frame
        assert np.abs(np.diff(meta["camera"]["azimuth"])).min() > 0.2  # the camera orbits


def _stamps(root: Path, folder: str) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in (root / folder).rglob("*")}


def test_parts_render_alone_and_join_later(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           videos_root: Path) -> None:
    monkeypatch.setitem(common.SIZES, "tiny", dataclasses.replace(TINY, aloi_objects=1))
    root = _render(tmp_path, ["aloi"])
    assert sorted(p.name for p in root.iterdir()) == ["aloi", "aloi.json"]
    aloi = {**_stamps(root, "aloi"), "aloi.json": (root / "aloi.json").stat().st_mtime_ns}
    with pytest.raises(DataError, match="'imagenet' part") as err:
        synthworld.SynthWorld(synthworld.SynthWorldParams(size="tiny", parts=["aloi"],
                                                          cache_dir=tmp_path)).records()
    assert "parts" in (err.value.hint or "")

    _render(tmp_path, ["aloi", "videos"])
    assert sorted(p.name for p in root.iterdir()) == ["TrackingNet", "aloi", "aloi.json", "videos",
                                                      "videos.json"]
    assert {**_stamps(root, "aloi"), "aloi.json": (root / "aloi.json").stat().st_mtime_ns} == aloi
    # the same bytes as the videos rendered alone
    assert _files(root, "videos", TRACKINGNET) == _files(videos_root, "videos", TRACKINGNET)

    # a part folder without its manifest (a crash between moving it in and the manifest)
    (root / "videos.json").unlink()
    (root / "videos" / "junk.txt").write_text("half a part")
    _render(tmp_path, ["aloi", "videos"])
    assert (root / "videos.json").is_file() and not (root / "videos" / "junk.txt").exists()
    assert {**_stamps(root, "aloi"), "aloi.json": (root / "aloi.json").stat().st_mtime_ns} == aloi
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


class _Interrupt:
    """A progress display whose user presses Ctrl-C after the first job."""

    def add_task(self, *args: object, **kwargs: object) -> int:
        return 0

    def advance(self, task: int, amount: float) -> None:
        raise KeyboardInterrupt


def test_an_interrupted_part_leaves_nothing_that_passes_as_complete(tmp_path: Path) -> None:
    root = writer.world_root(tmp_path, "tiny", 0)
    with pytest.raises(KeyboardInterrupt):
        writer.render_world(root, "tiny", 0, workers=1, progress=_Interrupt(), parts=["videos"])
    assert not writer.is_complete(root, "tiny", 0, ["videos"])
    assert list(root.iterdir()) == []  # no part folder, no temporary folder
    # what a killed renderer (its pid long gone) leaves is cleared by the next one
    (root / ".999999999.videos.x1y2.tmp" / "videos").mkdir(parents=True)
    (root / ".999999999.aloi.stale").mkdir()
    writer.render_world(root, "tiny", 0, workers=1, parts=["videos"])
    assert writer.is_complete(root, "tiny", 0, ["videos"])
    assert sorted(p.name for p in root.iterdir()) == ["TrackingNet", "videos", "videos.json"]


def test_parts_parameter() -> None:
    assert typing.get_args(writer.PartName) == tuple(writer.PARTS)
    folders = [f for part in writer.PARTS.values() for f in part.folders]
    assert len(folders) == len(set(folders))  # each top-level folder belongs to one part
    params = synthworld.SynthWorldParams(parts="videos, aloi")  # as `--parts videos,aloi` gives it
    assert params.parts == ["aloi", "videos"]
    assert synthworld.SynthWorldParams().parts is None
    for bad in ([], ["nope"]):
        with pytest.raises(ValidationError):
            synthworld.SynthWorldParams(parts=bad)
    with pytest.raises(DataError, match="unknown synthworld part"):
        writer.render_world(Path("unused"), "tiny", 0, parts=["scene"])


def test_synthesize_command_renders_only_the_parts_asked_for(sslc, tmp_path: Path) -> None:
    result = sslc("data", "synthesize", "--size", "tiny", "--seed", "3", "--parts", "videos", "--json",
                  "--quiet", env={"SSLC_CACHE_DIR": str(tmp_path)})
    assert result.code == 0, result.err
    out = json.loads(result.out)
    assert out["parts"] == ["videos"]
    root = Path(out["root"])
    assert sorted(p.name for p in root.iterdir()) == ["TrackingNet", "videos", "videos.json"]
