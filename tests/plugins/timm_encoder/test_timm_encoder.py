"""The timm encoder against timm's own models, and timm / DINO / DINOv2 ViT checkpoints."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import pytest
import torch

timm = pytest.importorskip("timm")

from ssl_core.errors import CheckpointError, ComponentError, SslcError  # noqa: E402
from ssl_core.models.checkpoints import load_encoder  # noqa: E402
from ssl_core.plugin.host import get_registry  # noqa: E402
from sslc_plugins.timm_encoder import TimmEncoder, TimmParams  # noqa: E402

VIT = "vit_tiny_patch16_224"
VIT_KW = {"img_size": 32, "patch_size": 8}  # 4 x 4 patches: tiny and fast on CPU


@pytest.fixture(scope="module")
def registry():
    reg = get_registry()
    if "timm" not in reg.names("encoder"):
        pytest.skip("the built-in 'timm' encoder plugin is not registered")
    return reg


def _images(n: int = 2, h: int = 32, w: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(0))


def _timm_model(name: str, seed: int = 0, **kw) -> torch.nn.Module:
    """timm's model with a classifier: what a timm user has and saves."""
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, num_classes=10, **kw).eval()
    with torch.no_grad():  # non-default norms and biases, so every tensor's loading counts
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def _own_pooled(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's own pooled pre-logits: the feature the encoder must give."""
    with torch.no_grad():
        return model.forward_head(model.forward_features(x), pre_logits=True)


def _encoder(name: str, **kw) -> TimmEncoder:
    return TimmEncoder(TimmParams(name=name, kwargs=kw)).eval()


@pytest.mark.parametrize("name,kw", [(VIT, VIT_KW), ("resnet10t", {}), ("convnext_atto", {})])
def test_keys_and_pooled_features_are_timms(name: str, kw: dict) -> None:
    model = _timm_model(name, **kw)
    enc = _encoder(name, **kw)
    own = {k: v for k, v in model.state_dict().items()}
    trunk_keys = set(enc.state_dict())
    # the encoder's keys are timm's, minus the classifier
    assert trunk_keys <= set(own) and set(own) - trunk_keys <= {
        "head.weight", "head.bias", "fc.weight", "fc.bias", "head.fc.weight", "head.fc.bias"}
    enc.load_state_dict({k: own[k] for k in trunk_keys}, strict=True)
    x = _images(h=32 if name == VIT else 64, w=32 if name == VIT else 64)
    with torch.no_grad():
        got = enc(x)
    assert got.shape == (2, enc.feature_dim)
    assert torch.equal(got, _own_pooled(model, x))


def test_vit_maps_are_patch_grids_at_any_input_size() -> None:
    enc = _encoder(VIT, **VIT_KW)
    assert enc.dynamic_img_size
    x = _images(h=48, w=64)  # not the 32 x 32 it was built for
    with torch.no_grad():
        maps = enc.feature_maps(x)
        assert maps["pooled"].shape == (2, 192)
        assert maps["blocks.11"].shape == (2, 192, 6, 8)  # (B, C, H/8, W/8)
        assert torch.equal(maps["layer4"], maps["blocks.11"])
        assert torch.equal(maps["layer3"], maps["blocks.8"])  # 3/4 of the depth
        assert torch.equal(enc.feature_map(x, "layer3"), maps["blocks.8"])
        # the grid is the patch tokens, in raster order
        model = enc._timm_model
        tokens = model.forward_intermediates(x, indices=[11], output_fmt="NLC",
                                             intermediates_only=True)[0]
    assert torch.equal(maps["blocks.11"].flatten(2).transpose(1, 2), tokens)
    with pytest.raises(KeyError):
        enc.feature_map(x, "layer9")


def test_cnn_layer_aliases_follow_the_stride() -> None:
    enc = _encoder("resnet10t")
    x = _images(h=64, w=64)
    with torch.no_grad():
        for layer, side in (("layer1", 16), ("layer2", 8), ("layer3", 4), ("layer4", 2)):
            assert enc.feature_map(x, layer).shape[-1] == side, layer


def test_pool_block_reads_an_intermediate() -> None:
    enc = TimmEncoder(TimmParams(name=VIT, kwargs=VIT_KW, pool_block=5)).eval()
    x = _images()
    with torch.no_grad():
        assert torch.allclose(enc(x), enc.feature_map(x, "blocks.5").mean(dim=(-2, -1)))
    with pytest.raises(ComponentError, match="out of range"):
        TimmEncoder(TimmParams(name=VIT, kwargs=VIT_KW, pool_block=12))


def test_unknown_model_is_a_clear_error(registry) -> None:
    with pytest.raises(SslcError, match="timm has no model 'vit_smal_patch16_224'"):
        registry.create("encoder", {"type": "timm", "name": "vit_smal_patch16_224"})


def test_deep_copy_is_independent() -> None:
    """moco-queue's key encoder is a deep copy: it must run on its own weights."""
    enc = _encoder(VIT, **VIT_KW)
    twin = copy.deepcopy(enc)
    x = _images()
    with torch.no_grad():
        before = enc(x)
        twin.cls_token.add_(1.0)
        twin.blocks[0].attn.qkv.weight.mul_(2.0)
        assert torch.equal(enc(x), before)
        assert not torch.allclose(twin(x), before)


@pytest.mark.parametrize("name,kw", [(VIT, VIT_KW), ("resnet10t", {})])
def test_moco_queue_trains_a_timm_encoder(registry, name: str, kw: dict) -> None:
    from helpers import require_plugins

    require_plugins("moco-queue")  # the per-plugin session loads the timm plugin alone
    torch.manual_seed(0)
    enc = registry.create("encoder", {"type": "timm", "name": name, "kwargs": kw})
    obj = registry.create("objective", {"type": "moco-queue", "dim": 8, "queue_size": 16,
                                        "momentum": 0.9})
    obj.bind(enc)
    opt = torch.optim.SGD(obj.parameters(), lr=0.1)
    start = {k: v.clone() for k, v in obj.encoder.state_dict().items()}
    obj.train()
    for step in range(2):
        g = torch.Generator().manual_seed(step)
        batch = {"query": torch.randn(4, 3, 32, 32, generator=g),
                 "key": torch.randn(4, 3, 32, 32, generator=g), "index": torch.arange(4)}
        out = obj(batch)
        assert torch.isfinite(out.loss)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    changed = [k for k, v in obj.encoder.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, start[k])]
    assert changed and obj.encoder is enc


