"""`transform`: one trajectory per image, one row per value of a sweep, the transformation
applied in memory (the feature cache keys on it), and the same RIS as the reference on the
features it dumps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from helpers import oracle_ris, require_plugins, write_images
from PIL import Image

from ssl_core.interfaces import ImageRecord
from ssl_core.measure.alldata import load_alldata
from ssl_core.measure.features import extract_features, images_fingerprint
from ssl_core.plugin.host import PluginHost
from sslc_plugins import image_folder, resnet, transform_probe
from sslc_plugins.transform_probe import PRESETS, SweepTransform


@pytest.fixture(scope="module")
def host() -> PluginHost:
    h = PluginHost()
    for module, name in ((transform_probe, "transform-probe"), (image_folder, "image-folder")):
        assert h.add_plugin(module, name)
    return h


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_images(tmp_path / "images", {"cat": 3, "dog": 2}, size=24)


def _dataset(host: PluginHost, root: Path):
    ds = host.registry.create("dataset", {"type": "image-folder", "root": str(root)})
    ds.prepare()
    return ds


def test_one_trajectory_per_image_one_row_per_value(host: PluginHost, folder: Path) -> None:
    probe = host.registry.create("invariance-probe", {"type": "transform", "sweep": "rotation",
                                                      "values": [0, 90, 180, 270], "image_size": 16})
    ps = probe.build(_dataset(host, folder))
    assert len(ps.items) == 5 * 4 and len(set(ps.trajectories())) == 5
    assert ps.image_size == (16, 16) and ps.stats == {"images": 5, "values": 4}
    for t in set(ps.trajectories()):
        rows = [it for it in ps.items if it.trajectory == t]
        assert [it.record.transform.value for it in rows] == [0, 90, 180, 270]
        assert len({it.record.path for it in rows}) == 1 and len({it.label for it in rows}) == 1
    assert {it.label for it in ps.items} == {"cat", "dog"}


def test_repeated_values_give_identical_rows_and_transforms_enter_the_cache_key(
        host: PluginHost, folder: Path) -> None:
    probe = host.registry.create("invariance-probe", {"type": "transform", "sweep": "gaussian_blur",
                                                      "values": [0, 2, 2], "image_size": 16})
    ps = probe.build(_dataset(host, folder))
    net = resnet.ResNet18(resnet.ResNetParams(small_input=True)).eval()
    feat = extract_features(net, ps, batch_size=8, progress=False)
    assert np.array_equal(feat[1], feat[2]) and not np.array_equal(feat[0], feat[1])
    plain, blurred = ps.items[0].record, ps.items[1].record
    assert images_fingerprint([plain]) != images_fingerprint([blurred])
    # an untransformed record keeps the key it had before transforms existed
    bare = ImageRecord(plain.path)
    assert images_fingerprint([bare]) == images_fingerprint([ImageRecord(plain.path, label="x")])


@pytest.mark.parametrize("sweep", sorted(PRESETS))
def test_every_sweep_changes_the_image_and_its_identity_value_does_not(sweep: str) -> None:
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    values = PRESETS[sweep][0]
    outs = [np.asarray(SweepTransform(sweep, float(v), "seed")(img)) for v in values]
    assert all(o.shape == (32, 32, 3) and o.dtype == np.uint8 for o in outs)
    assert len({o.tobytes() for o in outs}) == len(values)  # each value is a different image
    same = SweepTransform(sweep, float(values[-1]), "seed")(img)
    assert np.array_equal(np.asarray(same), outs[-1])  # deterministic, noise included
    identity = {"rotation": 0, "gaussian_blur": 0, "brightness": 1, "contrast": 1,
                "saturation": 1, "hue": 0, "grayscale": 0, "scale": 1, "translation": 0,
                "occlusion": 0, "gaussian_noise": 0, "hflip": 0}
    if sweep in identity:
        assert np.array_equal(np.asarray(SweepTransform(sweep, identity[sweep], "s")(img)),
                              np.asarray(img))


def test_rotation_is_torchvision_rotation(folder: Path) -> None:
    img = Image.open(next(folder.rglob("*.png"))).convert("RGB")
    ours = SweepTransform("rotation", 90.0)(img)
    assert np.array_equal(np.asarray(ours), np.asarray(TF.rotate(img, 90.0)))


def test_values_outside_a_sweeps_range_are_refused_naming_them(host: PluginHost) -> None:
    from ssl_core.errors import ComponentError

    with pytest.raises(ComponentError, match=r"outside jpeg_quality's range \[1, 100\]"):
        host.registry.create("invariance-probe", {"type": "transform", "sweep": "jpeg_quality",
                                                  "values": [50, 0]})
    with pytest.raises(ComponentError, match="sweep"):
        host.registry.create("invariance-probe", {"type": "transform", "sweep": "rotate"})


def test_cli_probe_transform_equals_the_reference_on_the_dump(sslc, tmp_path: Path,
                                                               folder: Path) -> None:
    """The bar: `sslc probe --probe transform ...` builds one trajectory per image and one row
    per value, and its RIS equals an independent implementation on the dumped features."""
    require_plugins("transform", "image-folder", "resnet18")
    dump = tmp_path / "alldata.pth"
    res = sslc("probe", "--checkpoint", "random:resnet18", "--probe", "transform",
               "--option", "sweep=rotation", "--option", "values=[0,90,180,270]",
               "--option", "image_size=16", "--data", str(folder), "--top-k", "5",
               "--resamples", "0", "--workers", "0", "--save-features", str(dump), "--json")
    assert res.code == 0, res.err
    [row] = json.loads(res.out)["probes"]
    assert (row["num_rows"], row["num_trajectories"]) == (20, 5)
    saved = load_alldata(dump)
    assert saved.feat.shape[0] == 20
    reference = oracle_ris(saved.feat, saved.instance, saved.classes, top_k=(5,))
    assert row["top5"] == pytest.approx(reference[5], abs=1e-6)
    # row 1 is the first image rotated by 90 degrees at the probe's size: recompute it
    from ssl_core.models.source import RANDOM_SEED, seeded_encoder
    from ssl_core.plugin.host import get_registry

    net = seeded_encoder(get_registry(), {"type": "resnet18"}, RANDOM_SEED).eval()
    img = Image.open(saved.paths[1]).convert("RGB").resize((16, 16), Image.BILINEAR)
    rotated = TF.rotate(img, 90.0, interpolation=TF.InterpolationMode.BILINEAR)
    x = TF.normalize(TF.to_tensor(rotated), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    with torch.no_grad():
        expected = net(x[None]).numpy()[0]
    np.testing.assert_allclose(saved.feat[1], expected, rtol=1e-3, atol=1e-4)
    assert saved.paths[0] == saved.paths[1]
