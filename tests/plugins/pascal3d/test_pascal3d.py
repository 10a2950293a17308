"""PASCAL3D+ reader and its two probes on .mat fixtures in the real MATLAB layout."""

from __future__ import annotations

import glob
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io as sio
import torch
from PIL import Image

from ssl_core import ComponentError, DataError
from ssl_core.measure.features import extract_features
from ssl_core.plugin.host import PluginHost
from sslc_plugins import pascal3d

REL = "PASCAL3D+_release1.1"
IMAGENET = ["imagenet_train", "imagenet_val"]


def dataset(root: Path, **params: Any) -> pascal3d.Pascal3DDataset:
    return pascal3d.Pascal3DDataset(pascal3d.Pascal3DParams(root=root, **params))


def partition(items: Any) -> set[frozenset[tuple[str, str]]]:
    """Which rows share a trajectory, as a set of groups of (class, image id)."""
    groups: dict[Any, set[tuple[str, str]]] = defaultdict(set)
    for traj, cls, image_id in items:
        groups[traj].add((cls, image_id))
    return {frozenset(g) for g in groups.values()}


def rows(ps: Any) -> list[tuple[str, str, str]]:
    return [(it.trajectory, it.label, it.record.group) for it in ps.items]


def authors_trajectories(data_dir: str, pascal: dict[str, list[tuple[str, int]]] | None = None,
                         ) -> tuple[list[tuple[str, str]], np.ndarray, np.ndarray]:
    """A plain transcription of the authors' extract_pascal3d_features.py: the ImageNet
    part, then the PASCAL part from `{cls}_pascal.txt` (or the `pascal` entries given
    instead of the lists). Objects without a viewpoint, on which their code would crash,
    are left out. Returns rows (class, image id), viewpoint and instance ids."""
    listfiles = sorted(glob.glob(os.path.join(data_dir, "Image_sets", "*imagenet_train.txt")))
    classes = [os.path.basename(f).split("_")[0] for f in listfiles]
    entries: list[tuple[str, str, str, int]] = []  # (class, part, image id, object index)
    for cls in classes:
        for part in ("train", "val"):
            with open(os.path.join(data_dir, "Image_sets", f"{cls}_imagenet_{part}.txt")) as f:
                entries += [(cls, "imagenet", imname, 0) for imname in f.read().splitlines()]
    for cls in classes:
        if pascal is not None:
            listed = pascal.get(cls, [])
        else:
            with open(os.path.join(data_dir, "Image_sets", f"{cls}_pascal.txt")) as f:
                listed = [(e.split(" ")[0], int(e.split(" ")[1])) for e in f.read().splitlines()]
        entries += [(cls, "pascal", imname, box_i) for imname, box_i in listed]
    allrows, azimuth, elevation = [], [], []
    for cls, part, imname, box_i in entries:
        data = sio.loadmat(os.path.join(data_dir, "Annotations", f"{cls}_{part}", f"{imname}.mat"),
                           struct_as_record=False)
        vp = data["record"][0, 0].objects[0, box_i].viewpoint
        if vp.size == 0:
            continue
        elevation.append(vp[0, 0].elevation_coarse[0, 0])
        azimuth.append(vp[0, 0].azimuth_coarse[0, 0])
        allrows.append((cls, imname))
    allclasses = [c for c, _ in allrows]
    # viewpoint change
    az = [(a % 180) // 30 for a in azimuth]
    viewpoint = np.zeros(len(az))
    count = np.zeros(6)
    for cls in list(np.unique(allclasses)):
        count = np.ones(6) * np.amax(count)
        for i in np.where(np.array(allclasses) == cls)[0]:
            viewpoint[i] = count[int(az[i])]
            count[int(az[i])] += 1
    # viewpoint constant, instance change
    el = [(e % 90) // 30 for e in elevation]
    angles = np.array([[az[i], el[i]] for i in range(len(el))])
    instance = np.zeros(len(az))
    n = 0
    for cls in list(np.unique(allclasses)):
        idx = np.where(np.array(allclasses) == cls)[0]
        uniq, rev = np.unique(angles[idx, :], axis=0, return_inverse=True)
        instance[idx] = rev.ravel() + n
        n += uniq.shape[0]
    return allrows, viewpoint, instance


@pytest.fixture
def release(pascal3d_world: Any, pascal_mat_writer: Any, pascal_object_maker: Any) -> Path:
    """The standard tree plus a PASCAL part for both classes, as the release extracts
    (no {cls}_pascal.txt). Returns the data root."""
    root, _ = pascal3d_world
    rel = root / REL
    obj = pascal_object_maker
    images = {
        ("car", "2008_000003"): [obj("car", [2, 2, 30, 25], 30, 0),       # bin 1
                                 obj("car", [5, 5, 25, 20], 200, 40)],    # second car: bin 0
        ("car", "2008_000001"): [obj("bottle", [1, 1, 5, 9]),              # other class
                                 obj("car", [3, 3, 12, 12]),               # no viewpoint
                                 obj("car", [4, 4, 36, 26], 100, 10)],     # bin 3, el 0
        ("boat", "2008_000011"): [obj("person", [0, 0, 5, 5]),
                                  obj("boat", [1, 2, 30, 25], 170, 80)],   # bin 5, el 2
        ("boat", "2008_000010"): [obj("boat", [1, 2, 30, 25], 95, 5)],     # bin 3
    }
    for (cls, image_id), objects in images.items():
        pascal_mat_writer(rel / "Annotations" / f"{cls}_pascal" / f"{image_id}.mat", objects,
                          database="PASCAL VOC")
        folder = rel / "Images" / f"{cls}_pascal"
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (90, 40, len(image_id))).save(folder / f"{image_id}.jpg")
    return root


# what the reader takes from the PASCAL part of `release` without a list: every annotated
# image in sorted order, its first object of the folder's class that has a viewpoint
RELEASE_PASCAL_WITHOUT_LIST = {
    "boat": [("2008_000010", 0), ("2008_000011", 1)],
    "car": [("2008_000001", 2), ("2008_000003", 0), ("2008_000027", 1)],
}


@pytest.mark.parametrize("sub", ["", REL])
def test_accepts_data_root_and_release_folder(pascal3d_world: Any, sub: str) -> None:
    root, _ = pascal3d_world
    ds = dataset(root / sub if sub else root)
    assert ds.root == root / REL
    ds.prepare()
    assert ds.classes() == ["boat", "car"]


def test_records_one_per_object_of_the_folder_class(pascal3d_world: Any) -> None:
    root, _ = pascal3d_world
    ds = dataset(root)
    recs = ds.records()
    got = [(r.label, r.group, r.meta["object_index"]) for r in recs]
    assert got == [
        ("boat", "n02858304_1", 0), ("boat", "n02858304_2", 0), ("boat", "n02858304_3", 0),
        ("car", "n02814533_1", 0), ("car", "n02814533_2", 0), ("car", "n02814533_2", 1),
        ("car", "n02814533_3", 0), ("car", "n02814533_4", 0),
        ("car", "n02814533_5", 0), ("car", "n02814533_6", 0),
        ("car", "2008_000027", 1),  # the PASCAL part follows the ImageNet part
    ]
    # the persons in a boat image and in the car PASCAL image; boat has no PASCAL folder here
    assert ds.stats == {"objects_of_other_class": 2, "pascal_classes_from_annotations": 1,
                        "pascal_classes_missing": 1}
    by = {(r.group, r.meta["object_index"]): r for r in recs}
    r = by[("n02814533_5", 0)]
    assert r.path == root / REL / "Images" / "car_imagenet" / "n02814533_5.JPEG"
    assert r.path.is_file()
    assert r.box == (4.0, 4.0, 36.0, 26.0)
    assert r.meta["azimuth_coarse"] == 345.0 and r.meta["elevation_coarse"] == 70.0
    assert r.meta["subset"] == "imagenet_val" and r.meta["image_size"] == (40, 30)
    assert by[("n02814533_6", 0)].meta["truncated"] is True
    assert by[("n02814533_6", 0)].meta["occluded"] is False
    # viewpoint = [] -> no angles
    assert by[("n02814533_4", 0)].meta["azimuth_coarse"] is None
    assert by[("n02814533_4", 0)].meta["elevation_coarse"] is None
    assert len(ds.records("imagenet_val")) == 3
    assert [(r.meta["part"], r.meta["listed"]) for r in recs[-2:]] == [
        ("imagenet", False), ("pascal", False)]


def test_viewpoint_instance_trajectories(pascal3d_world: Any) -> None:
    root, _ = pascal3d_world
    probe = pascal3d.ViewpointInstanceProbe()
    ps = probe.build(dataset(root))
    assert ps.image_size == (224, 224) and ps.probe == "pascal3d-viewpoint-instance"
    # hand-built: car azimuth bins 0,0,3,5,0 (first objects, n02814533_4 has no viewpoint)
    assert rows(ps) == [
        ("boat/traj0", "boat", "n02858304_1"), ("boat/traj1", "boat", "n02858304_2"),
        ("boat/traj2", "boat", "n02858304_3"),
        ("car/traj0", "car", "n02814533_1"), ("car/traj1", "car", "n02814533_2"),
        ("car/traj0", "car", "n02814533_3"), ("car/traj0", "car", "n02814533_5"),
        ("car/traj2", "car", "n02814533_6"),
        ("car/traj0", "car", "2008_000027"),  # PASCAL part: azimuth 120, bin 4, first in bin
    ]
    assert probe.stats["skipped_without_viewpoint"] == 1
    assert probe.stats["skipped_not_first_object"] == 1
    assert probe.stats["rows_imagenet"] == 8 and probe.stats["rows_pascal"] == 1
    assert ps.stats == probe.stats


def test_instance_trajectories(pascal3d_world: Any) -> None:
    root, _ = pascal3d_world
    ps = pascal3d.InstanceProbe().build(dataset(root))
    got = {(t, g) for t, _, g in rows(ps)}
    assert got == {
        ("boat/az1_el0", "n02858304_1"), ("boat/az1_el0", "n02858304_2"),
        ("boat/az1_el0", "n02858304_3"),
        ("car/az0_el0", "n02814533_1"), ("car/az0_el0", "n02814533_6"),
        ("car/az0_el1", "n02814533_2"), ("car/az3_el2", "n02814533_3"),
        ("car/az5_el2", "n02814533_5"), ("car/az4_el0", "2008_000027"),
    }
    assert all(it.trajectory.startswith(it.label + "/") for it in ps.items)


def _assert_matches_authors(root: Path, ds: pascal3d.Pascal3DDataset,
                            pascal: dict[str, list[tuple[str, int]]] | None) -> None:
    ref_rows, ref_view, ref_inst = authors_trajectories(str(root / REL), pascal)
    view = pascal3d.ViewpointInstanceProbe().build(ds)
    inst = pascal3d.InstanceProbe().build(ds)
    assert [(it.label, it.record.group) for it in view.items] == ref_rows
    assert [(it.label, it.record.group) for it in inst.items] == ref_rows
    ref_v = partition((t, c, g) for t, (c, g) in zip(ref_view, ref_rows, strict=True))
    ref_i = partition((t, c, g) for t, (c, g) in zip(ref_inst, ref_rows, strict=True))
    assert partition(rows(view)) == ref_v
    assert partition(rows(inst)) == ref_i
    assert ref_v != ref_i


def test_imagenet_part_matches_a_transcription_of_the_authors_code(pascal3d_world: Any) -> None:
    root, _ = pascal3d_world
    _assert_matches_authors(root, dataset(root, subsets=IMAGENET), pascal={})


def test_pascal_lists_are_read_as_the_authors_do(release: Path) -> None:
    """With `{cls}_pascal.txt` present, the PASCAL part is the list in its own order (not
    sorted), the listed object as is, after the whole ImageNet part, with trajectory
    numbering running on from each class's ImageNet rows."""
    sets = release / REL / "Image_sets"
    (sets / "car_pascal.txt").write_text(
        "2008_000027 1\n2008_000003 0\n2008_000003 1\n2008_000001 2\n")
    (sets / "boat_pascal.txt").write_text("2008_000011 1\n2008_000010 0\n")
    ds = dataset(release)  # the default reads the lists
    _assert_matches_authors(release, ds, pascal=None)
    probe = pascal3d.ViewpointInstanceProbe()
    ps = probe.build(ds)
    assert [g for _, _, g in rows(ps)][-6:] == ["2008_000011", "2008_000010", "2008_000027",
                                                "2008_000003", "2008_000003", "2008_000001"]
    # car's ImageNet rows fill azimuth bins 0,0,3,5,0; the PASCAL rows continue the count
    assert rows(ps)[-4:] == [("car/traj0", "car", "2008_000027"),   # bin 4: first
                             ("car/traj0", "car", "2008_000003"),   # bin 1: first
                             ("car/traj3", "car", "2008_000003"),   # bin 0: fourth
                             ("car/traj1", "car", "2008_000001")]   # bin 3: second
    assert ps.stats["rows_imagenet"] == 8 and ps.stats["rows_pascal"] == 6
    assert ps.stats["pascal_classes_from_list"] == 2
    assert "pascal_classes_from_annotations" not in ps.stats


def test_pascal_images_without_a_list(release: Path) -> None:
    """The release ships no PASCAL list: every annotated image of Annotations/{cls}_pascal/
    in sorted order, one row each (its first object of the folder's class with a viewpoint),
    numbered after the ImageNet part exactly as the authors' code numbers a list."""
    ds = dataset(release)
    _assert_matches_authors(release, ds, pascal=RELEASE_PASCAL_WITHOUT_LIST)
    probe = pascal3d.InstanceProbe()
    ps = probe.build(ds)
    pascal_rows = [(it.label, it.record.group, it.record.meta["object_index"])
                   for it in ps.items if it.record.meta["part"] == "pascal"]
    assert pascal_rows == [(c, g, k) for c, listed in RELEASE_PASCAL_WITHOUT_LIST.items()
                           for g, k in listed]
    assert ps.stats["rows_imagenet"] == 8 and ps.stats["rows_pascal"] == 5
    assert ps.stats["pascal_classes_from_annotations"] == 2
    assert ps.stats["skipped_not_first_object"] == 2  # a second car and the ImageNet one
    # the ImageNet-only reading is one option away, and then says so
    only = pascal3d.InstanceProbe().build(dataset(release, subsets=IMAGENET))
    assert only.stats["rows_imagenet"] == 8 and only.stats["rows_pascal"] == 0


def test_pascal_subsets(pascal3d_world: Any) -> None:
    root, _ = pascal3d_world
    rel = root / REL
    ds = dataset(root, subsets=["imagenet_train", "pascal"], classes=["car"])
    recs = ds.records()
    assert [(r.meta["subset"], r.group) for r in recs][-1] == ("pascal", "2008_000027")
    last = recs[-1]
    assert last.path == rel / "Images" / "car_pascal" / "2008_000027.jpg"
    assert last.meta["object_index"] == 1 and last.meta["azimuth_coarse"] == 120.0
    ps = pascal3d.ViewpointInstanceProbe().build(ds)
    assert rows(ps)[-1] == ("car/traj0", "car", "2008_000027")  # azimuth bin 4, first in bin

    # the authors' own list: `id box_index`, the listed object is used as is
    (rel / "Image_sets" / "car_pascal.txt").write_text("2008_000027 0\n2008_000027 1\n")
    for subset in ("pascal_list", "pascal"):  # 'pascal' reads the list when there is one
        ds = dataset(root, subsets=[subset], classes=["car"])
        recs = ds.records()
        assert [(r.label, r.meta["object_class"], r.meta["object_index"], r.meta["listed"])
                for r in recs] == [("car", "person", 0, True), ("car", "car", 1, True)]
        assert len(pascal3d.InstanceProbe().build(ds).items) == 2


def test_probe_rows_crop_through_core_feature_extraction(pascal3d_world: Any) -> None:
    root, _ = pascal3d_world
    ps = pascal3d.InstanceProbe(pascal3d.Pascal3DProbeParams(image_size=16)).build(
        dataset(root))
    pool = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    pool.register_parameter("unused", torch.nn.Parameter(torch.zeros(1)))
    feats = extract_features(pool, ps, batch_size=4, device="cpu", progress=False)
    assert feats.shape == (len(ps.items), 3)


# -- errors and odd annotations ---------------------------------------------------------------


def test_mat_without_record_names_file_and_key(pascal3d_world: Any) -> None:
    root, _ = pascal3d_world
    bad = root / REL / "Annotations" / "car_imagenet" / "n02814533_3.mat"
    sio.savemat(str(bad), {"annotation": {"objects": np.zeros((1, 1))}})
    with pytest.raises(DataError, match="no MATLAB struct 'record'") as err:
        dataset(root).records()
    assert str(bad) in err.value.message and err.value.hint


def test_malformed_objects_name_the_key(pascal3d_world: Any, pascal_mat_writer: Any,
                                        pascal_object_maker: Any) -> None:
    root, _ = pascal3d_world
    path = root / REL / "Annotations" / "car_imagenet" / "n02814533_3.mat"
    sio.savemat(str(path), {"record": {"filename": "x.JPEG"}})
    with pytest.raises(DataError, match="'record' has no field 'objects'"):
        dataset(root).records()

    obj = pascal_object_maker("car", [1, 2, 3])
    pascal_mat_writer(path, [pascal_object_maker("car", [1, 2, 3, 4], 0, 0), obj])
    with pytest.raises(DataError, match=r"record\.objects\(2\)\.bbox"):
        dataset(root).records()

    path.write_bytes(b"not a mat file at all")
    with pytest.raises(DataError, match="cannot read PASCAL3D\\+ annotation"):
        dataset(root).records()


def test_viewpoint_without_coarse_fields_is_skipped(pascal3d_world: Any,
                                                    pascal_mat_writer: Any) -> None:
    root, _ = pascal3d_world
    path = root / REL / "Annotations" / "car_imagenet" / "n02814533_1.mat"
    obj = {"class": "car", "bbox": np.array([[1.0, 1.0, 9.0, 9.0]]),
           "viewpoint": {"azimuth": 30.0, "elevation": 5.0, "distance": 3.0},
           "truncated": 0, "occluded": 0, "difficult": 0}
    pascal_mat_writer(path, [obj])
    rec = dataset(root, classes=["car"]).records()[0]
    assert rec.group == "n02814533_1" and rec.meta["azimuth_coarse"] is None
    probe = pascal3d.ViewpointInstanceProbe()
    ps = probe.build(dataset(root, classes=["car"]))
    assert "n02814533_1" not in {it.record.group for it in ps.items}
    assert probe.stats["skipped_without_viewpoint"] == 2


def test_layout_and_class_errors(pascal3d_world: Any, tmp_path: Path) -> None:
    root, _ = pascal3d_world
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="Annotations") as err:
        dataset(empty).prepare()
    assert REL in err.value.hint
    with pytest.raises(DataError, match="class 'cars'") as err:
        dataset(root, classes=["cars"]).records()
    assert "did you mean 'car'" in err.value.hint
    (root / REL / "Image_sets" / "boat_imagenet_val.txt").unlink()
    with pytest.raises(DataError, match=r"boat_imagenet_val\.txt"):
        dataset(root).prepare()
    # a class without a PASCAL part reads as zero PASCAL rows, counted; a list asked for
    # by name must exist
    ds = dataset(root, subsets=["pascal"])
    assert {r.label for r in ds.records()} == {"car"} and ds.stats["pascal_classes_missing"] == 1
    with pytest.raises(DataError, match=r"car_pascal\.txt"):
        dataset(root, subsets=["pascal_list"], classes=["car"]).records()
    (root / REL / "Image_sets" / "car_pascal.txt").write_text("2008_000027 1\n2008_000027\n")
    with pytest.raises(DataError, match=r"car_pascal\.txt, line 2: expected 'image_id box_index'"):
        dataset(root, subsets=["pascal"], classes=["car"]).records()
    (root / REL / "Image_sets" / "car_pascal.txt").write_text("2008_000027 2\n")
    with pytest.raises(DataError, match=r"2008_000027\.mat: the list names object 2"):
        dataset(root, subsets=["pascal"], classes=["car"]).records()
    with pytest.raises(ComponentError, match="no subset"):
        dataset(root).records("imagenet")