# --- checkpoints ---------------------------------------------------------------------------

def test_timm_vit_safetensors_loads_without_options(tmp_path: Path, registry) -> None:
    from safetensors.torch import save_file

    model = _timm_model(VIT, **VIT_KW)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    enc, report = load_encoder(path, registry=registry)
    assert report.arch == "timm" and report.encoder_config["name"] == VIT
    assert report.encoder_config["kwargs"] == {"patch_size": 8, "img_size": 32}
    assert not report.missing and report.ignored == ["head.bias", "head.weight"]
    x = _images()
    with torch.no_grad():
        assert torch.equal(enc(x), _own_pooled(model, x))


def test_vit_variants_are_inferred(tmp_path: Path, registry) -> None:
    """Mean-pooled (fc_norm), layer-scaled, register and qkv-bias-free ViTs."""
    kw = {**VIT_KW, "global_pool": "avg", "init_values": 1e-5, "reg_tokens": 2,
          "no_embed_class": True, "qkv_bias": False}
    model = _timm_model(VIT, **kw)
    path = tmp_path / "vit.pth"
    torch.save(model.state_dict(), path)
    enc, report = load_encoder(path, registry=registry)
    assert not report.missing and not report.unexpected
    x = _images()
    with torch.no_grad():
        assert torch.equal(enc(x), _own_pooled(model, x))


def test_arch_names_a_timm_model_the_weights_cannot(tmp_path: Path, registry) -> None:
    model = _timm_model("convnext_atto")
    path = tmp_path / "convnext.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    with pytest.raises(CheckpointError, match="cannot tell which encoder"):
        load_encoder(path, registry=registry)
    enc, report = load_encoder(path, arch="timm:convnext_atto", registry=registry)
    assert report.prefix == "module." and not report.missing
    x = _images(h=64, w=64)
    with torch.no_grad():
        assert torch.equal(enc(x), _own_pooled(model, x))


def _dino_vit(teacher: torch.nn.Module, student: torch.nn.Module) -> dict:
    """facebookresearch/dino main_dino.py with a ViT: the student is DDP-wrapped, the
    teacher (no batch norm) is not; both are MultiCropWrapper(backbone, DINOHead)."""
    def wrapper(prefix: str, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        trunk = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
        head = {"head.mlp.0.weight": torch.randn(16, 192), "head.mlp.0.bias": torch.randn(16),
                "head.last_layer.weight_g": torch.ones(32, 1),
                "head.last_layer.weight_v": torch.randn(32, 16)}
        return {**{f"{prefix}backbone.{k}": v for k, v in trunk.items()},
                **{prefix + k: v for k, v in head.items()}}

    return {"student": wrapper("module.", student), "teacher": wrapper("", teacher),
            "optimizer": torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))]).state_dict(),
            "epoch": 100, "dino_loss": {"center": torch.zeros(1, 32)},
            "args": argparse.Namespace(arch="vit_tiny", patch_size=8, out_dim=32,
                                       momentum_teacher=0.996, drop_path_rate=0.1)}


