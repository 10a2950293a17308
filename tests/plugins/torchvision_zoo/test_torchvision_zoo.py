"""The torchvision-zoo encoder against torchvision's own models and checkpoints."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torchvision

from ssl_core.errors import SslcError
from ssl_core.models.checkpoints import load_encoder
from ssl_core.plugin.host import get_registry
from sslc_plugins.torchvision_zoo import TorchvisionZooEncoder, TorchvisionZooParams


@pytest.fixture(scope="module")
def registry():
    reg = get_registry()
    if "torchvision" not in reg.names("encoder"):
        pytest.skip("the built-in 'torchvision-zoo' encoder plugin is not registered")
    return reg


def _images(n: int = 2, side: int = 64) -> torch.Tensor:
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(0))


def _model(name: str, seed: int = 0, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torchvision.models.get_model(name, weights=None, **kw).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def _encoder(name: str, **kw) -> TorchvisionZooEncoder:
    return TorchvisionZooEncoder(TorchvisionZooParams(name=name, kwargs=kw)).eval()


@pytest.mark.parametrize("name,pre_logits", [
    ("resnet18", lambda m, x: torch.flatten(m.avgpool(torch.nn.Sequential(
        *list(m.children())[:-2])(x)), 1)),
    # MobileNetV3's pre-logits: the hidden layer (Linear, Hardswish, Dropout) before the last
    ("mobilenet_v3_small", lambda m, x: m.classifier[:-1](torch.flatten(m.avgpool(
        m.features(x)), 1))),
])
def test_pooled_features_are_the_classifiers_input(name: str, pre_logits) -> None:
    model = _model(name)
    enc = _encoder(name)
    own = model.state_dict()
    assert set(enc.state_dict()) == {k for k in own if not k.startswith(enc.head_name + ".")}
    enc.load_state_dict({k: own[k] for k in enc.state_dict()})
    x = _images()
    with torch.no_grad():
        assert torch.equal(enc(x), pre_logits(model, x))
    assert enc.feature_dim == enc(x).shape[1]


def test_cnn_maps_and_layer_aliases() -> None:
    enc = _encoder("mobilenet_v3_small")
    x = _images()
    with torch.no_grad():
        maps = enc.feature_maps(x)
        for layer, side in (("layer1", 16), ("layer2", 8), ("layer3", 4), ("layer4", 2)):
            assert maps[layer].shape[-1] == side, layer
            assert torch.equal(enc.feature_map(x, layer), maps[layer])
        assert torch.equal(maps["features.12"], maps["layer4"])
    with pytest.raises(KeyError):
        enc.feature_map(x, "layer7")


@pytest.mark.slow  # a ViT-B (86M weights) written and read back: ~20 s on 2 cores
def test_vit_checkpoint_inferred_grid_maps_and_resize(tmp_path: Path, registry) -> None:
    model = _model("vit_b_16", image_size=32)
    path = tmp_path / "vit_b_16.pth"
    torch.save(model.state_dict(), path)
    enc, report = load_encoder(path, registry=registry)
    assert report.arch == "torchvision"
    assert report.encoder_config == {"type": "torchvision", "name": "vit_b_16",
                                     "kwargs": {"image_size": 32}}
    assert not report.missing and report.unexpected == ["heads.head.bias", "heads.head.weight"]
    x = _images(side=32)
    with torch.no_grad():
        model.heads = torch.nn.Identity()
        assert torch.equal(enc(x), model(x))  # the class token after the final norm
        maps = enc.feature_maps(x)
        assert maps["layer4"].shape == (2, 768, 2, 2)  # 32 / 16 patches a side
        last = maps["encoder.layers.encoder_layer_11"]
        assert torch.equal(maps["layer3"], maps["encoder.layers.encoder_layer_8"])
        # a probe's 48 x 48 images are resized to the ViT's 32 x 32
        assert torch.allclose(enc(_images(side=48)), enc(torch.nn.functional.interpolate(
            _images(side=48), size=(32, 32), mode="bilinear", align_corners=False)))
    assert last.shape == (2, 768, 2, 2)


def test_arch_names_a_builder(tmp_path: Path, registry) -> None:
    model = _model("mobilenet_v3_small")
    path = tmp_path / "mnv3.pth"
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()},
                "epoch": 600}, path)
    enc, report = load_encoder(path, arch="torchvision:mobilenet_v3_small", registry=registry)
    assert not report.missing and report.prefix == "module."
    x = _images()
    with torch.no_grad():
        model.classifier[-1] = torch.nn.Identity()
        assert torch.equal(enc(x), model(x))


def test_deep_copy_and_training_mode() -> None:
    enc = _encoder("resnet18")
    twin = copy.deepcopy(enc).train()
    x = _images()
    with torch.no_grad():
        before = enc(x)
        twin.conv1.weight.mul_(2.0)
        assert torch.equal(enc(x), before)
        assert not enc._tv_model.training and twin._tv_model.training


def test_unknown_builder_is_a_clear_error(registry) -> None:
    with pytest.raises(SslcError, match="no model builder 'convnext_tiyn'"):
        registry.create("encoder", {"type": "torchvision", "name": "convnext_tiyn"})
