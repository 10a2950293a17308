"""GOT-10k reader and the got10k-occlusion probe on fixtures in the real layout."""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ssl_core import ComponentError, DataError, VideoDataset, load_rgb, read_frames
from ssl_core.measure.features import extract_features
from ssl_core.plugin.host import PluginHost
from sslc_plugins import got10k


def dataset(root: Path, **params: Any) -> got10k.Got10kDataset:
    return got10k.Got10kDataset(got10k.Got10kParams(root=root, **params))


A, B, C, D, E = (f"GOT-10k_Train_00000{i}" for i in range(1, 6))
#: frames of sequence D whose box cannot be cropped (frame 6, wholly outside the image, is
#: skipped when read: the authors' crop would be black)
D_UNCROPPABLE = {2, 3, 6, 7}  # zero width, NaN, outside, 0,0,0,0


def authors_selection(split_dir: Path) -> dict[str, tuple[str, list[int]]]:
    """A plain transcription of the authors' loop (global np.random, seed 1992)."""
    state = np.random.get_state()
    try:
        np.random.seed(1992)
        vids = (split_dir / "list.txt").read_text().splitlines()
        out: dict[str, tuple[str, list[int]]] = {}
        for vid in vids:
            lines = (split_dir / vid / "meta_info.ini").read_text().splitlines()[1:]
            cls = [d.split(": ")[1].replace(" ", "_") for d in lines if "object_class" in d][0]
            n = len((split_dir / vid / "groundtruth.txt").read_text().splitlines())
            f = split_dir / vid / "cover.label"
            cover = (np.array(list(map(int, f.read_text().splitlines()))) if f.exists()
                     else np.array([-1] * n))
            uniq = np.unique(cover)
            if uniq.max() - uniq.min() < 4:
                continue
            out[vid] = (cls, [int(np.random.choice(np.where(cover == c)[0])) for c in uniq])
        return out
    finally:
        np.random.set_state(state)


@pytest.mark.parametrize("sub", ["", "GOT-10k", "GOT-10k/train"])
def test_accepts_data_root_got_folder_and_split_folder(got10k_world: Any, sub: str) -> None:
    root, _ = got10k_world
    ds = dataset(root / sub if sub else root)
    assert ds.root == root / "GOT-10k" / "train"
    ds.prepare()
    assert len(ds.records()) == 14 + 5 + 4 + 8 + 4


def test_records_carry_frames_boxes_and_labels(got10k_world: Any) -> None:
    root, _ = got10k_world
    recs = dataset(root).records()
    by = {(r.group, r.meta["frame"]): r for r in recs}
    split = root / "GOT-10k" / "train"

    a8 = by[(A, 8)]
    assert a8.path == split / A / "00000009.jpg" and a8.path.is_file()
    assert a8.label == "dog" and a8.box == (5.0, 5.0, 25.0, 20.0)
    assert a8.meta == {"frame": 8, "cover": 0, "absent": True, "cut_by_image": False,
                       "image_size": (40, 30)}
    assert by[(A, 0)].meta["absent"] is False

    # label files missing: cover/cut unknown, absence only from the box
    c0 = by[(C, 0)]
    assert c0.label == "sea_lion"
    assert c0.meta["cover"] is None and c0.meta["cut_by_image"] is None
    assert c0.meta["absent"] is False

    # NaN and zero-size boxes: no box, absent; a box past the border is kept as annotated
    assert by[(D, 3)].box is None and by[(D, 3)].meta["absent"] is True
    assert by[(D, 2)].box is None and by[(D, 2)].meta["absent"] is True
    assert by[(D, 4)].box == (30.0, 20.0, 55.0, 45.0)
    assert by[(D, 4)].meta["cut_by_image"] is True
    # first object_class line wins over the odd duplicate further down
    assert by[(D, 0)].label == "sea_lion"
    assert by[(E, 0)].label == "hand_truck"
    assert [r.meta["frame"] for r in recs if r.group == A] == list(range(14))


