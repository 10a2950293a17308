"""The synthetic world: renderer properties and the exact on-disk layouts it writes."""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from helpers import require_plugins
from PIL import Image

import sslc_plugins.synthworld as synthworld
from ssl_core.errors import DataError
from ssl_core.plugin.host import PluginHost, get_registry
from sslc_plugins.synthworld import common, writer
from sslc_plugins.synthworld.objects import (
    CATEGORIES,
    PlacedObject,
    Scene,
    World,
    object_camera,
    render,
)
from sslc_plugins.synthworld.render import Camera, Light, kelvin_to_rgb
from sslc_plugins.synthworld.write_got10k import cover_level


@pytest.fixture(scope="session")
def world_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny world, rendered once per session (other test files reuse the same cache)."""
    return synthworld.synthesize("tiny", 0, cache_dir=tmp_path_factory.getbasetemp() / "synthworld")


def _one(obj, azimuth=30.0, size=(48, 48), seed_light=(0.4, 0.8, 0.6)):
    cam = object_camera(obj, azimuth, 20.0)
    return render(Scene([PlacedObject(obj)]), cam, Light(seed_light, 3000.0), size, (0.5, 0.5, 0.5))


def test_at_least_ten_categories_render_as_shaded_objects() -> None:
    world = World(0)
    assert len(CATEGORIES) >= 10
    for cat in CATEGORIES:
        out = _one(world.instance(cat, 0))
        assert out.image.shape == (48, 48, 3) and out.image.dtype == np.uint8
        covered = out.mask == 1
        assert 0.03 < covered.mean() < 0.9, cat  # the object is framed, not lost or cropped away
        assert np.isfinite(out.depth[covered]).all() and np.isinf(out.depth[~covered]).all()
        # shading varies over the surface: not a flat 2D glyph
        assert out.image[covered].std() > 5, cat


def test_rendering_is_deterministic_from_the_seed() -> None:
    a = _one(World(3).instance("car", 2)).image
    b = _one(World(3).instance("car", 2)).image
    c = _one(World(4).instance("car", 2)).image
    d = _one(World(3).instance("car", 3)).image
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)


def test_instance_mask_follows_depth_order_across_objects() -> None:
    world = World(0)
    near = PlacedObject(world.instance("snowman", 0), (0.2, 0.0, 0.8), 0.0, 1.0, object_id=1)
    far = PlacedObject(world.instance("sofa", 0), (0.0, 0.0, -0.5), 30.0, 1.0, object_id=2)
    cam = Camera(0.0, 15.0, 4.0, (0.0, 0.4, 0.0))
    light = Light()
    both = render(Scene([far, near]), cam, light, (64, 64))
    alone_near = render(Scene([near]), cam, light, (64, 64))
    alone_far = render(Scene([far]), cam, light, (64, 64))
    overlap = (alone_near.mask == 1) & (alone_far.mask == 2)
    assert overlap.sum() > 20
    expected = np.where(alone_near.depth < alone_far.depth, 1, 2)
    assert (both.mask[overlap] == expected[overlap]).mean() > 0.97
    # and with the objects swapped in depth the other one wins
    swapped = render(Scene([PlacedObject(far.obj, (0.0, 0.0, 1.2), 30.0, 1.0, 2),
                            PlacedObject(near.obj, (0.2, 0.0, -0.8), 0.0, 1.0, 1)]), cam, light, (64, 64))
    assert (swapped.mask == 2).sum() > (both.mask == 2).sum()
    assert set(np.unique(both.mask)) == {0, 1, 2}
    assert both.meta["objects"][1]["category"] == "snowman"


def test_colour_temperature_is_warmer_when_lower() -> None:
    ratios = [kelvin_to_rgb(k)[2] / kelvin_to_rgb(k)[0] for k in (2175, 2600, 3075, 5000, 6500)]
    assert all(a < b for a, b in zip(ratios, ratios[1:], strict=False))
    temps = [common.aloi_temperature(v) for v in common.ALOI_LAMPS]
    assert temps[0] == 2175 and temps[-1] == 3075 and temps == sorted(temps)


def test_cover_levels_bin_like_got10k() -> None:
    assert [cover_level(v, 100) for v in (0, 10, 15, 16, 45, 60, 75, 90, 91, 99, 100)] == \
        [0, 1, 1, 2, 3, 4, 5, 6, 7, 7, 8]
    assert cover_level(0, 0) == 0


def test_imagenet_layout_and_metadata(world_root: Path) -> None:
    cfg = common.SIZES["tiny"]
    train = sorted((world_root / "imagenet" / "train").rglob("*.JPEG"))
    assert len(train) == len(CATEGORIES) * cfg.train_instances * cfg.train_per_instance
    for p in train:
        assert re.fullmatch(rf"{p.parent.name}_\d{{4}}_\d{{3}}\.JPEG", p.name)
    rows = [json.loads(x) for x in (world_root / "imagenet" / "train_meta.jsonl").read_text().splitlines()]
    assert len(rows) == len(train)
    keys = {"path", "category", "instance", "azimuth", "elevation", "light_direction",
            "color_temperature", "mask"}
    for row in rows:
        assert keys <= set(row)
        mask = np.asarray(Image.open(world_root / "imagenet" / row["mask"]))
        img = Image.open(world_root / "imagenet" / row["path"])
        assert img.size == (cfg.image_size, cfg.image_size) and mask.shape == (cfg.image_size,) * 2
        assert set(np.unique(mask)) <= {0, 1} and mask.any()
    val_instances = {(r["category"], r["instance"]) for r in
                     map(json.loads, (world_root / "imagenet" / "val_meta.jsonl").read_text().splitlines())}
    assert not val_instances & {(r["category"], r["instance"]) for r in rows}


def test_dataset_plugin_records_through_the_registry(world_root: Path) -> None:
    host = PluginHost()
    assert host.add_plugin(synthworld, "synthworld")
    ds = host.registry.create("dataset", {"type": "synthworld", "size": "tiny",
                                          "cache_dir": str(world_root.parent)})
    ds.prepare()  # cached: returns at once
    assert ds.root == world_root
    recs = ds.records("train")
    assert recs[0].path.is_file() and recs[0].label in CATEGORIES
    assert {"azimuth", "elevation", "light_direction", "color_temperature", "mask"} <= set(recs[0].meta)
    assert len({r.group for r in recs}) == len(CATEGORIES) * common.SIZES["tiny"].train_instances
    with pytest.raises(DataError, match="no subset"):
        ds.records("test")


def test_aloi_layout_names(world_root: Path) -> None:
    aloi = world_root / "aloi"
    objs = sorted(int(p.name) for p in (aloi / "aloi_red2_view").iterdir())
    assert objs == list(range(1, common.SIZES["tiny"].aloi_objects + 1))
    for o in objs:
        assert {p.name for p in (aloi / "aloi_red2_view" / str(o)).iterdir()} == \
            {f"{o}_r{a}.png" for a in range(0, 360, 5)}
        assert {p.name for p in (aloi / "aloi_red2_ill" / str(o)).iterdir()} == \
            {f"{o}_l{ll}c{c}.png" for ll in range(1, 9) for c in (1, 2, 3)}
        assert {p.name for p in (aloi / "aloi_red2_col" / str(o)).iterdir()} == \
            {f"{o}_i{v}.png" for v in (110, 120, 130, 140, 150, 160, 170, 180, 190, 210, 230, 250)}
    assert Image.open(aloi / "aloi_red2_view" / "1" / "1_r0.png").size == (192, 144)
    # the lamp voltages change colour: low voltage is redder
    lo = np.asarray(Image.open(aloi / "aloi_red2_col" / "1" / "1_i110.png"), dtype=float)
    hi = np.asarray(Image.open(aloi / "aloi_red2_col" / "1" / "1_i250.png"), dtype=float)
    fg = hi.sum(axis=2) > 30
    assert lo[fg, 2].mean() / lo[fg, 0].mean() < hi[fg, 2].mean() / hi[fg, 0].mean()


def test_got10k_layout(world_root: Path) -> None:
    train = world_root / "GOT-10k" / "train"
    names = train.joinpath("list.txt").read_text().split()
    assert names == [f"GOT-10k_Train_{i:06d}" for i in range(1, common.SIZES["tiny"].got_sequences + 1)]
    frames = common.SIZES["tiny"].got_frames
    spans = []
    for name in names:
        seq = train / name
        assert sorted(p.name for p in seq.glob("*.jpg")) == [f"{i:08d}.jpg" for i in range(1, frames + 1)]
        gt = seq.joinpath("groundtruth.txt").read_text().splitlines()
        assert len(gt) == frames and all(re.fullmatch(r"(-?\d+\.\d{4},){3}-?\d+\.\d{4}", g) for g in gt)
        cover = [int(x) for x in seq.joinpath("cover.label").read_text().split()]
        absence = [int(x) for x in seq.joinpath("absence.label").read_text().split()]
        cut = [int(x) for x in seq.joinpath("cut_by_image.label").read_text().split()]
        assert len(cover) == len(absence) == len(cut) == frames
        assert all(0 <= c <= 8 for c in cover)
        assert all(c == 0 for c, a in zip(cover, absence, strict=False) if a == 1)
        ini = seq.joinpath("meta_info.ini").read_text().splitlines()
        assert ini[0] == "[METAINFO]"
        meta = dict(line.split(": ", 1) for line in ini[1:])
        assert meta["object_class"] in CATEGORIES and meta["anno_fps"] == "10Hz"
        assert meta["resolution"] == "(128, 96)"
        spans.append(max(cover) - min(cover))
    assert max(spans) >= 4


def test_pascal3d_layout(world_root: Path) -> None:
    rel = world_root / "PASCAL3D+_release1.1"
    cfg = common.SIZES["tiny"]
    classes = common.PASCAL_CLASSES
    assert len(classes) == 12
    seen_empty_viewpoint = False
    pascal_folders = {p.name for p in (rel / "Images").iterdir()}
    assert pascal_folders == {f"{c}_{s}" for c in classes for s in ("imagenet", "pascal")}
    for cls in classes:
        ids = (rel / "Image_sets" / f"{cls}_imagenet_train.txt").read_text().split()
        ids += (rel / "Image_sets" / f"{cls}_imagenet_val.txt").read_text().split()
        assert len(ids) == cfg.pascal_per_class
        assert len(list((rel / "Images" / f"{cls}_pascal").glob("*.JPEG"))) == cfg.pascal_extra_per_class
        for ident in ids:
            assert (rel / "Images" / f"{cls}_imagenet" / f"{ident}.JPEG").is_file()
            mat = scipy.io.loadmat(rel / "Annotations" / f"{cls}_imagenet" / f"{ident}.mat",
                                   squeeze_me=True, struct_as_record=False)
            record = mat["record"]
            assert record.filename == f"{ident}.JPEG"
            assert (record.size.width, record.size.height) == (128, 96)
            objects = np.atleast_1d(record.objects)
            assert objects[0].__class__.__name__ == "mat_struct"
            main = [o for o in objects if getattr(o, "class") == cls]
            assert main, "the image shows an object of its class"
            for o in objects:
                x1, y1, x2, y2 = o.bbox
                assert 1 <= x1 <= x2 <= 128 and 1 <= y1 <= y2 <= 96
                if isinstance(o.viewpoint, np.ndarray):
                    seen_empty_viewpoint = True
                else:
                    assert 0 <= o.viewpoint.azimuth_coarse < 360
                    assert o.viewpoint.azimuth_coarse % 15 == 0
                    assert hasattr(o.viewpoint, "elevation_coarse")
            for o in main:
                assert not isinstance(o.viewpoint, np.ndarray)
    assert seen_empty_viewpoint  # some objects come without a viewpoint, as in the real data


def test_cache_is_reused_and_incomplete_parts_are_rerendered(tmp_path: Path, monkeypatch) -> None:
    micro = common.SizeConfig(1, 1, 0, 0, 32, 0, 0, 4, (48, 64), 0, 0, (48, 64), supersample=1,
                              categories=("mug", "car"))
    monkeypatch.setitem(common.SIZES, "tiny", micro)
    root = writer.world_root(tmp_path, "tiny", 5)
    root.mkdir()
    (root / "world.json").write_text("{}")  # a layout-3 world's manifest: replaced by the parts'
    writer.render_world(root, "tiny", 5, workers=1)
    assert {p.name for p in root.glob("*.json")} == {f"{part}.json" for part in writer.PARTS}
    manifest = json.loads((root / "imagenet.json").read_text())
    assert manifest["renderer_version"] and manifest["seed"] == 5 and manifest["counts"]["train"] == 2
    assert manifest["part"] == "imagenet" and manifest["layout_version"] == writer.LAYOUT_VERSION
    assert writer.is_complete(root, "tiny", 5)
    stamp = (root / "imagenet.json").stat().st_mtime_ns
    writer.render_world(root, "tiny", 5, workers=1)
    assert (root / "imagenet.json").stat().st_mtime_ns == stamp  # reused
    (root / "imagenet.json").unlink()  # as if a run died half way
    (root / "imagenet" / "junk.txt").write_text("left over")
    assert not writer.is_complete(root, "tiny", 5) and writer.is_complete(root, "tiny", 5, ["aloi"])
    writer.render_world(root, "tiny", 5, workers=2)
    assert (root / "imagenet.json").is_file() and not (root / "imagenet" / "junk.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


def test_aloi_rendered_in_part_is_the_same_images_and_a_whole_part_serves_it(
        tmp_path: Path, monkeypatch) -> None:
    micro = common.SizeConfig(1, 1, 0, 0, 32, 3, 0, 4, (48, 64), 0, 0, (48, 64), supersample=1,
                              categories=("mug", "car"), aloi_size=(24, 32))
    monkeypatch.setitem(common.SIZES, "tiny", micro)
    part_root = writer.world_root(tmp_path / "part", "tiny", 5)
    writer.render_world(part_root, "tiny", 5, workers=1, parts=["aloi"], limits={"aloi": 2})
    assert sorted(p.name for p in (part_root / "aloi" / "aloi_red2_view").iterdir()) == ["1", "2"]
    assert json.loads((part_root / "aloi.json").read_text())["limit"] == 2
    assert writer.part_complete(part_root, "aloi", "tiny", 5, limit=2)
    assert writer.part_complete(part_root, "aloi", "tiny", 5, limit=1)
    assert not writer.part_complete(part_root, "aloi", "tiny", 5, limit=3)
    assert not writer.part_complete(part_root, "aloi", "tiny", 5)  # the whole part is asked for
    whole_root = writer.world_root(tmp_path / "whole", "tiny", 5)
    writer.render_world(whole_root, "tiny", 5, workers=1, parts=["aloi"])
    for png in (part_root / "aloi").rglob("*.png"):
        assert png.read_bytes() == (whole_root / png.relative_to(part_root)).read_bytes(), png
    assert writer.part_complete(whole_root, "aloi", "tiny", 5, limit=2)  # a whole part serves any limit
    writer.render_world(part_root, "tiny", 5, workers=1, parts=["aloi"])  # more asked: rendered again
    assert len(list((part_root / "aloi" / "aloi_red2_view").iterdir())) == 3
    assert "limit" not in json.loads((part_root / "aloi.json").read_text())
    with pytest.raises(DataError, match="has 3 aloi objects; asked for the first 4"):
        writer.render_world(part_root, "tiny", 5, parts=["aloi"], limits={"aloi": 4})
    with pytest.raises(DataError, match="part 'got10k' cannot be rendered in part"):
        writer.render_world(part_root, "tiny", 5, parts=["got10k"], limits={"got10k": 1})


def test_bad_size_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown synthworld size"):
        synthworld.synthesize("huge", 0, cache_dir=tmp_path)


def test_pascal3d_viewpoints_cycle_through_cells(world_root: Path) -> None:
    """Each class's images fill its viewpoint cells evenly, so both PASCAL3D+ probes get
    trajectories of at least 3 rows even in the tiny world."""
    from sslc_plugins.synthworld.write_pascal3d import image_id, viewpoint_cell

    rel = world_root / "PASCAL3D+_release1.1"
    cfg = common.SIZES["tiny"]
    for cls in common.PASCAL_CLASSES:
        for k in range(cfg.pascal_per_class):
            ident = image_id("imagenet", cls, k)
            rec = scipy.io.loadmat(rel / "Annotations" / f"{cls}_imagenet" / f"{ident}.mat",
                                   squeeze_me=True, struct_as_record=False)["record"]
            first = np.atleast_1d(rec.objects)[0]
            az, el = first.viewpoint.azimuth_coarse, first.viewpoint.elevation_coarse
            assert (int(az % 180 // 30), int(el % 90 // 30)) == viewpoint_cell(k, cfg.pascal_cells)
    assert {viewpoint_cell(k, 3) for k in range(9)} == {(0, 0), (2, 0), (4, 0)}


@pytest.mark.parametrize("probe, dataset", [
    ("got10k-occlusion", {"type": "got10k", "root": "GOT-10k/train"}),
    ("aloi-viewpoint", {"type": "aloi"}),
    ("aloi-illumination-direction", {"type": "aloi"}),
    ("aloi-illumination-color", {"type": "aloi"}),
    ("pascal3d-instance", {"type": "pascal3d"}),
    ("pascal3d-viewpoint-instance", {"type": "pascal3d"}),
])
def test_every_probe_works_on_the_tiny_world(world_root: Path, probe: str, dataset: dict) -> None:
    """Issue 10 item 11: all six probes build trajectories of >= 3 rows and score on tiny."""
    from ssl_core.measure.ris import representation_invariance_score

    require_plugins(probe, dataset["type"])
    reg = get_registry()
    ds = reg.create("dataset", {**dataset, "root": str(world_root / dataset.get("root", ""))})
    ds.prepare()
    probe_set = reg.create("invariance-probe", {"type": probe, "image_size": 32}).build(ds)
    rows = collections.Counter(probe_set.trajectories())
    assert sum(n >= 3 for n in rows.values()) >= 2, rows
    # any features with one row per item score: the probe set is usable by RIS
    feats = np.random.default_rng(0).random((len(probe_set.items), 16))
    res = representation_invariance_score(feats, probe_set.trajectories(), probe_set.labels(),
                                          top_k=(5,), resamples=50)
    assert res.num_trajectories >= 2 and 0 < res.scores[5] <= 100
