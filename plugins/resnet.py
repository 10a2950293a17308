"""ResNet trunks from torchvision, with state-dict keys that match torchvision's.

The keys are torchvision's own minus the classifier (`conv1.weight`, `bn1.*`,
`layer1.0.conv1.weight`, ...), so an official MoCo checkpoint maps onto this trunk by
stripping a prefix (`module.encoder_q.conv1.weight` -> `conv1.weight`), and torchvision
weights load directly. Nothing is ever downloaded (`weights=None`).
"""

from __future__ import annotations

from typing import Any

import torch
import torchvision
from pydantic import ValidationError
from torch import Tensor, nn

from ssl_core import Encoder, Params, hookimpl
from ssl_core.errors import ComponentError
from ssl_core.registry import format_validation_error

#: architecture name -> pooled feature dimension
ARCHS: dict[str, int] = {"resnet18": 512, "resnet50": 2048}

_STAGES = ("layer1", "layer2", "layer3", "layer4")


class ResNetParams(Params):
    """Parameters shared by the ResNet encoders."""

    #: 3x3 stride-1 conv1 and no max-pool, for tiny (e.g. 32x32 / 64x64) CPU images.
    #: Changes conv1's weight shape: such weights are not torchvision-compatible.
    small_input: bool = False
    #: zero-init the last BN of each residual block (torchvision's option)
    zero_init_residual: bool = False


class ResNetEncoder(Encoder):
    """A torchvision ResNet without its classifier; returns globally pooled features."""

    def __init__(self, arch: str = "resnet50", small_input: bool = False,
                 zero_init_residual: bool = False) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ComponentError(f"unknown ResNet architecture {arch!r}",
                                 f"available: {', '.join(ARCHS)}")
        net = getattr(torchvision.models, arch)(weights=None, zero_init_residual=zero_init_residual)
        self.arch = arch
        self.small_input = small_input
        if small_input:
            net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
            net.maxpool = nn.Identity()
        # Same attribute names as torchvision so the state-dict keys are identical.
        self.conv1 = net.conv1
        self.bn1 = net.bn1
        self.relu = net.relu
        self.maxpool = net.maxpool
        self.layer1 = net.layer1
        self.layer2 = net.layer2
        self.layer3 = net.layer3
        self.layer4 = net.layer4
        self.avgpool = net.avgpool
        self.feature_dim = net.fc.in_features

    def _stem(self, x: Tensor) -> Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x: Tensor) -> Tensor:
        x = self._stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def feature_maps(self, x: Tensor) -> dict[str, Tensor]:
        """Each stage's output map (layer3 feeds ROI pooling) and the pooled vector."""
        maps: dict[str, Tensor] = {}
        x = self._stem(x)
        for name in _STAGES:
            x = getattr(self, name)(x)
            maps[name] = x
        maps["pooled"] = torch.flatten(self.avgpool(x), 1)
        return maps

    def extra_repr(self) -> str:
        return f"arch={self.arch}, small_input={self.small_input}, feature_dim={self.feature_dim}"


def build_encoder(arch: str, **params: Any) -> ResNetEncoder:
    """Build `resnet18` / `resnet50` from keyword parameters, validated like a recipe's."""
    if arch not in ARCHS:
        raise ComponentError(f"unknown ResNet architecture {arch!r}",
                             f"available: {', '.join(ARCHS)}")
    try:
        p = ResNetParams(**params)
    except ValidationError as err:
        raise ComponentError(
            f"bad parameters for encoder {arch!r}:\n  {format_validation_error(err, arch)}",
            f"parameters of {arch!r}: {', '.join(ResNetParams.model_fields)}",
        ) from None
    return ResNetEncoder(arch, **p.model_dump())


def _factory(arch: str) -> Any:
    def build(params: ResNetParams) -> ResNetEncoder:
        return ResNetEncoder(arch, **params.model_dump())

    build.__name__ = f"build_{arch}"
    return build


@hookimpl
def register_encoders(register: Any) -> None:
    register("resnet18", _factory("resnet18"), params=ResNetParams,
             summary="torchvision ResNet-18 trunk, 512-d pooled features")
    register("resnet50", _factory("resnet50"), params=ResNetParams,
             summary="torchvision ResNet-50 trunk, 2048-d pooled features (the paper's)")
