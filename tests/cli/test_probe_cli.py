"""`sslc probe` end to end: feature files, checkpoints of real layouts, real dataset layouts."""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image, ImageDraw

from ssl_core.measure.alldata import load_alldata, save_alldata
from ssl_core.measure.ris import representation_invariance_score
from ssl_core.plugin.host import get_registry


def _has(kind: str, name: str) -> bool:
    return name in get_registry().names(kind)


# -- data in real layouts -----------------------------------------------------------------

def write_got10k(root: Path, classes: dict[str, str]) -> Path:
    """GOT-10k/train with one sequence per entry {name: class}; covers 0..8, one frame each."""
    split = root / "GOT-10k" / "train"
    split.mkdir(parents=True)
    for s, (name, cls) in enumerate(classes.items()):
        folder = split / name
        folder.mkdir()
        n = 9
        rng = np.random.default_rng(s)
        boxes = []
        for i in range(n):
            arr = rng.integers(0, 255, size=(60, 80, 3), dtype=np.uint8)
            arr[20:45, 25:60] = (40 * s % 256, 200, 30 * i % 256)
            Image.fromarray(arr).save(folder / f"{i + 1:08d}.jpg", quality=90)
            boxes.append(f"{20 + i:.4f},{15:.4f},{40:.4f},{35:.4f}")
        (folder / "groundtruth.txt").write_text("\n".join(boxes) + "\n")
        (folder / "cover.label").write_text("\n".join(str(i) for i in range(n)) + "\n")
        (folder / "absence.label").write_text("\n".join("0" for _ in range(n)) + "\n")
        (folder / "cut_by_image.label").write_text("\n".join("0" for _ in range(n)) + "\n")
        (folder / "meta_info.ini").write_text(
            "[METAINFO]\nurl: https://youtu.be/x\nbegin_frame: 1\nend_frame: 9\n"
            f"anno_fps: 10Hz\nobject_class: {cls}\nmotion_class: walking\n"
            "major_class: animal\nroot_class: object\nmotion_adverb: slowly\n"
            "resolution: (80, 60)\n")
    (split / "list.txt").write_text("\n".join(classes) + "\n")
    return root


def write_aloi_view(root: Path, objects: int = 3) -> Path:
    """aloi_red2_view/{obj}/{obj}_r{angle}.png: 192x144 renders of an object on a turntable."""
    folder = root / "aloi_red2_view"
    for obj in range(1, objects + 1):
        (folder / str(obj)).mkdir(parents=True)
        rng = np.random.default_rng(obj)
        colour = tuple(int(c) for c in rng.integers(60, 255, 3))
        for angle in range(0, 360, 5):
            img = Image.new("RGB", (192, 144), (0, 0, 0))
            draw = ImageDraw.Draw(img)
            a = math.radians(angle)
            half = 20 + 10 * obj * abs(math.cos(a))  # apparent width changes with the turn
            draw.rectangle((96 - half, 40, 96 + half, 110), fill=colour)
            x = 96 + 25 * math.sin(a)
            draw.ellipse((x - 8, 60, x + 8, 76), fill=(255, 255, 255))
            img.save(folder / str(obj) / f"{obj}_r{angle}.png")
    return root


