"""The ResNet encoders: torchvision-compatible keys, pooled features, feature maps."""

from __future__ import annotations

import pytest
import torch
import torchvision

from ssl_core.errors import CheckpointError, ComponentError
from ssl_core.plugin.registry import Registry, make_spec
from sslc_plugins import resnet


@pytest.mark.parametrize("arch,dim", [("resnet18", 512), ("resnet50", 2048)])
def test_state_dict_keys_are_torchvision_trunk_keys(arch: str, dim: int) -> None:
    enc = resnet.RESNETS[arch]()
    tv = getattr(torchvision.models, arch)(weights=None)
    expected = [k for k in tv.state_dict() if not k.startswith("fc.")]
    assert list(enc.state_dict()) == expected
    assert enc.feature_dim == dim
    # torchvision weights (minus fc) load strictly: the official MoCo mapping relies on it
    enc.load_state_dict({k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")})
    tv.eval()
    enc.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = torch.flatten(tv.avgpool(tv.layer4(tv.layer3(tv.layer2(tv.layer1(
            tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))))))), 1)
        torch.testing.assert_close(enc(x), ref)


@pytest.mark.parametrize("size", [32, 64])
def test_small_input_shapes(size: int) -> None:
    enc = resnet.RESNETS["resnet18"](resnet.ResNetParams(small_input=True))
    assert tuple(enc.conv1.weight.shape) == (64, 3, 3, 3)
    assert isinstance(enc.maxpool, torch.nn.Identity)
    enc.eval()
    n = 2 if size == 32 else 1
    x = torch.randn(n, 3, size, size)
    with torch.no_grad():
        assert enc(x).shape == (n, 512)
        maps = enc.feature_maps(x)
    assert list(maps) == ["layer1", "layer2", "layer3", "layer4", "pooled"]
    assert maps["layer1"].shape == (n, 64, size, size)  # no stride in the stem
    assert maps["layer3"].shape == (n, 256, size // 4, size // 4)
    assert maps["layer4"].shape == (n, 512, size // 8, size // 8)
    with torch.no_grad():
        torch.testing.assert_close(maps["pooled"], enc(x))


def test_standard_stem_downsamples_32x() -> None:
    enc = resnet.RESNETS["resnet18"]()
    maps = enc.feature_maps(torch.randn(1, 3, 64, 64))
    assert maps["layer3"].shape == (1, 256, 4, 4)
    assert maps["layer4"].shape == (1, 512, 2, 2)


def test_one_feature_map_is_the_same_map_without_the_later_stages() -> None:
    enc = resnet.RESNETS["resnet18"]().eval()
    x = torch.randn(2, 3, 64, 64)
    calls: list[str] = []
    enc.layer4.register_forward_hook(lambda *_: calls.append("layer4"))
    with torch.no_grad():
        maps = enc.feature_maps(x)
        calls.clear()
        for name in ("layer1", "layer2", "layer3"):
            assert torch.equal(enc.feature_map(x, name), maps[name])
        assert calls == [], "no stage after the asked one runs"
        assert torch.equal(enc.feature_map(x, "pooled"), maps["pooled"])
        with pytest.raises(KeyError):
            enc.feature_map(x, "layer5")


def test_zero_init_residual() -> None:
    enc = resnet.RESNETS["resnet18"](resnet.ResNetParams(small_input=True, zero_init_residual=True))
    assert torch.count_nonzero(enc.layer1[0].bn2.weight) == 0
    enc = resnet.RESNETS["resnet18"](resnet.ResNetParams(small_input=True))
    assert torch.count_nonzero(enc.layer1[0].bn2.weight) > 0


def test_infer_params_tells_depths_apart() -> None:
    for arch, cls in resnet.RESNETS.items():
        state = cls(resnet.ResNetParams(small_input=arch == "resnet18")).state_dict()
        matches = {a for a, c in resnet.RESNETS.items() if c.infer_params(state) is not None}
        assert matches == {arch}
        assert cls.infer_params(state) == {"small_input": arch == "resnet18"}
    assert resnet.ResNet50.infer_params({"conv1.weight": torch.zeros(1)}) is None


def test_torchvision_export_loads_strictly() -> None:
    enc = resnet.ResNet18()
    out = resnet.TorchvisionFormat().export(enc.state_dict(), enc, {"type": "resnet18"})
    torchvision.models.resnet18().load_state_dict(out)
    with pytest.raises(CheckpointError, match="small_input"):
        small = resnet.ResNet18(resnet.ResNetParams(small_input=True))
        resnet.TorchvisionFormat().export(small.state_dict(), small, {"type": "resnet18"})


def test_registered_through_the_hook() -> None:
    reg = Registry()

    def register(name, factory, params=None, summary=""):
        reg.add(make_spec("encoder", "resnet", None, name, factory, params, summary))

    resnet.register_encoders(register=register)
    assert reg.names("encoder") == ["resnet101", "resnet18", "resnet34", "resnet50"]
    enc = reg.create("encoder", {"type": "resnet18", "small_input": True})
    assert enc(torch.randn(1, 3, 32, 32)).shape == (1, 512)
    with pytest.raises(ComponentError, match="unknown parameter"):
        reg.create("encoder", {"type": "resnet18", "smal_input": True})


def test_keeps_the_encoder_contract() -> None:
    """The contract kit's checks, as a third-party encoder's tests would run them."""
    from ssl_core.testing import (
        check_encoder,
        check_params_reject_unknown_keys,
        check_registers_cleanly,
        fresh_host,
    )

    check_registers_cleanly(resnet, "resnet")
    registry = fresh_host(resnet, "resnet").registry
    for arch in registry.names("encoder"):
        check_params_reject_unknown_keys("encoder", arch, registry=registry)
    check_encoder(registry.create("encoder", {"type": "resnet18", "small_input": True}), image_size=16)
