"""`ade20k` on ADEChallengeData2016 trees in the released layout (tests/scenekit.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import TINY_TRAIN_RECIPE, assert_user_error, require_plugins
from PIL import Image
from scenekit import ADE_CLASS_LINES, write_ade

import sslc_plugins.ade20k as ade20k
from ssl_core import DataError
from ssl_core.plugin.host import PluginHost


def _dataset(root: Path, prepare: bool = True, **params):
    host = PluginHost()
    assert host.add_plugin(ade20k, "ade20k")
    ds = host.registry.create("dataset", {"type": "ade20k", "root": str(root), **params})
    if prepare:
        ds.prepare()
    return ds


def test_records_pair_images_with_their_masks(tmp_path: Path) -> None:
    base = write_ade(tmp_path)
    ds = _dataset(tmp_path)
    assert ds.subsets == ("training", "validation")
    recs = ds.records()
    assert [r.path.name for r in recs] == [f"ADE_train_{i:08d}.jpg" for i in (1, 2, 3)]
    assert recs[0].meta["mask"] == base / "annotations" / "training" / "ADE_train_00000001.png"
    assert recs[0].label is None and recs[0].group == "ADE_train_00000001"
    assert recs[0].meta["scene"] == "airport_terminal" and "scene" not in recs[1].meta
    assert len(ds.records("validation")) == 2
    labels = np.asarray(Image.open(recs[0].meta["mask"]))
    assert labels.dtype == np.uint8 and labels.max() <= ds.num_classes and (labels == 0).any()
    assert _dataset(base).records("validation")[1].path.name == "ADE_val_00000002.jpg"


def test_classes_from_object_info(tmp_path: Path) -> None:
    write_ade(tmp_path)
    ds = _dataset(tmp_path)
    assert ds.num_classes == 5 and ds.ignore_index == 0
    assert ds.class_names == ["wall", "building", "sky", "floor", "tree"]
    assert ds.classes() == ds.class_names


def test_csv_class_list_and_explicit_class_list(tmp_path: Path) -> None:
    base = write_ade(tmp_path, class_list=None)
    (base / "objectInfo150.csv").write_text("Idx,Ratio,Train,Val,Stuff,Name\n1,0.1,1,1,1,wall\n"
                                            "2,0.1,1,1,1,building;edifice\n")
    assert _dataset(tmp_path).class_names == ["wall", "building"]
    (tmp_path / "mine.txt").write_text(ADE_CLASS_LINES)
    assert _dataset(tmp_path, class_list=str(tmp_path / "mine.txt")).num_classes == 5
    with pytest.raises(DataError, match="nope.txt does not exist"):
        _dataset(tmp_path, class_list="nope.txt")


def test_png_of_another_size_names_both_files(tmp_path: Path) -> None:
    base = write_ade(tmp_path)
    png = base / "annotations" / "validation" / "ADE_val_00000002.png"
    Image.fromarray(np.zeros((10, 24), np.uint8), mode="L").save(png)
    with pytest.raises(DataError) as info:
        _dataset(tmp_path)
    msg = info.value.message
    assert "ADE_val_00000002.png is 24x10" in msg and "ADE_val_00000002.jpg is 24x16" in msg


def test_missing_or_bad_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        _dataset(tmp_path / "missing")
    with pytest.raises(DataError, match="no ADE20K layout"):
        _dataset(tmp_path)
    base = write_ade(tmp_path, class_list=None)
    with pytest.raises(DataError, match="no class list") as info:
        _dataset(tmp_path)
    assert info.value.hint and "objectInfo150.txt" in info.value.hint
    (base / "objectInfo150.txt").write_text("Idx\tName\n1\twall\n3\tsky\n")
    with pytest.raises(DataError, match="class indices must be 1..2"):
        _dataset(tmp_path)
    (base / "objectInfo150.txt").write_text(ADE_CLASS_LINES)
    (base / "annotations" / "training" / "ADE_train_00000002.png").unlink()
    with pytest.raises(DataError, match=r"ADE_train_00000002.jpg has no annotation: .*ADE_train_00000002.png"):
        _dataset(tmp_path, prepare=False).records("training")
    rgb = base / "annotations" / "validation" / "ADE_val_00000001.png"
    Image.fromarray(np.zeros((16, 24, 3), np.uint8)).save(rgb)
    (base / "annotations" / "training" / "ADE_train_00000002.png").write_bytes(rgb.read_bytes())
    with pytest.raises(DataError, match="ADE_train_00000002.png has mode RGB"):
        _dataset(tmp_path)
    with pytest.raises(DataError, match="no subset 'testing'"):
        _dataset(tmp_path, prepare=False).records("testing")


def test_cli_run_reports_the_wrong_png_size_once(sslc, tmp_path: Path) -> None:
    require_plugins("resnet18", "aggressive-crop", "moco-queue", "ade20k")
    base = write_ade(tmp_path)
    png = base / "annotations" / "training" / "ADE_train_00000003.png"
    Image.fromarray(np.zeros((3, 3), np.uint8), mode="L").save(png)
    text = TINY_TRAIN_RECIPE.format(name="a", root=tmp_path, batch_size=2)
    path = tmp_path / "r.yaml"
    path.write_text(text.replace("{type: image-folder, root: images}",
                                 "{type: ade20k, root: ADEChallengeData2016}"))
    assert_user_error(sslc("run", str(path), "--run-dir", str(tmp_path / "run"), "--stages", "train",
                           "--quiet"),
                      "ADE_train_00000003.png is 3x3", "ADE_train_00000003.jpg")