def test_dino_vit_teacher_by_default_student_by_key(tmp_path: Path, registry) -> None:
    teacher, student = _timm_model(VIT, seed=1, **VIT_KW), _timm_model(VIT, seed=2, **VIT_KW)
    path = tmp_path / "checkpoint.pth"
    torch.save(_dino_vit(teacher, student), path)
    x = _images()
    enc, report = load_encoder(path, registry=registry)
    assert report.prefix == "teacher.backbone." and not report.missing
    with torch.no_grad():
        assert torch.equal(enc(x), _own_pooled(teacher, x))
    enc, report = load_encoder(path, registry=registry, checkpoint_key="student")
    assert report.prefix == "student.module.backbone."
    with torch.no_grad():
        assert torch.equal(enc(x), _own_pooled(student, x))


def test_dinov2_layout(tmp_path: Path, registry) -> None:
    """facebookresearch/dinov2: block chunks, mask_token, register_tokens, and the class
    token's position embedding inside pos_embed; a full training checkpoint."""
    kw = {**VIT_KW, "init_values": 1e-5, "reg_tokens": 4, "no_embed_class": True}
    model = _timm_model(VIT, **kw)
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    cls_pos = torch.randn(1, 1, 192)
    dinov2: dict[str, torch.Tensor] = {"mask_token": torch.zeros(1, 192),
                                       "cls_token": sd.pop("cls_token") - cls_pos,
                                       "pos_embed": torch.cat([cls_pos, sd.pop("pos_embed")], 1),
                                       "register_tokens": sd.pop("reg_token")}
    for k, v in sd.items():  # 12 blocks in 4 FSDP chunks: blocks.CHUNK.INDEX.
        if k.startswith("blocks."):
            i = int(k.split(".")[1])
            k = f"blocks.{i // 3}.{i}." + k.split(".", 2)[2]
        dinov2[k] = v
    state = {**{f"teacher.backbone.{k}": v for k, v in dinov2.items()},
             **{f"student.backbone.{k}": v + 1 for k, v in dinov2.items()},
             "teacher.dino_head.mlp.0.weight": torch.randn(8, 192)}
    path = tmp_path / "model_0012499.rank_0.pth"
    torch.save({"model": state, "optimizer": {}, "iteration": 12499}, path)
    enc, report = load_encoder(path, registry=registry)
    assert report.format == "dinov2" and report.prefix == "teacher.backbone."
    assert not report.missing and not report.unexpected
    x = _images()
    with torch.no_grad():
        assert torch.allclose(enc(x), _own_pooled(model, x), atol=1e-5)


# --- end to end: `sslc probe` on a timm ViT --------------------------------------------------

def _write_got10k(root: Path) -> Path:
    """GOT-10k/train: three one-object sequences (two classes), covers 0..5, 60 x 80 frames."""
    import numpy as np
    from PIL import Image

    split = root / "GOT-10k" / "train"
    names = {"GOT-10k_Train_000001": "dog", "GOT-10k_Train_000002": "dog",
             "GOT-10k_Train_000003": "sea lion"}
    for s, (name, cls) in enumerate(names.items()):
        folder = split / name
        folder.mkdir(parents=True)
        rng = np.random.default_rng(s)
        for i in range(6):
            arr = rng.integers(0, 255, size=(60, 80, 3), dtype=np.uint8)
            Image.fromarray(arr).save(folder / f"{i + 1:08d}.jpg", quality=90)
        (folder / "groundtruth.txt").write_text("\n".join(
            f"{10 + i:.4f},{12:.4f},{40:.4f},{30:.4f}" for i in range(6)) + "\n")
        for label, values in (("cover", range(6)), ("absence", [0] * 6),
                              ("cut_by_image", [0] * 6)):
            (folder / f"{label}.label").write_text("\n".join(map(str, values)) + "\n")
        (folder / "meta_info.ini").write_text(
            f"[METAINFO]\nobject_class: {cls}\nmotion_class: walking\nresolution: (80, 60)\n")
    (split / "list.txt").write_text("\n".join(names) + "\n")
    return root


