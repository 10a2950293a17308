"""Feature extraction: order, determinism, box crops, the cache and its invalidation."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ssl_core.errors import DataError
from ssl_core.interfaces import Encoder, ImageRecord, ProbeItem, ProbeSet
from ssl_core.kit.imageio import crop_box, load_rgb
from ssl_core.measure import features
from ssl_core.measure.features import (
    PREPARED,
    FeatureCache,
    PreparedPixels,
    ProbeImages,
    build_transform,
    extract_features,
    feature_key_parts,
    features_for,
    rows_metadata,
)


class TinyEncoder(Encoder):
    """A real (small) conv net: conv -> ReLU -> global average pool."""

    feature_dim = 8

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, self.feature_dim, 3, padding=1)
        self.calls = 0
        self.register_forward_hook(self._count)

    def _count(self, module: nn.Module, inputs: object, output: object) -> None:
        self.calls += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)).mean(dim=(2, 3))

    def feature_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        m = torch.relu(self.conv(x))
        return {"layer3": m, "pooled": m.mean(dim=(2, 3))}


def _write_images(root: Path, n: int, size: tuple[int, int] = (40, 30)) -> list[Path]:
    """n distinct RGB PNGs (w x h = size): gradients with a coloured square."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        w, h = size
        arr = np.zeros((h, w, 3), dtype=np.uint8)
        arr[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
        arr[..., 1] = (i * 37) % 256
        x, y = rng.integers(0, w - 10), rng.integers(0, h - 10)
        arr[y:y + 10, x:x + 10, 2] = 255
        p = root / f"img_{i:02d}.png"
        Image.fromarray(arr).save(p)
        paths.append(p)
    return paths


def _probe_set(paths: list[Path], boxes: list | None = None, size=(16, 16)) -> ProbeSet:
    items = []
    for i, p in enumerate(paths):
        box = None if boxes is None else boxes[i]
        rec = ImageRecord(path=p, label=f"c{i % 2}", group=f"t{i // 3}", box=box)
        items.append(ProbeItem(record=rec, trajectory=f"t{i // 3}", label=f"c{i % 2}"))
    return ProbeSet(probe="test-probe", items=items, image_size=size)


def test_shape_order_and_determinism(tmp_path: Path) -> None:
    paths = _write_images(tmp_path, 7)
    ps = _probe_set(paths)
    enc = TinyEncoder()
    enc.train()
    feats = extract_features(enc, ps, batch_size=3, progress=False)
    assert feats.shape == (7, 8) and feats.dtype == np.float32
    assert enc.training, "the encoder's training flag is restored"
    # row order: each row equals the encoder applied to that image alone
    images = ProbeImages(ps)
    enc.eval()
    with torch.no_grad():
        for i in range(7):
            single = enc(images[i][None]).numpy()[0]
            np.testing.assert_allclose(feats[i], single, rtol=1e-5, atol=1e-6)
    again = extract_features(enc, ps, batch_size=5, progress=False)
    np.testing.assert_allclose(feats, again, rtol=1e-5, atol=1e-6)
    assert not np.allclose(feats[0], feats[1])


def test_workers_match_main_process(tmp_path: Path) -> None:
    ps = _probe_set(_write_images(tmp_path, 5))
    enc = TinyEncoder()
    a = extract_features(enc, ps, batch_size=2, num_workers=0, progress=False)
    b = extract_features(enc, ps, batch_size=2, num_workers=2, progress=False)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_channels_last_gives_the_same_features_and_leaves_the_encoder_as_it_was(tmp_path: Path) -> None:
    ps = _probe_set(_write_images(tmp_path, 6))
    enc = TinyEncoder()
    nchw = extract_features(enc, ps, batch_size=4, progress=False, channels_last=False)
    assert enc.conv.weight.is_contiguous()
    nhwc = extract_features(enc, ps, batch_size=4, progress=False, channels_last=True)
    np.testing.assert_allclose(nhwc, nchw, rtol=1e-5, atol=1e-6)
    assert enc.conv.weight.is_contiguous(), "the encoder's memory format is restored"
    enc.to(memory_format=torch.channels_last)
    extract_features(enc, ps, batch_size=4, progress=False)  # auto: NHWC on CPU
    assert enc.conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_the_pixels_then_normalisation_equal_torchvisions_transform_bit_for_bit(tmp_path: Path) -> None:
    paths = _write_images(tmp_path, 3, size=(45, 31))
    ps = _probe_set(paths, boxes=[None, (3.0, 2.0, 30.0, 25.0), (20.0, 5.0, 60.0, 28.0)], size=(13, 17))
    images = ProbeImages(ps)
    reference = build_transform((13, 17))
    for i, p in enumerate(paths):
        want = reference(crop_box(load_rgb(p), ps.items[i].record.box, p))
        assert torch.equal(images[i], want)


def test_a_second_model_reads_the_prepared_pixels_and_gets_its_own_features(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ps = _probe_set(_write_images(tmp_path, 7))
    first = extract_features(TinyEncoder(), ps, batch_size=3, num_workers=2, progress=False)
    kept = PREPARED.get(ProbeImages(ps).memo_key())
    assert kept is not None and kept.dtype == torch.uint8 and tuple(kept.shape) == (7, 3, 16, 16)
    other = TinyEncoder()
    with torch.no_grad():
        other.conv.weight.mul_(-1.0)
    from_memo = extract_features(other, ps, batch_size=3, progress=False)
    monkeypatch.setattr(features, "PREPARED", PreparedPixels(budget=0))  # nothing kept: decoded again
    decoded = extract_features(other, ps, batch_size=3, progress=False)
    assert features.PREPARED.get(ProbeImages(ps).memo_key()) is None
    np.testing.assert_array_equal(from_memo, decoded)
    assert not np.allclose(from_memo, first)
    again = extract_features(TinyEncoder(), ps, batch_size=3, progress=False)
    np.testing.assert_array_equal(again, first)


def test_prepared_pixels_keep_to_their_budget() -> None:
    memo = PreparedPixels(budget=250)
    memo.put("a", torch.zeros(100, dtype=torch.uint8))
    memo.put("b", torch.zeros(100, dtype=torch.uint8))
    assert memo.get("a") is not None  # used again: "b" is now the least recently used
    memo.put("c", torch.zeros(100, dtype=torch.uint8))
    memo.put("huge", torch.zeros(300, dtype=torch.uint8))  # over the whole budget: not kept
    assert [memo.get(k) is not None for k in "abc"] == [True, False, True]
    assert memo.get("huge") is None


def test_preprocessing_is_resize_totensor_normalize(tmp_path: Path) -> None:
    paths = _write_images(tmp_path, 1, size=(40, 30))
    ps = _probe_set(paths, size=(12, 20))
    x = ProbeImages(ps)[0]
    assert tuple(x.shape) == (3, 12, 20)
    img = Image.open(paths[0]).convert("RGB").resize((20, 12), Image.BILINEAR)
    ref = (np.asarray(img, dtype=np.float32) / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array(
        [0.229, 0.224, 0.225])
    np.testing.assert_allclose(x.permute(1, 2, 0).numpy(), ref, atol=1e-5)


def test_box_is_cropped_and_padded_like_the_authors(tmp_path: Path) -> None:
    # left half red, right half green
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, :20, 0] = 255
    arr[:, 20:, 1] = 255
    p = tmp_path / "halves.png"
    Image.fromarray(arr).save(p)
    ps = _probe_set([p, p, p], boxes=[None, (0.0, 0.0, 20.0, 20.0), (20.0, 0.0, 60.0, 20.0)],
                    size=(8, 16))
    images = ProbeImages(ps)
    whole, left, right = images[0], images[1], images[2]
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    left_rgb, right_rgb = left * std + mean, right * std + mean
    assert torch.allclose(left_rgb[0], torch.ones(8, 16), atol=1e-5)
    assert torch.allclose(left_rgb[1], torch.zeros(8, 16), atol=1e-5)
    # a box reaching past the right edge (x 20..60 of a 40-wide image) is not clipped: as
    # torchvision's crop on PIL images, its outside half is black
    assert torch.allclose(right_rgb[1, :, :7], torch.ones(8, 7), atol=1e-5)
    assert torch.allclose(right_rgb[:, :, 9:], torch.zeros(3, 8, 7), atol=1e-5)
    assert torch.allclose(right_rgb[0], torch.zeros(8, 16), atol=1e-5)
    assert not torch.allclose(whole, left)


def test_empty_box_is_data_error(tmp_path: Path) -> None:
    p = _write_images(tmp_path, 1)[0]
    ps = _probe_set([p], boxes=[(10.0, 10.0, 10.2, 30.0)])
    with pytest.raises(DataError, match="empty or not finite"):
        ProbeImages(ps)[0]


@pytest.mark.parametrize("workers", [0, 2])
def test_truncated_image_names_file(tmp_path: Path, workers: int) -> None:
    paths = _write_images(tmp_path, 3)
    bad = tmp_path / "broken.png"
    bad.write_bytes(paths[0].read_bytes()[:60])
    ps = _probe_set([paths[1], bad, paths[2]])
    with pytest.raises(DataError) as info:
        extract_features(TinyEncoder(), ps, batch_size=2, num_workers=workers, progress=False)
    assert "broken.png" in info.value.message
    assert "Traceback" not in info.value.message
    assert info.value.hint


def test_missing_image_is_data_error(tmp_path: Path) -> None:
    ps = _probe_set([tmp_path / "nope.png"])
    with pytest.raises(DataError, match="nope.png"):
        extract_features(TinyEncoder(), ps, progress=False)


def test_cache_hit_skips_encoder(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    ps = _probe_set(_write_images(tmp_path / "imgs", 6))
    cache = FeatureCache(tmp_path / "cache")
    enc = TinyEncoder()
    first = features_for(enc, ps, "enc-A", cache=cache, batch_size=4, progress=False)
    calls = enc.calls
    assert calls == 2 and cache.misses == 1
    second = features_for(enc, ps, "enc-A", cache=cache, batch_size=4, progress=False)
    assert enc.calls == calls, "a cache hit must not run the encoder"
    assert cache.hits == 1
    np.testing.assert_array_equal(first, second)
    # a different encoder identity is a different entry
    features_for(enc, ps, "enc-B", cache=cache, batch_size=4, progress=False)
    assert enc.calls == calls + 2
    # cache=False never stores or reads
    features_for(enc, ps, "enc-A", cache=False, batch_size=4, progress=False)
    assert enc.calls == calls + 4


def test_cache_invalidated_when_image_changes(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    paths = _write_images(tmp_path / "imgs", 4)
    ps = _probe_set(paths)
    cache = FeatureCache(tmp_path / "cache")
    enc = TinyEncoder()
    before = features_for(enc, ps, "enc", cache=cache, progress=False)
    calls = enc.calls
    # rewrite one image with different content (and a different mtime)
    Image.fromarray(np.full((30, 40, 3), 200, dtype=np.uint8)).save(paths[2])
    st = os.stat(paths[2])
    os.utime(paths[2], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    after = features_for(enc, ps, "enc", cache=cache, progress=False)
    assert enc.calls > calls, "a changed image must be re-extracted"
    np.testing.assert_allclose(after[[0, 1, 3]], before[[0, 1, 3]], rtol=1e-5, atol=1e-6)
    assert not np.allclose(after[2], before[2])


def test_key_covers_boxes_and_size_and_probes_over_the_same_images_share_it(tmp_path: Path) -> None:
    paths = _write_images(tmp_path, 3)
    base = FeatureCache.key(feature_key_parts("e", _probe_set(paths)))
    other_size = FeatureCache.key(feature_key_parts("e", _probe_set(paths, size=(8, 8))))
    boxed = FeatureCache.key(feature_key_parts("e", _probe_set(paths, boxes=[(0, 0, 5, 5)] * 3)))
    other_encoder = FeatureCache.key(feature_key_parts("f", _probe_set(paths)))
    assert len({base, other_size, boxed, other_encoder}) == 4
    ps = _probe_set(paths)
    other_probe = ProbeSet("another-probe", [ProbeItem(it.record, "t", "x") for it in ps.items],
                           ps.image_size)
    assert base == FeatureCache.key(feature_key_parts("e", other_probe))
    reordered = ProbeSet(ps.probe, ps.items[::-1], ps.image_size)
    assert base != FeatureCache.key(feature_key_parts("e", reordered))


def test_damaged_cache_entry_is_recomputed(tmp_path: Path) -> None:
    ps = _probe_set(_write_images(tmp_path, 2))
    cache = FeatureCache(tmp_path / "cache")
    enc = TinyEncoder()
    a = features_for(enc, ps, "enc", cache=cache, progress=False)
    [entry] = list((tmp_path / "cache").rglob("*.npy"))
    entry.write_bytes(b"garbage")
    b = features_for(enc, ps, "enc", cache=cache, progress=False)
    np.testing.assert_allclose(a, b)
    assert cache.misses == 2


def test_rows_metadata(tmp_path: Path) -> None:
    paths = _write_images(tmp_path, 2)
    ps = _probe_set(paths, boxes=[None, (1.0, 2.0, 3.5, 4.0)])
    out_paths, boxes = rows_metadata(ps)
    assert out_paths == [str(p) for p in paths]
    assert boxes.shape == (2, 4)
    assert np.isnan(boxes[0]).all()
    np.testing.assert_array_equal(boxes[1], [1.0, 2.0, 3.5, 4.0])
