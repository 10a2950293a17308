"""`coco` and `coco-boxes` on COCO trees in the 2017 release layout (tests/scenekit.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import TINY_TRAIN_RECIPE, assert_user_error, require_plugins
from scenekit import standard_coco, write_coco

import sslc_plugins.coco as coco
from ssl_core import ComponentError, DataError
from ssl_core.plugin.host import PluginHost


def _dataset(root: Path, kind: str = "coco", prepare: bool = True, **params):
    host = PluginHost()
    assert host.add_plugin(coco, "coco")
    ds = host.registry.create("dataset", {"type": kind, "root": str(root), **params})
    if prepare:
        ds.prepare()
    return ds


def test_one_record_per_image_sorted_by_id_labelled_by_main_category(tmp_path: Path) -> None:
    standard_coco(tmp_path)
    ds = _dataset(tmp_path)
    assert ds.subsets == ("train2017", "val2017")
    recs = ds.records()
    assert [r.meta["id"] for r in recs] == [9, 25, 30, 42]
    assert [r.label for r in recs] == ["person", "chair", None, "dining table"]  # 25: a tie, first wins
    assert recs[0].path == tmp_path / "train2017" / "000000000009.jpg"
    assert recs[0].group == "000000000009" and recs[0].box is None
    assert recs[0].meta["boxes"][0] == [2.0, 3.0, 12.0, 11.0]  # [x, y, w, h] -> x1, y1, x2, y2
    assert recs[0].meta["categories"] == ["car", "person", "person"]
    assert recs[1].meta["iscrowd"] == [0, 0, 1], "crowd boxes stay in meta, out of the label"
    assert ds.stats["train2017_unannotated"] == 1
    assert [r.label for r in ds.records("val2017")] == ["car", "chair"]
    assert ds.classes("val2017") == ["car", "chair", "dining table", "person"]


def test_root_may_hold_coco_or_images_folder(tmp_path: Path) -> None:
    standard_coco(tmp_path / "coco")
    assert len(_dataset(tmp_path).records("val2017")) == 2
    (tmp_path / "coco" / "images").mkdir()
    (tmp_path / "coco" / "val2017").rename(tmp_path / "coco" / "images" / "val2017")
    assert _dataset(tmp_path / "coco").records("val2017")[0].path.parent.name == "val2017"


def test_boxes_every_non_crowd_box_with_min_size_and_max_per_image(tmp_path: Path) -> None:
    standard_coco(tmp_path)
    recs = _dataset(tmp_path, "coco-boxes").records("train2017")
    assert len(recs) == 7, "3 + 2 + 0 + 2 boxes, the crowd one left out"
    assert recs[0].box == (2.0, 3.0, 12.0, 11.0) and recs[0].label == "car"
    assert recs[0].group == f"9/{recs[0].meta['annotation_id']}" and recs[0].meta["image_id"] == 9
    assert [r.label for r in recs[3:5]] == ["chair", "dining table"]
    ds = _dataset(tmp_path, "coco-boxes", min_size=5)
    assert len(ds.records("train2017")) == 5, "the 4x12 person and the 2x3 chair are too small"
    assert ds.stats["train2017_skipped_small"] == 2 and ds.stats["train2017_skipped_crowd"] == 1
    largest = _dataset(tmp_path, "coco-boxes", max_per_image=1).records("train2017")
    assert [(r.meta["image_id"], r.label) for r in largest] == [(9, "car"), (25, "dining table"),
                                                                (42, "dining table")]
    with pytest.raises(ComponentError, match="min_size"):
        _dataset(tmp_path, "coco-boxes", min_size=-1)


def test_json_naming_a_missing_image_is_one_error_naming_both(tmp_path: Path) -> None:
    standard_coco(tmp_path)
    (tmp_path / "train2017" / "000000000025.jpg").unlink()
    (tmp_path / "train2017" / "000000000042.jpg").unlink()
    with pytest.raises(DataError) as info:
        _dataset(tmp_path, "coco-boxes")
    msg = info.value.message
    assert "instances_train2017.json" in msg and "000000000025.jpg" in msg and "1 more" in msg
    assert info.value.hint and "train2017.zip" in info.value.hint


def test_bad_layouts_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        _dataset(tmp_path / "missing")
    with pytest.raises(DataError, match="no COCO layout"):
        _dataset(tmp_path)
    standard_coco(tmp_path)
    (tmp_path / "annotations" / "instances_val2017.json").write_text('{"images": [')
    with pytest.raises(DataError, match="cannot read COCO annotations .*instances_val2017.json"):
        _dataset(tmp_path)
    doc = {"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1, "name": "x"}],
           "annotations": [{"id": 5, "image_id": 1, "category_id": 7, "bbox": [0, 0, 1, 1]}]}
    (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="annotation 5 has category_id 7"):
        _dataset(tmp_path)
    with pytest.raises(DataError, match="no subset 'test2017'"):
        _dataset(tmp_path / "missing", prepare=False).records("test2017")


def test_images_folder_missing_is_named(tmp_path: Path) -> None:
    write_coco(tmp_path, {"val2017": {1: [("car", (0, 0, 4, 4), 0)]}}, images=False)
    with pytest.raises(DataError, match=r"COCO image folder .*val2017 does not exist"):
        _dataset(tmp_path)


def test_cli_run_reports_the_missing_image_once(sslc, tmp_path: Path) -> None:
    require_plugins("resnet18", "aggressive-crop", "moco-queue", "coco")
    standard_coco(tmp_path / "coco")
    (tmp_path / "coco" / "val2017" / "000000000285.jpg").unlink()
    text = TINY_TRAIN_RECIPE.format(name="c", root=tmp_path, batch_size=2)
    path = tmp_path / "r.yaml"
    path.write_text(text.replace("{type: image-folder, root: images}", "{type: coco, root: coco}"))
    assert_user_error(sslc("run", str(path), "--run-dir", str(tmp_path / "run"), "--stages", "train",
                           "--quiet"),
                      "instances_val2017.json", "000000000285.jpg")


def _edit_json(root: Path, split: str, edit) -> None:
    path = root / "annotations" / f"instances_{split}.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def test_two_images_with_one_id_are_refused(tmp_path: Path) -> None:
    """One image's boxes would silently land on the other."""
    standard_coco(tmp_path)
    _edit_json(tmp_path, "train2017", lambda d: d["images"].__setitem__(
        0, {**d["images"][0], "id": d["images"][1]["id"]}))
    with pytest.raises(DataError, match=r"instances_train2017\.json: images .* share id") as info:
        _dataset(tmp_path)
    assert "000000000042.jpg" in info.value.message and "000000000030.jpg" in info.value.message


