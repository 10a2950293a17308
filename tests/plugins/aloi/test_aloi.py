"""ALOI reader and probes, on fixtures written here and on the synthetic world."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sslc_plugins.aloi as aloi
import sslc_plugins.synthworld as synthworld
from ssl_core import DataError
from ssl_core.plugin.host import PluginHost

LAMPS = (110, 120, 130, 140, 150, 160, 170, 180, 190, 210, 230, 250)


@pytest.fixture(scope="module")
def host() -> PluginHost:
    h = PluginHost()
    assert h.add_plugin(aloi, "aloi")
    return h


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)


def _fixture(root: Path, objects=(1, 2, 10), view="aloi_red2_view") -> None:
    for o in objects:
        for a in range(0, 360, 5):
            _png(root / view / str(o) / f"{o}_r{a}.png")
        for light in range(1, 9):
            for c in (1, 2, 3):
                _png(root / "aloi_red2_ill" / str(o) / f"{o}_l{light}c{c}.png")
        for v in LAMPS:
            _png(root / "aloi_red2_col" / str(o) / f"{o}_i{v}.png")


def test_records_parse_names_in_numeric_order(tmp_path: Path, host: PluginHost) -> None:
    _fixture(tmp_path)
    ds = host.registry.create("dataset", {"type": "aloi", "root": str(tmp_path)})
    ds.prepare()
    view = ds.records("view")
    assert [r.group for r in view[::72]] == ["1", "2", "10"]
    assert [r.meta["angle"] for r in view[:3]] == [0, 5, 10] and view[0].label == "1"
    ill = ds.records("ill")
    assert ill[0].meta == {"light": 1, "camera": 1} and len(ill) == 3 * 24
    col = ds.records("col")
    assert [r.meta["lamp"] for r in col[:12]] == list(LAMPS)


def test_root_may_be_a_data_root_and_folders_may_be_renamed(tmp_path: Path, host: PluginHost) -> None:
    _fixture(tmp_path / "aloi", objects=(3,), view="aloi_view")
    ds = host.registry.create("dataset", {"type": "aloi", "root": str(tmp_path), "view_dir": "aloi_view"})
    assert ds.root == tmp_path / "aloi" and len(ds.records("view")) == 72
    plain = host.registry.create("dataset", {"type": "aloi", "root": str(tmp_path)})
    with pytest.raises(DataError, match="aloi_red2_view does not exist") as err:
        plain.records("view")
    assert "view_dir" in err.value.hint


def test_bad_layouts_are_named(tmp_path: Path, host: PluginHost) -> None:
    _fixture(tmp_path, objects=(1,))
    _png(tmp_path / "aloi_red2_view" / "1" / "1_x5.png")
    ds = host.registry.create("dataset", {"type": "aloi", "root": str(tmp_path)})
    with pytest.raises(DataError, match="1_x5.png"):
        ds.records("view")
    _png(tmp_path / "aloi_red2_col" / "1" / "2_i110.png")  # another object's file
    with pytest.raises(DataError, match="2_i110.png"):
        ds.records("col")
    (tmp_path / "aloi_red2_ill" / "notes").mkdir()
    with pytest.raises(DataError, match="notes"):
        ds.records("ill")
    missing = host.registry.create("dataset", {"type": "aloi", "root": str(tmp_path / "nope")})
    with pytest.raises(DataError, match="does not exist"):
        missing.prepare()


@pytest.mark.parametrize("probe, rows", [("aloi-viewpoint", 72), ("aloi-illumination-direction", 24),
                                          ("aloi-illumination-color", 12)])
def test_probes_on_the_synthetic_world(probe: str, rows: int, host: PluginHost,
                                       tmp_path_factory: pytest.TempPathFactory) -> None:
    root = synthworld.synthesize("tiny", 0, cache_dir=tmp_path_factory.getbasetemp() / "synthworld")
    ds = host.registry.create("dataset", {"type": "aloi", "root": str(root)})
    spec = host.registry.get("invariance-probe", probe)
    p = host.registry.create("invariance-probe", {"type": probe})
    assert p.dataset_type == "aloi" and spec.plugin == "aloi"
    ps = p.build(ds)
    n_obj = synthworld.common.SIZES["tiny"].aloi_objects
    assert ps.image_size == (128, 128) and len(ps.items) == n_obj * rows
    for t in set(ps.trajectories()):
        members = [it for it in ps.items if it.trajectory == t]
        assert len(members) == rows
        assert {it.label for it in members} == {t} == {it.record.group for it in members}
    small = host.registry.create("invariance-probe", {"type": probe, "max_objects": 2, "image_size": 64})
    ps2 = small.build(ds)
    assert sorted(set(ps2.trajectories()), key=int) == ["1", "2"] and ps2.image_size == (64, 64)


def test_probe_rejects_a_non_aloi_dataset(tmp_path: Path, host: PluginHost) -> None:
    ds = synthworld.SynthWorld(synthworld.SynthWorldParams(size="tiny", cache_dir=tmp_path))
    with pytest.raises(DataError, match="needs an ALOI dataset"):
        aloi.AloiViewpoint().build(ds)


# -- the layouts the official tarballs extract to ------------------------------------------------

VIEW_ANGLES = (0, 5, 355)  # a few of the 72 views keep the trees small


def _tar_tree(folder: Path, subset: str, objects=(1, 2), level: str = "png2") -> None:
    """What `tar -C folder -xf aloi_red2_{subset}.tar` gives: folder/png2/{obj}/..."""
    names = {"view": [f"_r{a}" for a in VIEW_ANGLES], "ill": ["_l1c1", "_l8c3"],
             "col": ["_i110", "_i250"]}[subset]
    for o in objects:
        for n in names:
            _png(folder / level / str(o) / f"{o}{n}.png")


def _extracted(root: Path) -> Path:
    """Three tarballs, each extracted into a folder named after it."""
    for subset in ("view", "ill", "col"):
        _tar_tree(root / f"aloi_red2_{subset}", subset)
    return root


@pytest.mark.parametrize("where", ["parent", "data-root", "parent-of-merged"])
def test_tarball_layouts_read_every_subset(tmp_path: Path, host: PluginHost, where: str) -> None:
    if where == "parent":
        root = _extracted(tmp_path)
    elif where == "data-root":  # a --data root holding aloi/aloi_red2_*/png2
        _extracted(tmp_path / "aloi")
        root = tmp_path
    else:  # all three tarballs extracted into one folder: they merge into one png2/
        for subset in ("view", "ill", "col"):
            _tar_tree(tmp_path / "aloi", subset)
        root = tmp_path / "aloi"
    ds = host.registry.create("dataset", {"type": "aloi", "root": str(root)})
    ds.prepare()
    view, ill, col = (ds.records(s) for s in ("view", "ill", "col"))
    assert [(r.group, r.meta["angle"]) for r in view] == [(o, a) for o in ("1", "2") for a in VIEW_ANGLES]
    assert all("png2" in r.path.parts and r.path.is_file() for r in view + ill + col)
    assert [r.meta for r in ill[:2]] == [{"light": 1, "camera": 1}, {"light": 8, "camera": 3}]
    assert [r.meta["lamp"] for r in col] == [110, 250, 110, 250]
    for probe, per_object in (("aloi-viewpoint", 3), ("aloi-illumination-direction", 2),
                              ("aloi-illumination-color", 2)):
        ps = host.registry.create("invariance-probe", {"type": probe}).build(ds)
        assert ps.trajectories() == ["1"] * per_object + ["2"] * per_object


@pytest.mark.parametrize("point", ["tarball-folder", "png2-level"])
def test_root_may_be_one_extracted_tarball(tmp_path: Path, host: PluginHost, point: str) -> None:
    _extracted(tmp_path)
    root = tmp_path / "aloi_red2_ill" / ("png2" if point == "png2-level" else "")
    ds = host.registry.create("dataset", {"type": "aloi", "root": str(root)})
    ds.prepare()
    assert len(ds.records()) == 4 and ds.records()[0].meta == {"light": 1, "camera": 1}
    ps = host.registry.create("invariance-probe", {"type": "aloi-illumination-direction"}).build(ds)
    assert len(ps.items) == 4
    with pytest.raises(DataError, match="holds only the 'ill' images, not 'view'") as err:
        host.registry.create("invariance-probe", {"type": "aloi-viewpoint"}).build(ds)
    assert "aloi_red2_ill/ and aloi_red2_view/" in err.value.hint


def test_a_renamed_tarball_folder_is_told_apart_by_its_file_names(tmp_path: Path, host: PluginHost) -> None:
    _tar_tree(tmp_path / "colour", "col", objects=(7,))
    ds = host.registry.create("dataset", {"type": "aloi", "root": str(tmp_path / "colour")})
    assert [r.meta["lamp"] for r in ds.records("col")] == [110, 250] and ds.records()[0].group == "7"


def test_other_resolutions_and_choosing_one(tmp_path: Path, host: PluginHost) -> None:
    _tar_tree(tmp_path / "aloi_red2_view", "view", level="png4")
    ds = host.registry.create("dataset", {"type": "aloi", "root": str(tmp_path)})
    assert {r.path.parent.parent.name for r in ds.records("view")} == {"png4"}
    _tar_tree(tmp_path / "aloi_red2_view", "view", objects=(1,), level="png")
    with pytest.raises(DataError, match="several resolutions: png/, png4/") as err:
        ds.records("view")
    assert "resolution" in err.value.hint
    full = host.registry.create("dataset", {"type": "aloi", "root": str(tmp_path), "resolution": "png"})
    assert [r.group for r in full.records("view")] == ["1"] * 3
    with pytest.raises(DataError, match="has no png2/ level"):
        host.registry.create("dataset", {"type": "aloi", "root": str(tmp_path),
                                         "resolution": "png2"}).records("view")


def test_wrong_tarball_layouts_are_named(tmp_path: Path, host: PluginHost) -> None:
    _extracted(tmp_path)
    (tmp_path / "aloi_red2_view" / "png2" / "thumbs").mkdir()
    ds = host.registry.create("dataset", {"type": "aloi", "root": str(tmp_path)})
    with pytest.raises(DataError, match="unexpected entry .*thumbs"):
        ds.records("view")
    # a file of another subset beside the view images is an ALOI image, read by its own subset
    _png(tmp_path / "aloi_red2_ill" / "png2" / "1" / "1_r5.png")
    assert len(ds.records("ill")) == 4
    _png(tmp_path / "aloi_red2_col" / "png2" / "2" / "1_i110.png")  # object 1's file in folder 2
    with pytest.raises(DataError, match="1_i110.png"):
        ds.records("col")
    # a folder that holds no ALOI images anywhere
    odd = tmp_path / "odd"
    _png(odd / "png2" / "pictures" / "a.png")
    with pytest.raises(DataError, match="aloi_red2_view does not exist") as err:
        host.registry.create("dataset", {"type": "aloi", "root": str(odd)}).prepare()
    assert "view_dir" in err.value.hint


@pytest.mark.parametrize("probe", ["aloi-viewpoint", "aloi-illumination-direction",
                                   "aloi-illumination-color"])
def test_keeps_the_dataset_and_probe_contracts(probe: str, tmp_path: Path, host: PluginHost) -> None:
    """The contract kit's checks on the native layout, each probe measured end to end."""
    from ssl_core.testing import (
        check_dataset,
        check_invariance_probe,
        check_params_reject_unknown_keys,
        check_registers_cleanly,
    )
    from sslc_plugins import resnet

    check_registers_cleanly(aloi, "aloi")
    _fixture(tmp_path, objects=(1, 2))
    config = {"root": str(tmp_path)}
    check_params_reject_unknown_keys("dataset", "aloi", registry=host.registry, config=config)
    check_params_reject_unknown_keys("invariance-probe", probe, registry=host.registry)
    ds = host.registry.create("dataset", {"type": "aloi", **config})
    ds.prepare()
    check_dataset(ds)
    encoder = resnet.ResNet18(resnet.ResNetParams(small_input=True))
    p = host.registry.create("invariance-probe", {"type": probe, "image_size": 16})
    check_invariance_probe(p, ds, encoder=encoder, top_k=(1, 5))
