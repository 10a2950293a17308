"""image-folder: ImageNet's class-per-folder layout, on fixtures written here and on the synthetic world."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sslc_plugins.image_folder as image_folder
import sslc_plugins.synthworld as synthworld
from ssl_core import ComponentError, DataError
from ssl_core.plugin.host import PluginHost


def _img(path: Path, fmt: str = "JPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(path, format=fmt)


def _create(root: Path, **kw):
    host = PluginHost()
    assert host.add_plugin(image_folder, "image-folder")
    return host.registry.create("dataset", {"type": "image-folder", "root": str(root), **kw})


def test_flat_layout_lists_classes_case_insensitively(tmp_path: Path) -> None:
    _img(tmp_path / "n01" / "a.JPEG")
    _img(tmp_path / "n01" / "b.jpg")
    _img(tmp_path / "n02" / "c.PNG", "PNG")
    (tmp_path / "n02" / "notes.txt").write_text("not an image")
    ds = _create(tmp_path)
    assert ds.subsets == ("all",)
    recs = ds.records()
    assert [(r.path.name, r.label) for r in recs] == [("a.JPEG", "n01"), ("b.jpg", "n01"), ("c.PNG", "n02")]
    assert [r.path.name for r in _create(tmp_path, extensions=["png"]).records()] == ["c.PNG"]


def test_split_layout_gives_train_and_val(tmp_path: Path) -> None:
    _img(tmp_path / "train" / "cat" / "1.JPEG")
    _img(tmp_path / "val" / "cat" / "2.JPEG")
    ds = _create(tmp_path)
    assert ds.subsets == ("train", "val")
    assert [r.path.name for r in ds.records("val")] == ["2.JPEG"]
    assert ds.records()[0].path.name == "1.JPEG"
    with pytest.raises(DataError, match="no subset 'all'"):
        ds.records("all")


def test_errors_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        _create(tmp_path / "missing").records()
    with pytest.raises(DataError, match="no class folders"):
        _create(tmp_path).records()
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DataError, match="no images") as err:
        _create(tmp_path).records()
    assert err.value.hint and "extensions" in err.value.hint
    with pytest.raises(ComponentError, match="extensions"):
        _create(tmp_path, extensions=[])


def test_reads_the_synthetic_imagenet(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = synthworld.synthesize("tiny", 0, cache_dir=tmp_path_factory.getbasetemp() / "synthworld")
    ds = _create(root / "imagenet")
    assert ds.subsets == ("train", "val")
    train = ds.records("train")
    assert {r.label for r in train} == set(synthworld.objects.CATEGORIES)
    assert len(train) == len(synthworld.SynthWorld(synthworld.SynthWorldParams(
        size="tiny", cache_dir=root.parent)).records("train"))


def _classes(root: Path, sizes: dict[str, int]) -> None:
    for cls, n in sizes.items():
        for i in range(n):
            _img(root / cls / f"{cls}_{i:03d}.JPEG")


def test_fraction_keeps_a_seeded_class_balanced_subset(tmp_path: Path) -> None:
    _classes(tmp_path, {"a": 20, "b": 5, "c": 1, "d": 25})
    full = _create(tmp_path).records()
    ten = _create(tmp_path, fraction=0.1).records()
    per_class = {c: sum(r.label == c for r in ten) for c in "abcd"}
    assert per_class == {"a": 2, "b": 1, "c": 1, "d": 3}, "round half up, at least one per class"
    assert {r.path for r in ten} < {r.path for r in full}
    assert [r.path for r in ten] == sorted(r.path for r in ten), "kept in the listing's order"
    again = _create(tmp_path, fraction=0.1).records()
    assert [r.path for r in again] == [r.path for r in ten], "same seed, same subset"
    draws = {tuple(r.path.name for r in _create(tmp_path, fraction=0.1, fraction_seed=s).records()
                   if r.label == "d") for s in range(6)}
    assert len(draws) > 1, "another fraction_seed draws other images"
    assert len(_create(tmp_path, fraction=1.0).records()) == len(full)


def test_fraction_of_a_class_does_not_depend_on_the_others(tmp_path: Path) -> None:
    _classes(tmp_path / "one", {"a": 30, "b": 10})
    _classes(tmp_path / "two", {"a": 30, "z": 7})
    pick = [[r.path.name for r in _create(tmp_path / k, fraction=0.2, fraction_seed=3).records()
             if r.label == "a"] for k in ("one", "two")]
    assert pick[0] == pick[1] and len(pick[0]) == 6
    # pinned: the same on every machine; fails if a numpy version changes the Generator stream
    assert pick[0] == ["a_001.JPEG", "a_002.JPEG", "a_007.JPEG", "a_021.JPEG", "a_026.JPEG", "a_029.JPEG"]


def test_fraction_out_of_range_is_a_parameter_error(tmp_path: Path) -> None:
    for bad in (0, 1.5, -0.1):
        with pytest.raises(ComponentError, match="fraction"):
            _create(tmp_path, fraction=bad)
    with pytest.raises(ComponentError, match="fraction_seed"):
        _create(tmp_path, fraction=0.5, fraction_seed=-1)


def test_keeps_the_dataset_contract(tmp_path: Path) -> None:
    from ssl_core.testing import check_dataset, check_params_reject_unknown_keys, fresh_host

    _classes(tmp_path, {"a": 3, "b": 2})
    registry = fresh_host(image_folder, "image-folder").registry
    check_params_reject_unknown_keys("dataset", "image-folder", registry=registry,
                                     config={"root": str(tmp_path)})
    ds = registry.create("dataset", {"type": "image-folder", "root": str(tmp_path)})
    ds.prepare()
    assert len(check_dataset(ds)) == 5