def test_registered_components(pascal3d_world: Any) -> None:
    root, _ = pascal3d_world
    host = PluginHost()
    assert host.add_plugin(pascal3d, "pascal3d")
    ds = host.registry.create("dataset", {"type": "pascal3d", "root": str(root),
                                          "classes": ["car"]})
    assert isinstance(ds, pascal3d.Pascal3DDataset)
    for name in ("pascal3d-viewpoint-instance", "pascal3d-instance"):
        probe = host.registry.create("invariance-probe", {"type": name})
        assert probe.dataset_type == "pascal3d" and probe.params.image_size == 224
        assert {it.label for it in probe.build(ds).items} == {"car"}
        with pytest.raises(ComponentError, match="needs a pascal3d dataset"):
            probe.build(object())
    for bad in (["imagenet_test"], [], ["pascal", "pascal_list"]):
        with pytest.raises(ComponentError, match="subsets"):
            host.registry.create("dataset", {"type": "pascal3d", "root": str(root),
                                             "subsets": bad})


def test_image_name_comes_from_record_filename(pascal3d_world: Any, pascal_mat_writer: Any,
                                               pascal_object_maker: Any) -> None:
    """Real PASCAL-part images are .jpg, the synthetic world's are .JPEG: record.filename
    decides; without one the release's extension for the source is used."""
    root, _ = pascal3d_world
    rel = root / REL
    ann = rel / "Annotations" / "car_pascal"
    pascal_mat_writer(ann / "2008_000100.mat", [pascal_object_maker("car", [1, 1, 9, 9], 0, 0)],
                      database="ImageNet")  # writes filename 2008_000100.JPEG
    pascal_mat_writer(ann / "2008_000200.mat", [pascal_object_maker("car", [1, 1, 9, 9], 0, 0)],
                      with_filename=False)
    recs = dataset(root, subsets=["pascal"], classes=["car"]).records()
    paths = {r.group: r.path.name for r in recs}
    assert paths == {"2008_000027": "2008_000027.jpg", "2008_000100": "2008_000100.JPEG",
                     "2008_000200": "2008_000200.jpg"}