def test_meta_info_parsing_survives_lines_configparser_rejects() -> None:
    text = ("[METAINFO]\nurl: https://youtu.be/x?t=1:02\nobject_class: sea lion\n"
            "a line without colon\n\nresolution: (1280, 720)\nobject_class: second\n")
    with pytest.raises(configparser.Error):
        configparser.ConfigParser().read_string(text)
    info = got10k.parse_meta_info(text)
    assert info["url"] == "https://youtu.be/x?t=1:02"
    assert info["object_class"] == "sea lion"
    assert got10k.parse_resolution(info["resolution"]) == (1280, 720)


def test_occlusion_probe_reproduces_the_authors_draws(got10k_world: Any) -> None:
    root, specs = got10k_world
    split = root / "GOT-10k" / "train"
    probe = got10k.Got10kOcclusionProbe()
    ps = probe.build(dataset(root))

    reference = authors_selection(split)
    assert list(reference) == [A, D, E]  # B spans 3 levels, C has no cover.label
    expected = [(vid, cls, f) for vid, (cls, frames) in reference.items() for f in frames
                if not (vid == D and f in D_UNCROPPABLE)]
    got = [(it.trajectory, it.label, it.record.meta["frame"]) for it in ps.items]
    assert got == expected

    # independent of the transcription: membership and one row per cover level
    assert ps.image_size == (128, 128) and ps.probe == "got10k-occlusion"
    rows = {t: [it for it in ps.items if it.trajectory == t] for t in ps.trajectories()}
    assert {t: {it.label for it in r} for t, r in rows.items()} == {
        A: {"dog"}, D: {"sea_lion"}, E: {"hand_truck"}}
    assert [it.record.meta["cover"] for it in rows[A]] == sorted(set(specs[A]["cover"]))
    assert [it.record.meta["cover"] for it in rows[E]] == [2, 3, 6]
    # D: levels 0, 2, 4, 6, 8; level 2 (NaN box) and 6 (box wholly outside) dropped
    d_covers = [it.record.meta["cover"] for it in rows[D]]
    assert 2 not in d_covers and 6 not in d_covers and 8 in d_covers
    for it in ps.items:
        assert specs[it.trajectory]["cover"][it.record.meta["frame"]] == it.record.meta["cover"]

    assert probe.stats["skipped_no_cover_label"] == 1
    assert probe.stats["skipped_cover_span"] == 1
    assert probe.stats["kept_sequences"] == 3
    assert probe.stats["dropped_frames_without_box"] == sum(
        f in D_UNCROPPABLE for f in reference[D][1])


def test_probe_rows_crop_through_core_feature_extraction(got10k_world: Any) -> None:
    root, _ = got10k_world
    ps = got10k.Got10kOcclusionProbe(got10k.OcclusionParams(image_size=16)).build(
        dataset(root))
    pool = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    pool.register_parameter("unused", torch.nn.Parameter(torch.zeros(1)))
    feats = extract_features(pool, ps, batch_size=4, device="cpu", progress=False)
    assert feats.shape == (len(ps.items), 3)
    assert np.isfinite(feats).all()


def test_selection_follows_list_order(got10k_world: Any) -> None:
    root, _ = got10k_world
    split = root / "GOT-10k" / "train"
    (split / "list.txt").write_text("\n".join([E, D, C, B, A]) + "\n")
    ps = got10k.Got10kOcclusionProbe().build(dataset(root))
    reference = authors_selection(split)
    assert list(reference) == [E, D, A]
    got = [(it.trajectory, it.record.meta["frame"]) for it in ps.items]
    assert got == [(v, f) for v, (_, fs) in reference.items() for f in fs
                   if not (v == D and f in D_UNCROPPABLE)]


# -- errors ----------------------------------------------------------------------------


def test_wrong_root_names_the_list_file(tmp_path: Path) -> None:
    (tmp_path / "somewhere").mkdir()
    with pytest.raises(DataError, match=r"list\.txt") as err:
        dataset(tmp_path / "somewhere").prepare()
    assert str(tmp_path / "somewhere" / "list.txt") in err.value.message
    assert err.value.hint
    with pytest.raises(DataError, match="does not exist"):
        dataset(tmp_path / "nope").records()


