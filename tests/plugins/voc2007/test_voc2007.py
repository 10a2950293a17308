"""`voc2007` and `voc2007-cropped-boxes` on a VOC tree in the released layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from evalkit import standard_voc, write_voc
from helpers import require_plugins

from ssl_core.errors import DataError
from ssl_core.plugin.host import get_registry


@pytest.fixture(autouse=True)
def _plugins() -> None:
    require_plugins("voc2007")


def _dataset(root: Path, kind: str = "voc2007", **params):
    ds = get_registry().create("dataset", {"type": kind, "root": str(root), **params})
    ds.prepare()
    return ds


def test_root_may_be_the_extract_folder_vocdevkit_or_voc2007(tmp_path: Path) -> None:
    base = standard_voc(tmp_path)
    ids = [[r.meta["id"] for r in _dataset(root).records("test")]
           for root in (tmp_path, tmp_path / "VOCdevkit", base)]
    assert ids[0] == ids[1] == ids[2] and len(ids[0]) == 8
    with pytest.raises(DataError, match="no VOC2007 layout"):
        _dataset(tmp_path / "VOCdevkit" / "VOC2007" / "JPEGImages")


def test_targets_are_1_minus1_0_from_the_class_lists(tmp_path: Path) -> None:
    standard_voc(tmp_path)
    recs = {r.meta["id"]: r for r in _dataset(tmp_path).records("trainval")}
    assert sorted(recs) == [f"{i:06d}" for i in range(1, 9)]
    # image 4 (k=3): a chair, and a difficult table only
    assert recs["000004"].meta["targets"] == {"chair": 1, "diningtable": 0, "dog": -1}
    assert recs["000001"].meta["targets"] == {"chair": 1, "diningtable": -1, "dog": -1}
    assert recs["000001"].path.name == "000001.jpg" and recs["000001"].box is None


def test_table_vs_chair_keeps_test_images_with_one_of_the_two(tmp_path: Path) -> None:
    objs = {"000001": [("chair", (1, 1, 9, 9), False)],
            "000002": [("diningtable", (1, 1, 9, 9), False)],
            "000003": [("chair", (1, 1, 9, 9), False), ("diningtable", (10, 10, 20, 20), False)],
            "000004": [("dog", (1, 1, 9, 9), False)],
            "000005": [("diningtable", (1, 1, 9, 9), False), ("chair", (10, 10, 20, 20), True)]}
    write_voc(tmp_path, {"trainval": objs, "test": {f"1{k}": v for k, v in objs.items()}},
              ["chair", "diningtable", "dog"])
    ds = _dataset(tmp_path, table_vs_chair=True)
    assert [r.meta["id"] for r in ds.records("test")] == ["1000001", "1000002"]
    assert len(ds.records("trainval")) == 5, "training images are all kept"
    assert set(ds.records("trainval")[0].meta["targets"]) == {"chair", "diningtable"}
    assert ds.stats["test_skipped_table_and_chair"] == 3


def test_cropped_boxes_one_object_each_difficult_left_out(tmp_path: Path) -> None:
    standard_voc(tmp_path)
    recs = _dataset(tmp_path, "voc2007-cropped-boxes").records("test")
    assert len(recs) == 8, "8 objects, the 2 difficult ones left out"
    first = recs[0]
    assert first.label == "chair" and first.box == (2.0, 2.0, 20.0, 18.0)  # 1-based inclusive
    assert first.path.name == "000009.jpg" and first.group == "000009/0"
    with_difficult = _dataset(tmp_path, "voc2007-cropped-boxes", include_difficult=True).records("test")
    assert len(with_difficult) == 10
    assert sum(r.meta["difficult"] for r in with_difficult) == 2


def test_list_naming_a_missing_xml_or_jpeg_is_a_clear_error(tmp_path: Path) -> None:
    base = standard_voc(tmp_path)
    (base / "Annotations" / "000003.xml").unlink()
    with pytest.raises(DataError) as info:
        _dataset(tmp_path)
    assert "000003.xml" in info.value.message and "_trainval.txt" in info.value.message
    with pytest.raises(DataError, match="000003.xml"):
        _dataset(tmp_path, "voc2007-cropped-boxes")
    (base / "JPEGImages" / "000012.jpg").unlink()
    with pytest.raises(DataError, match="000012.jpg"):
        get_registry().create("dataset", {"type": "voc2007", "root": str(tmp_path)}).records("test")


def test_bad_list_line_and_xml_name_the_file(tmp_path: Path) -> None:
    base = standard_voc(tmp_path)
    (base / "ImageSets/Main/dog_test.txt").write_text("000009 2\n")
    with pytest.raises(DataError, match=r"dog_test.txt:1"):
        _dataset(tmp_path).records("test")
    (base / "Annotations/000001.xml").write_text("<annotation><object>")
    with pytest.raises(DataError, match="cannot parse VOC annotation .*000001.xml"):
        _dataset(tmp_path, "voc2007-cropped-boxes").records("trainval")


def test_cropped_boxes_outside_the_image_are_skipped_or_clipped(tmp_path: Path) -> None:
    """A box wholly outside the image was scored as a black crop; one partly outside is
    clipped to the image (32x24)."""
    write_voc(tmp_path, {"test": {"000001": [("dog", (3, 3, 20, 18), False),
                                            ("dog", (40, 3, 50, 18), False),
                                            ("dog", (20, 10, 40, 30), False),
                                            ("dog", (10, 10, 5, 18), False)],
                                  "000002": [("chair", (3, 3, 20, 18), False)]}},
              ["chair", "dog"])
    ds = _dataset(tmp_path, "voc2007-cropped-boxes")
    recs = ds.records("test")
    assert [r.box for r in recs] == [(2.0, 2.0, 20.0, 18.0), (19.0, 9.0, 32.0, 24.0),
                                     (2.0, 2.0, 20.0, 18.0)]
    assert ds.stats["test_skipped_bad_box"] == 2 and ds.stats["test_clipped_box"] == 1