def write_torchvision_checkpoint(path: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    sd = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(sd, path)
    return sd


# -- --features ---------------------------------------------------------------------------

def test_features_file_scoring(sslc, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    traj = np.repeat(np.arange(12), 5)
    classes = [f"class{t % 3}" for t in traj]
    feat = rng.normal(size=(60, 40)).astype(np.float32)
    feat[:, :8] += traj[:, None] % 4  # some neurons fire together within trajectories
    path = tmp_path / "alldata.pth"
    save_alldata(path, feat, traj, classes)
    res = sslc("probe", "--features", str(path), "--top-k", "5", "--top-k", "10", "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    expected = representation_invariance_score(feat, traj, classes, top_k=(5, 10))
    [row] = doc["probes"]
    assert row["top5"] == pytest.approx(expected.scores[5])
    assert row["top10"] == pytest.approx(expected.scores[10])
    for k in ("top5", "top10"):  # an interval that holds the score
        assert row["intervals"][k]["low"] <= row[k] <= row["intervals"][k]["high"]
    assert row["num_rows"] == 60 and row["num_trajectories"] == 12 and row["num_classes"] == 3
    # the table form names the probe and prints both K
    res = sslc("probe", "--features", str(path), "--top-k", "5", "--top-k", "10")
    assert res.code == 0
    assert "alldata" in res.out and "top-5" in res.out and "top-10" in res.out
    assert f"{expected.scores[5]:.2f}" in res.out


def test_usage_errors_exit_2(sslc, tmp_path: Path) -> None:
    res = sslc("probe", "--top-k", "10")
    assert res.code == 2 and "exactly one of --checkpoint and --features" in res.err
    res = sslc("probe", "--checkpoint", "x.pth", "--features", "y.pth")
    assert res.code == 2
    res = sslc("probe", "--checkpoint", "random:resnet18", "--data", str(tmp_path))
    assert res.code == 2 and "--probe" in res.err
    res = sslc("probe", "--features", str(tmp_path / "missing.pth"))
    assert res.code == 2 and "missing.pth" in res.err and "Traceback" not in res.err


def test_bad_checkpoint_and_probe_are_clean_errors(sslc, tmp_path: Path) -> None:
    bad = tmp_path / "notes.pth"
    bad.write_text("not a checkpoint")
    probe = "got10k-occlusion" if _has("invariance-probe", "got10k-occlusion") else None
    if probe is None:
        pytest.skip("needs the got10k plugin for a registered probe name")
    res = sslc("probe", "--checkpoint", str(bad), "--probe", probe, "--data", str(tmp_path))
    assert res.code == 2
    err = " ".join(res.err.split())  # rich wraps long lines
    assert "notes.pth is not a torch checkpoint" in err and "Traceback" not in err
    res = sslc("probe", "--checkpoint", "random:resnet18", "--probe", "got10k-occlusio",
               "--data", str(tmp_path))
    assert res.code == 2 and "did you mean 'got10k-occlusion'" in " ".join(res.err.split())


# -- --checkpoint on real layouts -----------------------------------------------------------

@pytest.fixture
def got_root(tmp_path: Path) -> Path:
    if not _has("invariance-probe", "got10k-occlusion"):
        pytest.skip("the got10k plugin (got10k-occlusion probe) is not registered")
    return write_got10k(tmp_path / "data", {"GOT-10k_Train_000001": "dog",
                                            "GOT-10k_Train_000002": "dog",
                                            "GOT-10k_Train_000003": "sea lion"})


def test_checkpoint_probe_save_features_and_cache(sslc, tmp_path: Path, got_root: Path) -> None:
    ckpt = tmp_path / "resnet18-supervised.pth"
    sd = write_torchvision_checkpoint(ckpt)
    out = tmp_path / "feats" / "alldata.pth"
    args = ["probe", "--checkpoint", str(ckpt), "--probe", "got10k-occlusion", "--data",
            str(got_root), "--workers", "0", "--batch-size", "8", "--save-features", str(out)]
    res = sslc(*args, "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)  # stdout holds only the JSON document
    assert doc["source"]["format"] == "torchvision" and doc["source"]["arch"] == "resnet18"
    [row] = doc["probes"]
    assert row["num_rows"] == 27 and row["num_trajectories"] == 3 and row["feature_dim"] == 512
    assert row["cache"] == "miss"
    # the saved file is the interop dict plus paths and boxes, and re-scores identically
    saved = load_alldata(out)
    assert saved.feat.shape == (27, 512)
    assert len(saved.paths) == 27 and saved.paths[0].endswith(".jpg")
    assert saved.boxes.shape == (27, 4) and not np.isnan(saved.boxes).any()
    again = representation_invariance_score(saved.feat, saved.instance, saved.classes)
    assert again.scores[10] == pytest.approx(row["top10"])
    # the features are those of the checkpoint's weights: recompute one row by hand
    enc = get_registry().create("encoder", {"type": "resnet18"})
    enc.load_state_dict({k: v for k, v in sd.items() if not k.startswith("fc.")})
    enc.eval()
    img = Image.open(saved.paths[0]).convert("RGB").crop(tuple(saved.boxes[0]))
    x = torchvision.transforms.functional.to_tensor(img.resize((128, 128), Image.BILINEAR))
    x = torchvision.transforms.functional.normalize(x, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    with torch.no_grad():
        ref = enc(x[None]).numpy()[0]
    np.testing.assert_allclose(saved.feat[0], ref, rtol=1e-3, atol=1e-4)
    # a second run (another K) is served from the feature cache, with the same numbers
    res2 = sslc(*args[:-2], "--top-k", "10", "--json")
    row2 = json.loads(res2.out)["probes"][0]
    assert row2["cache"] == "hit"
    assert row2["top10"] == pytest.approx(row["top10"])
    # --no-cache recomputes
    res3 = sslc(*args[:-2], "--no-cache", "--json")
    assert json.loads(res3.out)["probes"][0]["cache"] == "off"
    # table output goes to stdout, with the load report on stderr
    res4 = sslc(*args[:-2])
    assert res4.code == 0 and "got10k-occlusion" in res4.out and "loaded" in res4.err


def test_random_baseline_is_seeded(sslc, got_root: Path) -> None:
    args = ["probe", "--checkpoint", "random:resnet18", "--probe", "got10k-occlusion",
            "--data", str(got_root), "--workers", "0", "--no-cache", "--json"]
    a = json.loads(sslc(*args).out)["probes"][0]
    b = json.loads(sslc(*args).out)["probes"][0]
    assert a == b


def test_several_probes_save_one_file_each(sslc, tmp_path: Path) -> None:
    if not (_has("invariance-probe", "pascal3d-instance") and _has("invariance-probe",
                                                                     "got10k-occlusion")):
        pytest.skip("needs the got10k and pascal3d plugins")
    root = write_got10k(tmp_path / "data", {"GOT-10k_Train_000001": "dog",
                                            "GOT-10k_Train_000002": "cat"})
    out = tmp_path / "alldata.pth"
    # the same probe twice is fine and shows the per-probe file naming
    res = sslc("probe", "--checkpoint", "random:resnet18", "--probe", "got10k-occlusion",
               "--probe", "got10k-occlusion", "--data", f"got10k={root}", "--workers", "0",
               "--save-features", str(out), "--json")
    assert res.code == 0, res.err
    rows = json.loads(res.out)["probes"]
    assert [r["features_file"] for r in rows] == [str(tmp_path / "alldata.got10k-occlusion.pth")] * 2
    assert rows[1]["cache"] == "hit"


def test_aloi_viewpoint_end_to_end(sslc, tmp_path: Path) -> None:
    if not _has("invariance-probe", "aloi-viewpoint"):
        pytest.skip("the aloi plugin (aloi-viewpoint probe) is not registered yet")
    root = write_aloi_view(tmp_path / "aloi")
    ckpt = tmp_path / "moco.pth.tar"
    torch.manual_seed(0)
    trunk = torchvision.models.resnet18(weights=None).state_dict()
    sd = {f"module.encoder_q.{k}": v for k, v in trunk.items() if not k.startswith("fc.")}
    torch.save({"epoch": 1, "arch": "resnet18", "state_dict": sd, "optimizer": {}}, ckpt)
    res = sslc("probe", "--checkpoint", str(ckpt), "--probe", "aloi-viewpoint", "--data",
               str(root), "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["source"]["format"] == "moco"
    [row] = doc["probes"]
    assert row["num_rows"] == 3 * 72 and row["num_trajectories"] == 3
    assert 0 < row["top10"] <= 100 * 20


def test_aloi_fixture_image(tmp_path: Path) -> None:
    """The ALOI fixture writes the real layout and 192x144 RGB images that differ by view."""
    root = write_aloi_view(tmp_path, objects=1)
    files = sorted((root / "aloi_red2_view" / "1").glob("*.png"))
    assert len(files) == 72 and (root / "aloi_red2_view" / "1" / "1_r355.png").exists()
    a, b = (np.asarray(Image.open(root / "aloi_red2_view" / "1" / f"1_r{x}.png")) for x in (0, 90))
    assert a.shape == (144, 192, 3) and not np.array_equal(a, b)
    assert zlib.crc32(a.tobytes()) != zlib.crc32(b.tobytes())


def test_probe_then_recipe_on_the_same_checkpoint_extracts_once(sslc, tmp_path: Path,
                                                                 got_root: Path) -> None:
    """`sslc probe` and a recipe share one probing path, so they share the feature cache."""
    ckpt = tmp_path / "moco-like.pth"
    write_torchvision_checkpoint(ckpt)
    res = sslc("probe", "--checkpoint", str(ckpt), "--probe", "got10k-occlusion", "--data",
               str(got_root), "--workers", "0", "--json")
    first = json.loads(res.out)["probes"][0]
    assert first["cache"] == "miss"
    recipe = tmp_path / "same.yaml"
    recipe.write_text(
        "name: same\n"
        "datasets:\n"
        f"  got: {{type: got10k, root: '{got_root}'}}\n"
        "models:\n"
        f"  loaded: {{encoder: {{type: resnet18}}, checkpoint: {{path: '{ckpt}'}}}}\n"
        "probes:\n"
        "  occlusion: {type: got10k-occlusion, dataset: got}\n"
        "probe_settings: {num_workers: 0}\n")
    run = sslc("run", str(recipe), "--run-dir", str(tmp_path / "run"), "--quiet")
    assert run.code == 0, run.err
    result = json.loads((tmp_path / "run" / "probes" / "loaded" / "occlusion.json").read_text())
    assert result["cache"] == "hit"
    assert result["encoder_id"] == first["encoder_id"]
    assert result["top10"] == pytest.approx(first["top10"])


def test_unwritable_feature_cache_still_gives_the_scores(sslc, tmp_path: Path, got_root: Path,
                                                         monkeypatch) -> None:
    """Issue: features were computed, writing the cache failed, and the results were lost."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "features").write_text("a file where the cache folder should be")
    res = sslc("probe", "--checkpoint", "random:resnet18", "--probe", "got10k-occlusion",
               "--data", str(got_root), "--workers", "0", "--resamples", "0", "--json",
               env={"SSLC_CACHE_DIR": str(cache)})
    assert res.code == 0, res.err
    assert "continuing without the feature cache" in res.err
    row = json.loads(res.out)["probes"][0]
    assert row["cache"] == "off" and 0 < row["top10"] <= 100

    # a cache that fails while writing (disk full, permissions changed) is switched off too
    from ssl_core.measure.features import FeatureCache

    store = FeatureCache(tmp_path / "ok")
    monkeypatch.setattr("ssl_core.measure.features.atomic_path",
                        lambda path: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    assert store.store("k", np.zeros((2, 2), dtype=np.float32)) is None
    assert store.writable is False
