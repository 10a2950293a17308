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

from ssl_core.errors import ComponentError, DataError
from ssl_core.features import extract_features
from ssl_core.plugins import PluginHost
from sslc_plugins import pascal3d

REL = "PASCAL3D+_release1.1"


def partition(items: Any) -> set[frozenset[tuple[str, str]]]:
    """Which rows share a trajectory, as a set of groups of (class, image id)."""
    groups: dict[Any, set[tuple[str, str]]] = defaultdict(set)
    for traj, cls, image_id in items:
        groups[traj].add((cls, image_id))
    return {frozenset(g) for g in groups.values()}


def rows(ps: Any) -> list[tuple[str, str, str]]:
    return [(it.trajectory, it.label, it.record.group) for it in ps.items]


def authors_trajectories(data_dir: str) -> tuple[list[tuple[str, str]], np.ndarray, np.ndarray]:
    """A plain transcription of the authors' ImageNet part (objects without a viewpoint,
    on which their code would crash, are left out). Returns rows, viewpoint and instance ids."""
    listfiles = sorted(glob.glob(os.path.join(data_dir, "Image_sets", "*imagenet_train.txt")))
    classes = [os.path.basename(f).split("_")[0] for f in listfiles]
    allrows, azimuth, elevation = [], [], []
    for cls in classes:
        for part in ("train", "val"):
            with open(os.path.join(data_dir, "Image_sets", f"{cls}_imagenet_{part}.txt")) as f:
                entries = f.read().splitlines()
            for imname in entries:
                data = sio.loadmat(os.path.join(data_dir, "Annotations", f"{cls}_imagenet",
                                                f"{imname}.mat"), struct_as_record=False)
                vp = data["record"][0, 0].objects[0, 0].viewpoint
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


@pytest.mark.parametrize("sub", ["", REL])
def test_accepts_data_root_and_release_folder(pascal3d_world: Any, sub: str) -> None:
    root, _ = pascal3d_world
    ds = pascal3d.Pascal3DDataset(root / sub if sub else root)
    assert ds.root == root / REL
    ds.prepare()
    assert ds.classes() == ["boat", "car"]


def test_records_one_per_object_of_the_folder_class(pascal3d_world: Any) -> None:
    root, _ = pascal3d_world
    ds = pascal3d.Pascal3DDataset(root)
    recs = ds.records()
    got = [(r.label, r.group, r.meta["object_index"]) for r in recs]
    assert got == [
        ("boat", "n02858304_1", 0), ("boat", "n02858304_2", 0), ("boat", "n02858304_3", 0),
        ("car", "n02814533_1", 0), ("car", "n02814533_2", 0), ("car", "n02814533_2", 1),
        ("car", "n02814533_3", 0), ("car", "n02814533_4", 0),
        ("car", "n02814533_5", 0), ("car", "n02814533_6", 0),
    ]
    assert ds.stats == {"objects_of_other_class": 1}  # the person in a boat image
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


def test_viewpoint_instance_trajectories(pascal3d_world: Any) -> None:
    root, _ = pascal3d_world
    probe = pascal3d.ViewpointInstanceProbe()
    ps = probe.build(pascal3d.Pascal3DDataset(root))
    assert ps.image_size == (224, 224) and ps.probe == "pascal3d-viewpoint-instance"
    # hand-built: car azimuth bins 0,0,3,5,0 (first objects, n02814533_4 has no viewpoint)
    assert rows(ps) == [
        ("boat/traj0", "boat", "n02858304_1"), ("boat/traj1", "boat", "n02858304_2"),
        ("boat/traj2", "boat", "n02858304_3"),
        ("car/traj0", "car", "n02814533_1"), ("car/traj1", "car", "n02814533_2"),
        ("car/traj0", "car", "n02814533_3"), ("car/traj0", "car", "n02814533_5"),
        ("car/traj2", "car", "n02814533_6"),
    ]
    assert probe.stats["skipped_without_viewpoint"] == 1
    assert probe.stats["skipped_not_first_object"] == 1


def test_instance_trajectories(pascal3d_world: Any) -> None:
    root, _ = pascal3d_world
    ps = pascal3d.InstanceProbe().build(pascal3d.Pascal3DDataset(root))
    got = {(t, g) for t, _, g in rows(ps)}
    assert got == {
        ("boat/az1_el0", "n02858304_1"), ("boat/az1_el0", "n02858304_2"),
        ("boat/az1_el0", "n02858304_3"),
        ("car/az0_el0", "n02814533_1"), ("car/az0_el0", "n02814533_6"),
        ("car/az0_el1", "n02814533_2"), ("car/az3_el2", "n02814533_3"),
        ("car/az5_el2", "n02814533_5"),
    }
    assert all(it.trajectory.startswith(it.label + "/") for it in ps.items)


def test_probes_match_a_transcription_of_the_authors_code(pascal3d_world: Any) -> None:
    root, _ = pascal3d_world
    ref_rows, ref_view, ref_inst = authors_trajectories(str(root / REL))
    ds = pascal3d.Pascal3DDataset(root)
    view = pascal3d.ViewpointInstanceProbe().build(ds)
    inst = pascal3d.InstanceProbe().build(ds)
    assert [(it.label, it.record.group) for it in view.items] == ref_rows
    assert [(it.label, it.record.group) for it in inst.items] == ref_rows
    ref_v = partition((t, c, g) for t, (c, g) in zip(ref_view, ref_rows, strict=True))
    ref_i = partition((t, c, g) for t, (c, g) in zip(ref_inst, ref_rows, strict=True))
    assert partition(rows(view)) == ref_v
    assert partition(rows(inst)) == ref_i
    assert ref_v != ref_i


