"""video-frames, frame-temporal, gt-tracks: the paper's frame-index rules, which frames and
boxes each item really reads (frame folders and mp4 alike), reproducible views, the view
augmentation they compose (`views`), clear data and recipe errors, the plugin contract, and a
tiny `sslc run` on videos.

The videos are real files: JPEG frame folders (boxes in `boxes.txt`) and mp4 (written by
OpenCV, fourcc mp4v; tracks in an sslc `*.tracks.json` sidecar). Each frame's background
green level encodes its index, and the tracked object is a red box, so a view tells which
frame, and which part of it, it was made from.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import require_plugins
from PIL import Image
from pydantic import Field

import sslc_plugins.aggressive_crop as aggressive_crop
import sslc_plugins.video_pairs as plugin
from ssl_core import (
    TEMPORAL_GAP,
    ComponentError,
    DataError,
    Dataset,
    ImageRecord,
    Params,
    Register,
    Track,
    VideoDataset,
    VideoRecord,
    ViewAugmentation,
    hookimpl,
    inspect_video,
    read_tracks_sidecar,
    temporal_pairs,
)
from ssl_core.plugin.host import PluginHost
from ssl_core.testing import (
    check_pair_sampler,
    check_params_reject_unknown_keys,
    check_registers_cleanly,
    fresh_host,
)
from sslc_plugins.video_pairs import (
    FrameTemporal,
    FrameTemporalParams,
    GtTracks,
    GtTracksParams,
    VideoFrames,
    VideoFramesParams,
    uniform_frames,
)

W, H = 64, 48  # frame size (decord's get_batch fails on some small widths, e.g. 48)
RED = (230, 20, 20)
SAMPLERS = ("video-frames", "frame-temporal", "gt-tracks")


# -- a small video dataset over real files (also registered for the `sslc run` test) ----------
class TinyVideosParams(Params):
    root: Path = Field(description="folder of frame folders (boxes.txt) and .mp4 files")


class TinyVideos(VideoDataset):
    """Each sub-folder of JPEGs is a video (main track from `boxes.txt`: `x1,y1,x2,y2` or
    `nan` per frame); each `.mp4` is a video (tracks from `<stem>.tracks.json`, main = the
    first object, unless the sidecar says `"main": null`)."""

    def __init__(self, params: TinyVideosParams) -> None:
        self.root = params.root

    def videos(self, subset: str | None = None) -> list[VideoRecord]:
        out = []
        for path in sorted(self.root.iterdir()):
            if path.is_dir():
                frames = tuple(sorted(path.glob("*.jpg")))
                tracks = {}
                if (path / "boxes.txt").exists():
                    rows = [[float(v) for v in line.split(",")] if line != "nan" else [np.nan] * 4
                            for line in (path / "boxes.txt").read_text().split()]
                    tracks["1"] = Track(np.asarray(rows, np.float32).reshape(-1, 4), "box")
                out.append(VideoRecord(path.name, path, len(frames), frames, tracks,
                                       "1" if tracks else None))
            elif path.suffix == ".mp4":
                n, fps, _ = inspect_video(path)
                sidecar = path.with_suffix(".tracks.json")
                tracks, doc = read_tracks_sidecar(sidecar) if sidecar.exists() else ({}, {})
                main = doc.get("main", min(tracks)) if tracks else None
                out.append(VideoRecord(path.stem, path, n, tracks=tracks, main_track=main, fps=fps))
        return out


@hookimpl
def register_datasets(register: Register) -> None:
    register("tiny-videos", TinyVideos, params=TinyVideosParams,
             summary="frame folders and mp4 files for the video pair-sampler tests")


class Images(Dataset):
    """Not a video dataset."""

    root = Path("/nowhere/images")

    def records(self, subset: str | None = None) -> list[ImageRecord]:
        return []


def listed(*videos: VideoRecord) -> VideoDataset:
    class Listed(VideoDataset):
        root = Path("/listed")

        def videos(self, subset: str | None = None) -> list[VideoRecord]:
            return list(videos)

    return Listed()


# -- fixture writers ---------------------------------------------------------------------------
def box_at(i: int) -> list[float]:
    """The red object's box in frame i: 20 x 14 px, moving right 4 px a frame."""
    return [4.0 + 4 * i, 8.0, 24.0 + 4 * i, 22.0]