def test_annotations_naming_missing_images_are_counted_or_refused(tmp_path: Path) -> None:
    standard_coco(tmp_path)

    def orphan(d: dict) -> None:
        d["annotations"].append({**d["annotations"][0], "id": 1, "image_id": 777})

    _edit_json(tmp_path, "train2017", orphan)
    for kind in ("coco", "coco-boxes"):
        ds = _dataset(tmp_path, kind)
        ds.records("train2017")
        assert ds.stats["train2017_skipped_orphan_annotations"] == 1
    with pytest.raises(DataError, match=r"annotation 1 names image_id 777") as info:
        _dataset(tmp_path, "coco-boxes", orphan_annotations="error")
    assert "orphan_annotations" in (info.value.hint or "")


def test_bad_boxes_are_skipped_and_counted_partly_outside_clipped(tmp_path: Path) -> None:
    write_coco(tmp_path, {"val2017": {1: [("car", (2, 2, 10, 10), 0), ("car", (35, 25, 10, 10), 0),
                                          ("car", (50, 2, 5, 5), 0), ("car", (2, 2, -5, 5), 0)]}})
    _edit_json(tmp_path, "val2017", lambda d: d["annotations"].append(
        {**d["annotations"][0], "id": 9, "bbox": [1, 1, float("inf"), 3]}))
    ds = _dataset(tmp_path, "coco-boxes")
    recs = ds.records("val2017")
    assert [r.box for r in recs] == [(2.0, 2.0, 12.0, 12.0), (35.0, 25.0, 40.0, 30.0)]
    assert ds.stats["val2017_skipped_bad_boxes"] == 3 and ds.stats["val2017_clipped_boxes"] == 1
    (rec,) = _dataset(tmp_path).records("val2017")
    assert rec.meta["boxes"] == [[2.0, 2.0, 12.0, 12.0], [35.0, 25.0, 40.0, 30.0]]


def test_nothing_left_says_what_was_skipped(tmp_path: Path) -> None:
    write_coco(tmp_path, {"val2017": {1: [("car", (2, 2, 0, 10), 0), ("car", (1, 1, 4, 4), 1)]}})
    with pytest.raises(DataError, match=r"1 crowd, 1 empty") as info:
        _dataset(tmp_path, "coco-boxes").records("val2017")
    assert "min_size" not in info.value.message or "0 small" in info.value.message