def test_probe_a_timm_vit_safetensors(sslc, tmp_path: Path, registry) -> None:
    import json

    import numpy as np
    import torchvision.transforms.functional as TF
    from helpers import oracle_ris
    from PIL import Image
    from safetensors.torch import save_file

    from ssl_core.measure.alldata import load_alldata

    if "got10k-occlusion" not in registry.names("invariance-probe"):
        pytest.skip("the got10k plugin is not registered")
    root = _write_got10k(tmp_path / "data")
    model = _timm_model(VIT, dynamic_img_size=True, **VIT_KW)  # takes the probe's 128 px
    ckpt = tmp_path / "vit_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))
    out = tmp_path / "alldata.pth"
    res = sslc("probe", "--checkpoint", str(ckpt), "--probe", "got10k-occlusion", "--data",
               str(root), "--workers", "0", "--no-cache", "--resamples", "0",
               "--save-features", str(out), "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["source"]["arch"] == "timm"
    [row] = doc["probes"]
    saved = load_alldata(out)
    assert saved.feat.shape == (18, 192)
    # every dumped row is the model's own pooled feature of its (cropped, resized) image
    xs = []
    for path, box in zip(saved.paths, saved.boxes, strict=True):
        img = Image.open(path).convert("RGB").crop(tuple(float(v) for v in box))
        x = TF.to_tensor(img.resize((128, 128), Image.BILINEAR))
        xs.append(TF.normalize(x, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]))
    ref = _own_pooled(model, torch.stack(xs)).numpy()
    np.testing.assert_allclose(saved.feat, ref, rtol=1e-3, atol=1e-4)
    # and the score is the independent reference's on the dump
    oracle = oracle_ris(saved.feat, saved.instance, saved.classes)
    assert row["top10"] == pytest.approx(oracle[10], abs=1e-9)


def test_probe_checkpoint_key_and_timm_arch(sslc, tmp_path: Path, registry) -> None:
    import json

    if "got10k-occlusion" not in registry.names("invariance-probe"):
        pytest.skip("the got10k plugin is not registered")
    root = _write_got10k(tmp_path / "data")
    teacher, student = _timm_model(VIT, seed=1, **VIT_KW), _timm_model(VIT, seed=2, **VIT_KW)
    ckpt = tmp_path / "checkpoint.pth"
    torch.save(_dino_vit(teacher, student), ckpt)
    base = ["probe", "--checkpoint", str(ckpt), "--probe", "got10k-occlusion", "--data",
            str(root), "--workers", "0", "--no-cache", "--resamples", "0", "--json"]
    by_default = json.loads(sslc(*base).out)
    assert by_default["source"]["load_report"]["prefix"] == "teacher.backbone."
    res = sslc(*base, "--checkpoint-key", "student", "--arch", f"timm:{VIT}")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["source"]["load_report"]["prefix"] == "student.module.backbone."
    assert doc["source"]["encoder_id"] != by_default["source"]["encoder_id"]
    res = sslc(*base, "--checkpoint-key", "ema")
    assert res.code == 2 and "no 'ema' entry" in res.err


def test_sslc_run_trains_a_tiny_vit_and_its_checkpoint_loads(sslc, tmp_path: Path,
                                                             registry) -> None:
    import yaml
    from helpers import require_plugins, tiny_train_recipe, write_images

    require_plugins("image-folder", "aggressive-crop", "moco-queue")
    write_images(tmp_path / "images", {"a": 8, "b": 8}, size=40)
    doc = yaml.safe_load(tiny_train_recipe("vit", tmp_path, sampler={"size": 32},
                                           objective={"momentum": 0.9}))
    doc["models"]["m"]["encoder"] = {"type": "timm", "name": VIT, "kwargs": VIT_KW}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(doc))
    res = sslc("run", str(recipe), "--stages", "train", "--run-dir", str(tmp_path / "run"),
               "--quiet")
    assert res.code == 0, res.err
    enc, report = load_encoder(tmp_path / "run" / "models" / "m", registry=registry)
    assert report.format == "sslc" and not report.missing
    assert report.encoder_config == {"type": "timm", "name": VIT, "kwargs": VIT_KW}
    fresh = _encoder(VIT, **VIT_KW)  # training moved the weights away from any init
    assert not torch.equal(enc.state_dict()["blocks.0.attn.qkv.weight"],
                           fresh.state_dict()["blocks.0.attn.qkv.weight"])


def test_random_baseline_names_a_timm_model(registry) -> None:
    from ssl_core.models.source import random_encoder

    a, source = random_encoder(f"random:timm:{VIT}", registry)
    b, _ = random_encoder(f"random:timm:{VIT}", registry)
    assert isinstance(a, TimmEncoder) and a.name == VIT and source["seed"] == 0
    assert torch.equal(a.state_dict()["blocks.3.mlp.fc1.weight"],
                       b.state_dict()["blocks.3.mlp.fc1.weight"])