def frame(i: int, boxes: Sequence[Sequence[float] | None] = ()) -> np.ndarray:
    """RGB frame i: background green level 10 + 20 i (the frame's index), red boxes."""
    img = np.empty((H, W, 3), np.uint8)
    img[:] = (40, 10 + 20 * i, 160)
    for b in boxes:
        if b is not None:
            x1, y1, x2, y2 = (int(v) for v in b)
            img[y1:y2, x1:x2] = RED
    return img


def write_folder(root: Path, name: str, n: int, boxes: Sequence[str] | None = None) -> Path:
    """A frame-folder video. `boxes` (one `x1,y1,x2,y2` or `nan` line per frame) goes to
    boxes.txt and is drawn red; without it the object moves as `box_at` and is not annotated."""
    folder = root / name
    folder.mkdir(parents=True)
    for i in range(n):
        if boxes is None:
            drawn = [box_at(i)]
        else:
            drawn = [] if boxes[i] == "nan" else [[float(v) for v in boxes[i].split(",")]]
        Image.fromarray(frame(i, drawn)).save(folder / f"{i:04d}.jpg", quality=95)
    if boxes is not None:
        (folder / "boxes.txt").write_text("\n".join(boxes) + "\n")
    return folder


def write_mp4(root: Path, name: str, n: int, objects: Sequence[Sequence[Sequence[float] | None]] = (),
              main: str | None | bool = False) -> Path:
    """An mp4 (OpenCV, mp4v) with an sslc tracks sidecar when `objects` are given."""
    path = root / f"{name}.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10, (W, H))
    assert writer.isOpened()
    for i in range(n):
        writer.write(cv2.cvtColor(frame(i, [obj[i] for obj in objects]), cv2.COLOR_RGB2BGR))
    writer.release()
    if objects:
        doc: dict = {"num_frames": n, "size": [H, W], "fps": 10,
                     "objects": [{"id": k + 1, "category": "box", "boxes": list(obj)}
                                 for k, obj in enumerate(objects)]}
        if main is not False:
            doc["main"] = main
        path.with_suffix(".tracks.json").write_text(json.dumps(doc))
    return path


@pytest.fixture()
def videos(tmp_path: Path) -> Path:
    """walk: 10 JPEG frames with a red box; clip: 7 mp4 frames with a red box; stub: 2 frames."""
    root = tmp_path / "videos"
    root.mkdir()
    write_folder(root, "walk", 10, [",".join(map(str, box_at(i))) for i in range(10)])
    write_mp4(root, "clip", 7, [[box_at(i) for i in range(7)]])
    write_folder(root, "stub", 2, [",".join(map(str, box_at(i))) for i in range(2)])
    return root


def dataset(root: Path) -> TinyVideos:
    return TinyVideos(TinyVideosParams(root=root))


def views(**knobs: object) -> dict:
    """A `views:` entry: aggressive-crop's MoCo-v2 pipeline with these knobs."""
    return {"type": "aggressive-crop", **knobs}