def test_missing_listed_folder_errors_or_is_skipped(got10k_world: Any) -> None:
    root, _ = got10k_world
    split = root / "GOT-10k" / "train"
    names = (split / "list.txt").read_text().split()
    (split / "list.txt").write_text("\n".join([*names, "GOT-10k_Train_009999"]) + "\n")
    with pytest.raises(DataError, match="GOT-10k_Train_009999"):
        dataset(root).prepare()
    with pytest.raises(DataError, match="GOT-10k_Train_009999"):
        dataset(root).records()
    ds = dataset(root, bad_sequences="skip")
    ds.prepare()
    assert len(ds.records()) == 35
    assert list(ds.skipped) == ["GOT-10k_Train_009999"]
    probe = got10k.Got10kOcclusionProbe()
    probe.build(ds)
    assert probe.stats["skipped_bad_sequences"] == 1


def test_bad_annotation_files_name_the_file(got10k_world: Any, got_writer: Any) -> None:
    root, _ = got10k_world
    split = root / "GOT-10k" / "train"
    (split / A / "cover.label").write_text("1\n2\n")
    with pytest.raises(DataError, match=r"cover\.label has 2 lines but .* 14 frames"):
        dataset(root).records()

    (split / A / "cover.label").write_text("1\n2\nx\n" + "3\n" * 11)
    with pytest.raises(DataError, match=r"cover\.label, line 3: expected one integer"):
        dataset(root).records()

    (split / A / "cover.label").unlink()
    (split / B / "groundtruth.txt").write_text("1,2,3,4\n1,2,three,4\n")
    with pytest.raises(DataError, match=r"groundtruth\.txt, line 2"):
        dataset(root).records()

    (split / B / "groundtruth.txt").unlink()
    with pytest.raises(DataError, match=r"B?groundtruth\.txt") as err:
        dataset(root).records()
    assert str(split / B / "groundtruth.txt") in err.value.message

    got_writer(split, B, [[1, 1, 5, 5]], object_class="x", cover=[0])
    meta = split / B / "meta_info.ini"
    meta.write_text(meta.read_text().replace("object_class", "obj_cls"))
    with pytest.raises(DataError, match=r"meta_info\.ini: no 'object_class"):
        dataset(root).records()


def test_probe_without_any_usable_sequence(tmp_path: Path, got_writer: Any,
                                           got_list_writer: Any) -> None:
    got_writer(tmp_path, "s1", [[1, 1, 5, 5]] * 3, cover=[1, 2, 3], frames=False)
    got_list_writer(tmp_path, ["s1"])
    with pytest.raises(DataError, match="no sequence .* spanning 4"):
        got10k.Got10kOcclusionProbe().build(dataset(tmp_path))


def test_registered_components_validate_params(got10k_world: Any) -> None:
    root, _ = got10k_world
    host = PluginHost()
    assert host.add_plugin(got10k, "got10k")
    ds = host.registry.create("dataset", {"type": "got10k", "root": str(root)})
    probe = host.registry.create("invariance-probe", {"type": "got10k-occlusion"})
    assert isinstance(ds, got10k.Got10kDataset)
    assert probe.dataset_type == "got10k" and probe.params.image_size == 128
    with pytest.raises(ComponentError, match="unknown parameter"):
        host.registry.create("dataset", {"type": "got10k", "root": str(root), "splt": "val"})
    with pytest.raises(ComponentError, match="split"):
        host.registry.create("dataset", {"type": "got10k", "root": str(root), "split": "test"})
    with pytest.raises(ComponentError, match="needs a got10k dataset"):
        probe.build(object())


# -- the train split as videos ----------------------------------------------------------------