def test_pascal_subsets(pascal3d_world: Any) -> None:
    root, _ = pascal3d_world
    rel = root / REL
    ds = pascal3d.Pascal3DDataset(root, subsets=["imagenet_train", "pascal"], classes=["car"])
    recs = ds.records()
    assert [(r.meta["subset"], r.group) for r in recs][-1] == ("pascal", "2008_000027")
    last = recs[-1]
    assert last.path == rel / "Images" / "car_pascal" / "2008_000027.jpg"
    assert last.meta["object_index"] == 1 and last.meta["azimuth_coarse"] == 120.0
    ps = pascal3d.ViewpointInstanceProbe().build(ds)
    assert rows(ps)[-1] == ("car/traj0", "car", "2008_000027")  # azimuth bin 4, first in bin

    # the authors' own list: `id box_index`, the listed object is used as is
    (rel / "Image_sets" / "car_pascal.txt").write_text("2008_000027 0\n2008_000027 1\n")
    ds = pascal3d.Pascal3DDataset(root, subsets=["pascal_list"], classes=["car"])
    recs = ds.records()
    assert [(r.label, r.meta["object_class"], r.meta["object_index"]) for r in recs] == [
        ("car", "person", 0), ("car", "car", 1)]
    assert len(pascal3d.InstanceProbe().build(ds).items) == 2


def test_probe_rows_crop_through_core_feature_extraction(pascal3d_world: Any) -> None:
    root, _ = pascal3d_world
    ps = pascal3d.InstanceProbe(pascal3d.Pascal3DProbeParams(image_size=16)).build(
        pascal3d.Pascal3DDataset(root))
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
        pascal3d.Pascal3DDataset(root).records()
    assert str(bad) in err.value.message and err.value.hint


def test_malformed_objects_name_the_key(pascal3d_world: Any, pascal_mat_writer: Any,
                                        pascal_object_maker: Any) -> None:
    root, _ = pascal3d_world
    path = root / REL / "Annotations" / "car_imagenet" / "n02814533_3.mat"
    sio.savemat(str(path), {"record": {"filename": "x.JPEG"}})
    with pytest.raises(DataError, match="'record' has no field 'objects'"):
        pascal3d.Pascal3DDataset(root).records()

    obj = pascal_object_maker("car", [1, 2, 3])
    pascal_mat_writer(path, [pascal_object_maker("car", [1, 2, 3, 4], 0, 0), obj])
    with pytest.raises(DataError, match=r"record\.objects\(2\)\.bbox"):
        pascal3d.Pascal3DDataset(root).records()

    path.write_bytes(b"not a mat file at all")
    with pytest.raises(DataError, match="cannot read PASCAL3D\\+ annotation"):
        pascal3d.Pascal3DDataset(root).records()


def test_viewpoint_without_coarse_fields_is_skipped(pascal3d_world: Any,
                                                    pascal_mat_writer: Any) -> None:
    root, _ = pascal3d_world
    path = root / REL / "Annotations" / "car_imagenet" / "n02814533_1.mat"
    obj = {"class": "car", "bbox": np.array([[1.0, 1.0, 9.0, 9.0]]),
           "viewpoint": {"azimuth": 30.0, "elevation": 5.0, "distance": 3.0},
           "truncated": 0, "occluded": 0, "difficult": 0}
    pascal_mat_writer(path, [obj])
    rec = pascal3d.Pascal3DDataset(root, classes=["car"]).records()[0]
    assert rec.group == "n02814533_1" and rec.meta["azimuth_coarse"] is None
    probe = pascal3d.ViewpointInstanceProbe()
    ps = probe.build(pascal3d.Pascal3DDataset(root, classes=["car"]))
    assert "n02814533_1" not in {it.record.group for it in ps.items}
    assert probe.stats["skipped_without_viewpoint"] == 2


def test_layout_and_class_errors(pascal3d_world: Any, tmp_path: Path) -> None:
    root, _ = pascal3d_world
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="Annotations") as err:
        pascal3d.Pascal3DDataset(empty).prepare()
    assert REL in err.value.hint
    with pytest.raises(DataError, match="class 'cars'") as err:
        pascal3d.Pascal3DDataset(root, classes=["cars"]).records()
    assert "did you mean 'car'" in err.value.hint
    (root / REL / "Image_sets" / "boat_imagenet_val.txt").unlink()
    with pytest.raises(DataError, match=r"boat_imagenet_val\.txt"):
        pascal3d.Pascal3DDataset(root).prepare()
    with pytest.raises(DataError, match=r"boat_pascal"):
        pascal3d.Pascal3DDataset(root, subsets=["pascal"]).records()
    with pytest.raises(DataError, match=r"car_pascal\.txt"):
        pascal3d.Pascal3DDataset(root, subsets=["pascal_list"], classes=["car"]).records()
    with pytest.raises(ComponentError, match="no subset"):
        pascal3d.Pascal3DDataset(root).records("imagenet")


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
    with pytest.raises(ComponentError, match="subsets"):
        host.registry.create("dataset", {"type": "pascal3d", "root": str(root),
                                         "subsets": ["imagenet_test"]})


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
    recs = pascal3d.Pascal3DDataset(root, subsets=["pascal"], classes=["car"]).records()
    paths = {r.group: r.path.name for r in recs}
    assert paths == {"2008_000027": "2008_000027.jpg", "2008_000100": "2008_000100.JPEG",
                     "2008_000200": "2008_000200.jpg"}
