"""The synthetic scenes, written as COCO, VOC2007 and ADE20K, read back by those readers."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sslc_plugins.ade20k as ade20k
import sslc_plugins.coco as coco
import sslc_plugins.voc2007 as voc2007
from ssl_core.plugin.host import PluginHost
from sslc_plugins.synthworld import write_scenes as ws
from sslc_plugins.synthworld.objects import CATEGORIES


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """Every scene of the tiny preset (4 train, 2 test; about a second) under one root."""
    root = tmp_path_factory.mktemp("scenes")
    results = [ws.write_scene(root, 0, job, "tiny") for job in ws.scene_jobs("tiny")]
    ws.finalize_scenes(root, 0, "tiny", results)
    return root, results


def _create(module, name: str, config: dict):
    host = PluginHost()
    assert host.add_plugin(module, name)
    ds = host.registry.create("dataset", config)
    ds.prepare()
    return ds


def test_jobs_and_presets() -> None:
    cfg = ws.SCENE_PRESETS["tiny"]
    jobs = ws.scene_jobs("tiny")
    assert jobs[0] == ("scenes", "train", 1) and jobs[-1] == ("scenes", "test", cfg.train + cfg.test)
    assert len(jobs) == cfg.train + cfg.test and cfg.supersample == 1
    small = ws.SCENE_PRESETS["small"]
    assert small.train >= 500 and small.test >= 250
    assert ws.names("test", cfg.train + 1, "tiny") == {
        "coco": f"{cfg.train + 1:012d}", "voc": f"{cfg.train + 1:06d}", "ade": "ADE_val_00000001",
        "ade_split": "validation"}


def test_coco_reads_the_scenes_and_polygons_agree_with_boxes(world) -> None:
    root, results = world
    ds = _create(coco, "coco", {"type": "coco", "root": str(root / "coco")})
    assert ds.subsets == ("train2017", "val2017")
    train, val = ds.records("train2017"), ds.records("val2017")
    assert len(train) == 4 and len(val) == 2
    by_k = {r["k"]: r for r in results}
    for rec in train + val:
        objects = by_k[rec.meta["id"]]["objects"]
        assert rec.meta["categories"] == [o["category"] for o in objects]
        if objects:
            assert rec.label in rec.meta["categories"]
    doc = json.loads((root / "coco" / "annotations" / "instances_train2017.json").read_text())
    assert [c["name"] for c in doc["categories"]] == list(CATEGORIES)
    h, w = ws.SCENE_PRESETS["tiny"].size
    for ann in doc["annotations"]:
        x, y, bw, bh = ann["bbox"]
        assert x >= 0 and y >= 0 and x + bw <= w and y + bh <= h and bw >= 1 and bh >= 1
        assert ws.MIN_PIXELS <= ann["area"] <= bw * bh and ann["iscrowd"] == 0
        pts = np.concatenate([np.reshape(p, (-1, 2)) for p in ann["segmentation"]])
        assert all(len(p) >= 6 and len(p) % 2 == 0 for p in ann["segmentation"])
        assert pts[:, 0].min() >= x and pts[:, 0].max() <= x + bw
        assert pts[:, 1].min() >= y and pts[:, 1].max() <= y + bh
        assert pts[:, 0].min() <= x + 1 and pts[:, 0].max() >= x + bw - 1, "the polygon spans the box"
    boxes = _create(coco, "coco", {"type": "coco-boxes", "root": str(root / "coco")})
    assert len(boxes.records("train2017")) == len(doc["annotations"])


def test_ade_masks_agree_with_the_coco_boxes(world) -> None:
    root, results = world
    ds = _create(ade20k, "ade20k", {"type": "ade20k", "root": str(root)})
    assert ds.num_classes == len(ws.ADE_CLASSES) and ds.class_names == list(ws.ADE_CLASSES)
    assert len(ds.records("training")) == 4 and len(ds.records("validation")) == 2
    recs = {r.group: r for r in ds.records("training") + ds.records("validation")}
    for r in results:
        rec = recs[r["names"]["ade"]]
        assert rec.meta["scene"] == r["context"]
        labels = np.asarray(Image.open(rec.meta["mask"]))
        assert labels.dtype == np.uint8 and labels.max() <= ds.num_classes
        assert np.bincount(labels.reshape(-1), minlength=len(r["pixels"])).tolist() == r["pixels"]
        same = (root / "coco" / ws.COCO_SPLIT[r["split"]] / f"{r['names']['coco']}.jpg").read_bytes()
        assert rec.path.read_bytes() == same, "one image in the three layouts"
        inside = np.zeros((len(ws.ADE_CLASSES) + 1, *labels.shape), dtype=bool)
        for o in r["objects"]:
            cls = ws.ADE_CLASSES.index(o["category"]) + 1
            x, y, bw, bh = o["bbox"]
            assert (labels[y:y + bh, x:x + bw] == cls).sum() >= o["area"]
            inside[cls, y:y + bh, x:x + bw] = True
        for cat in CATEGORIES:  # object pixels outside every box of their class: unannotated specks
            cls = ws.ADE_CLASSES.index(cat) + 1
            assert ((labels == cls) & ~inside[cls]).sum() < 6 * ws.MIN_PIXELS
        stuff = {ws.ADE_CLASSES[c - 1] for c in np.unique(labels) if 0 < c <= len(ws.STUFF)}
        assert stuff, "ground or backdrop visible"
    info = (root / "ADEChallengeData2016" / f"objectInfo{len(ws.ADE_CLASSES)}.txt").read_text()
    assert info.startswith("Idx\tRatio\tTrain\tVal\tName\n1\t")


def test_voc2007_reads_the_scenes_with_difficult_flags(world) -> None:
    root, results = world
    ds = _create(voc2007, "voc2007", {"type": "voc2007", "root": str(root)})
    trainval, test = ds.records("trainval"), ds.records("test")
    assert len(trainval) == 4 and len(test) == 2
    assert ds.classes("test") == sorted(CATEGORIES)
    by_id = {r["names"]["voc"]: r for r in results}
    difficult = 0
    for rec in trainval + test:
        objects = by_id[rec.meta["id"]]["objects"]
        for cls, target in rec.meta["targets"].items():
            mine = [o for o in objects if o["category"] == cls]
            assert target == (1 if any(not o["difficult"] for o in mine) else 0 if mine else -1)
        xml = ET.parse(root / "VOCdevkit/VOC2007/Annotations" / f"{rec.meta['id']}.xml").getroot()
        for obj, o in zip(xml.iter("object"), objects, strict=True):
            assert obj.findtext("pose") in ("Frontal", "Rear", "Left", "Right", "Unspecified")
            assert obj.findtext("difficult") == str(int(o["difficult"]))
            assert obj.findtext("truncated") == str(int(o["truncated"]))
        difficult += sum(o["difficult"] for o in objects)
    assert difficult >= 1, "the tiny world has small or hidden (difficult) objects"
    crops = _create(voc2007, "voc2007", {"type": "voc2007-cropped-boxes", "root": str(root),
                                         "include_difficult": True})
    boxes = sorted((r.meta["id"], r.label, r.box) for r in crops.records("trainval") + crops.records("test"))
    want = sorted((r["names"]["voc"], o["category"],
                   tuple(float(v) for v in (o["bbox"][0], o["bbox"][1], o["bbox"][0] + o["bbox"][2],
                                            o["bbox"][1] + o["bbox"][3])))
                  for r in results for o in r["objects"])
    assert boxes == want, "VOC 1-based inclusive boxes read back as the COCO boxes"
    main = root / "VOCdevkit/VOC2007/ImageSets/Main"
    assert sorted((main / "train.txt").read_text().split() + (main / "val.txt").read_text().split()) \
        == sorted(r.meta["id"] for r in trainval)


def test_scenes_are_deterministic_and_cluttered(tmp_path: Path, world) -> None:
    root, results = world
    again = ws.write_scene(tmp_path, 0, ("scenes", "train", 2), "tiny")
    assert again == results[1]
    name = f"{results[1]['names']['voc']}.jpg"
    assert (tmp_path / "VOCdevkit/VOC2007/JPEGImages" / name).read_bytes() == \
        (root / "VOCdevkit/VOC2007/JPEGImages" / name).read_bytes()
    other = ws.render_scene(1, 2, "tiny")
    assert not np.array_equal(other["image"], ws.render_scene(0, 2, "tiny")["image"])
    counts = [len(ws.render_scene(0, k, "small")["objects"]) for k in range(1, 13)]
    assert max(counts) >= 4 and min(counts) >= 1, counts