def test_sequences_as_videos_of_frame_images(got10k_world: Any) -> None:
    root, specs = got10k_world
    split = root / "GOT-10k" / "train"
    ds = dataset(root)
    assert isinstance(ds, VideoDataset)
    videos = ds.videos()
    assert [(v.name, v.num_frames) for v in videos] == [
        (name, len(spec["boxes"])) for name, spec in specs.items()]
    a = videos[0]
    assert a.source == split / A and not a.is_file
    assert a.frames[0] == split / A / "00000001.jpg" and a.frames[13] == split / A / "00000014.jpg"
    assert a.label == "dog" and a.fps == 10.0 and a.main_track == "1"
    assert a.meta["cover"].tolist() == specs[A]["cover"]
    frames = read_frames(a, [0, 13, 8])
    assert frames.shape == (3, 30, 40, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames[1], np.asarray(load_rgb(split / A / "00000014.jpg")))

    # the main track: xyxy, NaN where absence.label says 1 or the box is empty/NaN
    track = a.tracks["1"]
    assert track.label == "dog"
    np.testing.assert_allclose(track.boxes[0], [5, 5, 25, 20])
    assert track.present().tolist() == [i != 8 for i in range(14)]
    d = videos[3]
    # frame 6's box lies wholly outside the 40x30 frame: skipped (counted); 4 and 5 clipped
    assert d.tracks["1"].present().tolist() == [False, True, False, False, True, True, False, False]
    np.testing.assert_allclose(d.tracks["1"].boxes[4], [30, 20, 40, 30])
    assert videos[2].tracks["1"].present().all()  # C: no absence.label

    # frame records (what the occlusion probe reads) are unchanged by the video view
    recs = ds.records()
    assert len(recs) == sum(v.num_frames for v in videos)
    assert recs[8].box == (5.0, 5.0, 25.0, 20.0) and recs[8].meta["absent"] is True
    assert ds.stats() == {"videos": 5, "skipped_bad_videos": 0, "skipped_bad_boxes": 1}


def test_video_with_missing_frames_errors_or_is_skipped(got10k_world: Any) -> None:
    root, _ = got10k_world
    split = root / "GOT-10k" / "train"
    (split / B / "00000004.jpg").unlink()
    with pytest.raises(DataError, match=r"missing frame 00000004\.jpg \(4 frames, "
                                         r"groundtruth\.txt has 5 boxes\)") as err:
        dataset(root).videos()
    assert str(split / B) in err.value.message
    assert len(dataset(root).records()) == 35  # records never open frames

    for params in ({"bad_sequences": "skip"}, {"on_bad_video": "skip"}):
        ds = dataset(root, **params)
        assert [v.name for v in ds.videos()] == [A, C, D, E]
        assert list(ds.skipped) == [B]
        assert ds.stats() == {"videos": 4, "skipped_bad_videos": 1, "skipped_bad_boxes": 1}


def test_on_bad_video_is_another_name_for_bad_sequences(got10k_world: Any) -> None:
    root, _ = got10k_world
    host = PluginHost()
    assert host.add_plugin(got10k, "got10k")
    ds = host.registry.create("dataset", {"type": "got10k", "root": str(root),
                                          "on_bad_video": "skip"})
    assert ds.bad_sequences == "skip"
    with pytest.raises(ComponentError, match="not both"):
        host.registry.create("dataset", {"type": "got10k", "root": str(root),
                                         "on_bad_video": "skip", "bad_sequences": "error"})
    with pytest.raises(ComponentError, match="on_bad_video"):
        host.registry.create("dataset", {"type": "got10k", "root": str(root),
                                         "on_bad_video": "ignore"})
    with pytest.raises(ComponentError, match="no subset"):
        ds.videos("val")


def test_bad_boxes_are_skipped_and_counted_when_read(tmp_path: Path, got_writer: Any,
                                                     got_list_writer: Any) -> None:
    """Not finite, inverted or wholly outside: the frame has no box (never a black or NaN
    crop mid-training); partly outside: clipped to the frame for training."""
    boxes = [[5, 5, 10, 10], "5,5,inf,10", [5, 5, -3, 10], [100, 5, 10, 10], [35, 25, 10, 10],
             "5,nan,10,10"]
    got_writer(tmp_path, "s1", boxes, cover=[1, 2, 3, 4, 5, 6], absence=[0] * 6)
    got_list_writer(tmp_path, ["s1"])
    ds = dataset(tmp_path)
    recs = ds.records()
    assert [r.box is not None for r in recs] == [True, False, False, False, True, False]
    (video,) = ds.videos()
    track = video.tracks["1"]
    assert track.present().tolist() == [True, False, False, False, True, False]
    np.testing.assert_allclose(track.boxes[4], [35, 25, 40, 30])
    assert ds.stats()["skipped_bad_boxes"] == 4