#: the MoCo-v2 knobs switched off: a view is the whole frame (or box), resized, raw [0, 1] pixels
PLAIN = views(size=32, scale=(1.0, 1.0), ratio=(W / H, W / H), jitter_p=0.0, grayscale_p=0.0,
              blur_p=0.0, flip_p=0.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def host() -> PluginHost:
    """video-pairs and the view augmentation its samplers compose, alone in a fresh host."""
    h = fresh_host(plugin, "video-pairs")
    assert h.add_plugin(aggressive_crop, "aggressive-crop")
    return h


_HOST = host()


def make(cls: type[plugin.VideoPairSampler], **params: object) -> plugin.VideoPairSampler:
    """A sampler built through a registry holding the views it composes (as the runner builds
    it), whatever plugins are installed or SSLC_LOAD_PLUGINS allows."""
    sampler = _HOST.registry.create("pair-sampler", {"type": cls.name, **params})
    assert isinstance(sampler, cls)
    return sampler


def frame_index(view: torch.Tensor) -> int:
    """Which frame a plain view shows: its median green level is 10 + 20 i."""
    green = float(view[1].median()) * 255
    i = round((green - 10) / 20)
    assert abs(green - (10 + 20 * i)) < 6, green
    return i


def red_fraction(view: torch.Tensor) -> float:
    r, g, b = view
    return float(((r > 0.6) & (g < 0.35) & (b < 0.35)).float().mean())


# -- the frame-index rules ------------------------------------------------------------------
def test_frame_temporal_rule_is_i_mod_k_and_i_plus_k_below_t() -> None:
    assert temporal_pairs(10, 3) == [(0, 3), (3, 6), (6, 9)]
    assert temporal_pairs(9, 3) == [(0, 3), (3, 6)]  # (6, 9) would need frame 9 of 0..8
    assert temporal_pairs(4, 3) == [(0, 3)] and temporal_pairs(3, 3) == [] == temporal_pairs(1, 1)
    assert temporal_pairs(5, 1) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    for t in range(1, 40):
        for k in range(1, 12):
            got = temporal_pairs(t, k)
            want = [(i, i + k) for i in range(t) if i % k == 0 and i + k < t]
            assert got == want, (t, k)


def test_video_frames_are_uniformly_spaced() -> None:
    assert uniform_frames(10, 3) == [1, 5, 8]
    assert uniform_frames(300, 3) == [50, 150, 250]
    assert uniform_frames(3, 3) == [0, 1, 2] and uniform_frames(7, 1) == [3]
    for t in range(1, 60):
        for k in range(1, t + 1):
            got = uniform_frames(t, k)
            assert len(set(got)) == k and got == sorted(got) and got[0] >= 0 and got[-1] < t
            if k > 1:  # equal steps up to rounding, and centred in the video
                assert np.ptp(np.diff(got)) <= 1, (t, k, got)
            assert abs(np.mean(got) - (t - 1) / 2) <= 0.5, (t, k, got)


def test_defaults_are_the_papers_and_moco_v2s() -> None:
    for cls in (VideoFramesParams, FrameTemporalParams, GtTracksParams):
        p = cls()
        assert p.views == {"type": "aggressive-crop"} and p.subset is None
        v = cls.model_fields["views"]
        assert v.get_default(call_default_factory=True) is not p.views  # never shared
        sampler = make(VideoFrames)
        assert isinstance(sampler.views, ViewAugmentation) and sampler.views.size == 224
        assert sampler.views.augment_on == "cpu"
    assert VideoFramesParams().frames_per_video == 3
    assert FrameTemporalParams().gap == GtTracksParams().gap == TEMPORAL_GAP
    g = GtTracksParams()
    assert g.tracks == "main" and g.context == 0.0


# -- which frames the items read ----------------------------------------------------------------
def test_frame_temporal_items_read_frames_i_and_i_plus_k(videos: Path) -> None:
    sampler = make(FrameTemporal, gap=3, views=PLAIN)
    pairs = sampler.pairs(dataset(videos))
    # clip (mp4, T=7): (0,3), (3,6); stub (T=2): too short; walk (folders, T=10): 3 pairs
    expect = [(0, 0, 3), (0, 3, 6), (2, 0, 3), (2, 3, 6), (2, 6, 9)]
    assert len(pairs) == len(expect)
    for n, (video, a, b) in enumerate(expect):
        item = pairs[n]
        assert item["index"] == n and item["video"] == video
        assert item["frames"].dtype == torch.int64 and item["frames"].tolist() == [a, b]
        assert item["query"].shape == item["key"].shape == (3, 32, 32)
        assert (frame_index(item["query"]), frame_index(item["key"])) == (a, b), (n, video)
    assert sampler.stats() == {"videos": 3, "videos_used": 2, "videos_too_short": 1, "pairs": 5}


def test_video_frames_gives_k_frames_per_video_two_views_each(videos: Path) -> None:
    sampler = make(VideoFrames, frames_per_video=3, views=PLAIN)
    pairs = sampler.pairs(dataset(videos))
    assert len(pairs) == 2 * 3  # stub (2 frames < 3) is skipped
    got = [(pairs[n]["video"], pairs[n]["frames"].tolist()) for n in range(len(pairs))]
    assert got == [(0, [f, f]) for f in uniform_frames(7, 3)] + \
        [(2, [f, f]) for f in uniform_frames(10, 3)]
    for n in range(len(pairs)):
        item = pairs[n]
        f = item["frames"][0].item()
        assert frame_index(item["query"]) == frame_index(item["key"]) == f
        assert torch.equal(item["query"], item["key"])  # nothing random is left on
    assert sampler.stats() == {"videos": 3, "videos_used": 2, "videos_too_short": 1, "pairs": 6}
    # with the MoCo-v2 augmentation on, the two views of one frame differ
    moco = make(VideoFrames, views=views(size=32)).pairs(dataset(videos))
    torch.manual_seed(0)
    item = moco[0]
    assert not torch.equal(item["query"], item["key"])


def test_views_are_augmented_separately_and_reproducibly(videos: Path) -> None:
    pairs = make(FrameTemporal, views=views(size=24), gap=3).pairs(dataset(videos))
    seen = []
    for noise in (1, 2):
        random.seed(noise)
        np.random.seed(noise)
        torch.manual_seed(7)
        seen.append(pairs[3])
    assert torch.equal(seen[0]["query"], seen[1]["query"])
    assert torch.equal(seen[0]["key"], seen[1]["key"])
    torch.manual_seed(8)
    other = pairs[3]
    assert not torch.equal(other["query"], seen[0]["query"])
    batch = next(iter(torch.utils.data.DataLoader(pairs, batch_size=4)))
    assert batch["query"].shape == (4, 3, 24, 24) and batch["frames"].shape == (4, 2)
    assert batch["video"].tolist() == [0, 0, 2, 2]


# -- gt-tracks ----------------------------------------------------------------------------------
@pytest.mark.parametrize("video", [0, 2], ids=["mp4", "frame-folder"])
def test_gt_tracks_crops_are_the_annotated_box(videos: Path, video: int) -> None:
    plain = {**PLAIN, "ratio": (20 / 14, 20 / 14)}  # the box's aspect: the whole box is kept
    pairs = make(GtTracks, gap=3, views=plain).pairs(dataset(videos))
    items = [pairs[n] for n in range(len(pairs)) if pairs[n]["video"] == video]
    assert [tuple(it["frames"].tolist()) for it in items] == temporal_pairs(7 if video == 0 else 10, 3)
    for it in items:
        for view in (it["query"], it["key"]):
            assert red_fraction(view) > 0.9, red_fraction(view)
    # the box's surroundings come in with context: width and height doubled -> ~1/4 red
    wide = make(GtTracks, gap=3, context=1.0, views=plain).pairs(dataset(videos))
    it = next(wide[n] for n in range(len(wide)) if wide[n]["video"] == video)
    assert 0.15 < red_fraction(it["query"]) < 0.4, red_fraction(it["query"])
    assert frame_index(it["query"]) == it["frames"][0].item()  # the background is the frame's


def test_gt_tracks_skips_absent_and_small_boxes_and_counts_them(tmp_path: Path) -> None:
    root = tmp_path / "v"
    root.mkdir()
    lines = [",".join(map(str, box_at(i))) for i in range(10)]
    lines[3] = "nan"  # absent at 3: (0,3) and (3,6) go
    lines[9] = "40,30,44,34"  # 4 px at 9: (6,9) is too small for min_box_size 8
    write_folder(root, "a", 10, lines)
    write_folder(root, "b", 12, [",".join(map(str, box_at(i % 10))) for i in range(12)])
    sampler = make(GtTracks, gap=3, views=PLAIN)
    pairs = sampler.pairs(dataset(root))
    assert [pairs[n]["frames"].tolist() for n in range(len(pairs))] == [[0, 3], [3, 6], [6, 9]]
    assert all(pairs[n]["video"] == 1 for n in range(len(pairs)))
    assert sampler.stats() == {"videos": 2, "videos_used": 1, "videos_too_short": 0,
                               "videos_without_pairs": 1, "pairs": 3,
                               "pairs_skipped_absent": 2, "pairs_skipped_small": 1}
    loose = make(GtTracks, gap=3, min_box_size=4, views=PLAIN)
    assert len(loose.pairs(dataset(root))) == 4


def test_gt_tracks_all_uses_every_track(tmp_path: Path) -> None:
    root = tmp_path / "v"
    root.mkdir()
    second = [[40.0, 26.0, 60.0, 44.0] if i < 4 else None for i in range(7)]
    write_mp4(root, "two", 7, [[box_at(i) for i in range(7)], second])
    main = make(GtTracks, gap=3, views=PLAIN).pairs(dataset(root))
    every = make(GtTracks, gap=3, tracks="all", views=PLAIN)
    pairs = every.pairs(dataset(root))
    assert len(main) == 2 and len(pairs) == 3  # track 2 is gone by frame 6
    boxes = pairs.plan.boxes
    assert boxes is not None and boxes[2].tolist() == [second[0], second[3]]
    assert every.stats()["pairs_skipped_absent"] == 1
    for n in range(3):
        assert red_fraction(pairs[n]["query"]) > 0.8


def test_gt_tracks_needs_tracks(tmp_path: Path) -> None:
    root = tmp_path / "v"
    root.mkdir()
    write_folder(root, "plain", 10)
    with pytest.raises(DataError) as err:
        make(GtTracks, gap=3).pairs(dataset(root))
    assert "plain" in err.value.message and "no object tracks" in err.value.message
    assert "trackingnet" in str(err.value) and "frame-temporal" in str(err.value)
    # tracks but no main one: `tracks: all` is the way out
    write_mp4(root, "nomain", 7, [[box_at(i) for i in range(7)]], main=None)
    (root / "plain" / "boxes.txt").write_text("\n".join(",".join(map(str, box_at(i)))
                                                        for i in range(10)))
    with pytest.raises(DataError) as err:
        make(GtTracks, gap=3).pairs(dataset(root))
    assert "nomain" in err.value.message and "tracks: all" in str(err.value)
    assert len(make(GtTracks, gap=3, tracks="all").pairs(dataset(root))) == 5


# -- data errors --------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [VideoFrames, FrameTemporal, GtTracks])
def test_image_dataset_is_refused_by_name(cls) -> None:
    with pytest.raises(DataError) as err:
        make(cls).pairs(Images())
    assert "Images" in err.value.message and "video dataset" in err.value.message
    assert cls.name in err.value.message
    assert "trackingnet" in str(err.value) and "video-folder" in str(err.value)


def test_no_usable_video_is_a_data_error(videos: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no videos"):
        make(FrameTemporal).pairs(listed())
    with pytest.raises(DataError) as err:  # every video has <= 100 frames
        make(FrameTemporal).pairs(dataset(videos))
    assert "none of the 3 videos" in err.value.message and "too short: 3" in err.value.message
    assert "gap=100" in str(err.value)
    with pytest.raises(DataError, match="frames_per_video=20"):
        make(VideoFrames, frames_per_video=20).pairs(dataset(videos))


def test_box_outside_the_frame_names_the_video_and_frame(tmp_path: Path) -> None:
    root = tmp_path / "v"
    root.mkdir()
    write_folder(root, "off", 4, ["100,100,140,130"] * 4)
    pairs = make(GtTracks, gap=1, views=PLAIN).pairs(dataset(root))
    with pytest.raises(DataError) as err:
        pairs[0]
    assert str(root / "off") in err.value.message and "frame 0" in err.value.message


def test_bad_params_are_rejected() -> None:
    registry = host().registry
    for name, bad in (("frame-temporal", {"gap": 0}), ("video-frames", {"frames_per_video": 0}),
                      ("gt-tracks", {"tracks": "some"}), ("gt-tracks", {"context": -0.1}),
                      ("gt-tracks", {"min_box_size": 0}),
                      ("frame-temporal", {"views": views(scale=[0.9, 0.2])}),
                      ("video-frames", {"gap": 3})):
        with pytest.raises(ComponentError):
            registry.create("pair-sampler", {"type": name, **bad})


# -- views: the composed view augmentation ------------------------------------------------------
WHERE = "models.m.train.pair_sampler"


@pytest.mark.parametrize("name", SAMPLERS)
def test_views_are_created_through_the_registry(name: str, videos: Path) -> None:
    registry = host().registry
    sampler = registry.create("pair-sampler", {"type": name, "gap": 3} if name != "video-frames"
                              else {"type": name}, where=WHERE)
    assert isinstance(sampler.views, aggressive_crop.MocoV2Views) and sampler.views.size == 224
    sampler = registry.create("pair-sampler", {"type": name, "views": views(size=20, hue=0.3)})
    assert sampler.views.size == 20 and sampler.views.p.hue == 0.3
    # only the composed views' plugin knows the name: without it, the error says so
    alone = fresh_host(plugin, "video-pairs").registry
    with pytest.raises(ComponentError, match=rf"view-augmentation 'aggressive-crop' at {WHERE}.views"):
        alone.create("pair-sampler", {"type": name}, where=WHERE)


def test_a_third_party_view_augmentation_is_composed(videos: Path) -> None:
    """Any registered view augmentation works: here one that gives the frame's mean colour."""

    class MeanColourParams(Params):
        size: int = 8

    class MeanColour(ViewAugmentation):
        def __init__(self, params: MeanColourParams) -> None:
            self.size = params.size

        def draw_crop(self, img: Image.Image) -> tuple[int, int, int, int]:
            return 0, 0, img.height, img.width

        def finish(self, img: Image.Image, crop: tuple[int, int, int, int]
                   ) -> tuple[torch.Tensor, bool]:
            pixels = torch.from_numpy(np.asarray(img, np.float32) / 255).permute(2, 0, 1)
            return pixels.mean((1, 2), keepdim=True).expand(3, self.size, self.size), False

    class Views:
        @hookimpl
        def register_view_augmentations(self, register: Register) -> None:
            register("mean-colour", MeanColour, params=MeanColourParams, summary="mean colour")

    h = fresh_host(plugin, "video-pairs")
    assert h.add_plugin(Views(), "mean-colour")
    sampler = h.registry.create("pair-sampler", {"type": "frame-temporal", "gap": 3,
                                                 "views": {"type": "mean-colour", "size": 4}})
    item = sampler.pairs(dataset(videos))[0]
    assert item["query"].shape == (3, 4, 4)
    assert frame_index(item["query"]) == 0 and frame_index(item["key"]) == 3


@pytest.mark.parametrize("bad, match", [
    ({"views": views(size=0)}, rf"{WHERE}.views.size"),
    ({"views": views(sizee=3)}, rf"{WHERE}.views.sizee: unknown parameter"),
    ({"views": {"type": "aggresive-crop"}}, r"did you mean 'aggressive-crop'"),
    ({"views": {"size": 48}}, rf"{WHERE}.views: missing 'type'"),
    ({"views": 48}, rf"{WHERE}.views"),
])
def test_bad_views_name_their_recipe_path(bad: dict, match: str) -> None:
    registry = host().registry
    with pytest.raises(ComponentError, match=match):
        registry.validate("pair-sampler", {"type": "gt-tracks", **bad}, where=WHERE)


def test_old_flat_crop_parameters_fail_showing_the_new_form() -> None:
    """Recipes written before `views` put the crop knobs on the sampler itself."""
    registry = host().registry
    with pytest.raises(ComponentError) as err:
        registry.validate("pair-sampler", {"type": "frame-temporal", "gap": 4, "size": 48,
                                           "scale": [0.3, 1.0]}, where=WHERE)
    assert str(err.value.message).startswith(f"{WHERE}: size, scale are parameters of the "
                                             "view-augmentation 'aggressive-crop'")
    assert "views: {type: aggressive-crop, size: 48, scale: [0.3, 1.0]}" in str(err.value.hint)
    # the new form, the same knobs: accepted
    registry.validate("pair-sampler", {"type": "frame-temporal", "gap": 4,
                                       "views": views(size=48, scale=[0.3, 1.0])}, where=WHERE)


def test_old_and_new_form_give_the_same_pairs(videos: Path) -> None:
    """The knobs moved, the numbers did not: the sampler's views are aggressive-crop's own."""
    knobs = dict(size=24, scale=(0.3, 0.9), hue=0.2)
    crop = aggressive_crop.AggressiveCrop(aggressive_crop.AggressiveCropParams(**knobs))
    pairs = make(GtTracks, gap=3, views=views(**knobs)).pairs(dataset(videos))
    for seed in range(3):
        torch.manual_seed(seed)
        item = pairs[1]
        first, second = pairs.images(1)
        torch.manual_seed(seed)
        assert torch.equal(item["query"], crop.transform(first))
        assert torch.equal(item["key"], crop.transform(second))


# -- the plugin contract ------------------------------------------------------------------------
def test_plugin_contract(videos: Path) -> None:
    regs = check_registers_cleanly(plugin, "video-pairs")
    assert {r.name for r in regs} == set(SAMPLERS)
    registry = host().registry
    ds = dataset(videos)
    for name in SAMPLERS:
        check_params_reject_unknown_keys("pair-sampler", name, registry=registry)
        for augment_on in ("cpu", "gpu"):  # gpu: aggressive-crop's finish, run here on CPU
            v = views(size=16, augment_on=augment_on)
            sampler = registry.create("pair-sampler", {"type": name, "views": v, "gap": 3}
                                      if name != "video-frames" else {"type": name, "views": v})
            check_pair_sampler(sampler, ds, items=3)


def test_gpu_path_gives_the_cpu_paths_views(videos: Path) -> None:
    """Same seed, same draws: only PIL's 8-bit rounding between steps separates the two."""
    cpu = make(GtTracks, views=views(size=24), gap=3).pairs(dataset(videos))
    sampler = make(GtTracks, views=views(size=24, augment_on="gpu"), gap=3)
    gpu = sampler.pairs(dataset(videos))
    std = torch.tensor((0.229, 0.224, 0.225)).view(3, 1, 1)
    for seed in range(6):
        torch.manual_seed(seed)
        a = cpu[1]
        torch.manual_seed(seed)
        b = sampler.on_device(torch.utils.data.default_collate([gpu[1]]))
        assert b["frames"].tolist() == [a["frames"].tolist()]
        for key in ("query", "key"):
            assert float(((b[key][0] - a[key]) * std).abs().mean()) < 0.02, (seed, key)


def test_worker_processes_read_mp4_videos_listed_in_the_parent(videos: Path) -> None:
    """The trainer's DataLoader forks workers (num_workers defaults to 2) after the dataset
    was listed, and listing mp4 files decodes them (frame count, last frame)."""
    pairs = make(FrameTemporal, views=views(size=16), gap=3).pairs(dataset(videos))
    loader = torch.utils.data.DataLoader(pairs, batch_size=5, num_workers=2, timeout=15)
    (batch,) = list(loader)
    assert batch["frames"].tolist() == [[0, 3], [3, 6], [0, 3], [3, 6], [6, 9]]


# -- end to end ----------------------------------------------------------------------------------
def test_tiny_training_run_on_videos(sslc, videos: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`sslc run` trains on frame-temporal pairs of a video dataset registered by this module,
    installed as a real (minimal) distribution with an `sslc.plugins` entry point."""
    require_plugins("resnet18", "moco-queue", "frame-temporal")
    site = tmp_path / "site"
    info = site / "sslc_video_test-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sslc-video-test\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[sslc.plugins]\ntiny-videos = {__name__}\n")
    monkeypatch.syspath_prepend(str(site))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""\
name: videos
data_root: {tmp_path}
datasets:
  train: {{type: tiny-videos, root: videos}}
models:
  m:
    encoder: {{type: resnet18, small_input: true}}
    train:
      dataset: train
      pair_sampler: {{type: gt-tracks, views: {{type: aggressive-crop, size: 16}}, gap: 2}}
      objective: {{type: moco-queue, queue_size: 16, dim: 8}}
      epochs: 1
      batch_size: 4
      num_workers: 0
""")
    run_dir = tmp_path / "run"
    res = sslc("run", str(recipe), "--run-dir", str(run_dir), "--quiet")
    assert res.code == 0, res.err + res.out
    result = json.loads((run_dir / "models" / "m" / "train.json").read_text())
    # walk: 4 pairs (0,2)...(6,8); clip: (0,2), (2,4), (4,6); stub: too short
    assert result["pair_stats"]["pairs"] == 7 and result["pair_stats"]["videos_too_short"] == 1
    assert result["steps"] >= 1 and np.isfinite(result["final_loss"])
