"""ResNet trunks from torchvision, with state-dict keys that match torchvision's.

The keys are torchvision's own minus the classifier (`conv1.weight`, `bn1.*`,
`layer1.0.conv1.weight`, ...), so an official MoCo checkpoint maps onto this trunk by
stripping a prefix (`module.encoder_q.conv1.weight` -> `conv1.weight`), and torchvision
weights load directly. Nothing is ever downloaded (`weights=None`).

This plugin also owns what sslc knows about ResNet checkpoints: the anchor keys that
locate a trunk in any file, the block counts that tell the depth apart, and the
`torchvision` checkpoint layout (read and written by `sslc export`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torchvision
from torch import Tensor, nn

from ssl_core import CheckpointError, CheckpointFormat, Encoder, Params, Register, hookimpl

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

    arch: ClassVar[str]
    #: residual blocks per stage, and whether they are bottlenecks: what tells depths apart
    blocks: ClassVar[tuple[int, int, int, int]]
    bottleneck: ClassVar[bool]
    anchor_keys = ("conv1.weight", "layer1.0.conv1.weight")
    head_prefixes = ("fc.",)

    def __init__(self, params: ResNetParams | None = None) -> None:
        super().__init__()
        p = params or ResNetParams()
        net = getattr(torchvision.models, self.arch)(weights=None,
                                                     zero_init_residual=p.zero_init_residual)
        self.small_input = p.small_input
        if p.small_input:
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

    @classmethod
    def infer_params(cls, state: Mapping[str, Tensor]) -> dict[str, Any] | None:
        """This depth's params when the block counts match (small_input from conv1's kernel).

        A partial trunk (stages missing) matches the depths it is consistent with."""
        if not all(k in state for k in cls.anchor_keys):
            return None
        if ("layer1.0.conv3.weight" in state) != cls.bottleneck:
            return None
        for stage, expected in zip(_STAGES, cls.blocks, strict=True):
            idx = {int(m.group(1)) for k in state if (m := re.match(rf"{stage}\.(\d+)\.", k))}
            if idx and max(idx) + 1 != expected:
                return None
        conv1 = state["conv1.weight"]
        return {"small_input": bool(conv1.dim() == 4 and conv1.shape[-1] == 3)}

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

    def feature_map(self, x: Tensor, layer: str) -> Tensor:
        """One stage's map without running the stages after it."""
        if layer not in _STAGES:
            return self.feature_maps(x)[layer]
        x = self._stem(x)
        for name in _STAGES[:_STAGES.index(layer) + 1]:
            x = getattr(self, name)(x)
        return x

    def extra_repr(self) -> str:
        return f"arch={self.arch}, small_input={self.small_input}, feature_dim={self.feature_dim}"


class ResNet18(ResNetEncoder):
    arch, blocks, bottleneck = "resnet18", (2, 2, 2, 2), False


class ResNet34(ResNetEncoder):
    arch, blocks, bottleneck = "resnet34", (3, 4, 6, 3), False


class ResNet50(ResNetEncoder):
    arch, blocks, bottleneck = "resnet50", (3, 4, 6, 3), True


class ResNet101(ResNetEncoder):
    arch, blocks, bottleneck = "resnet101", (3, 4, 23, 3), True


RESNETS: dict[str, type[ResNetEncoder]] = {
    cls.arch: cls for cls in (ResNet18, ResNet34, ResNet50, ResNet101)
}


class TorchvisionFormat(CheckpointFormat):
    """A supervised torchvision ResNet state dict: trunk keys at the top level beside `fc.*`."""

    def __init__(self, params: Params | None = None) -> None:
        pass

    def select(self, state: Mapping[str, Tensor], meta: Mapping[str, Any]
               ) -> tuple[dict[str, Tensor], str] | None:
        needed = (*ResNetEncoder.anchor_keys, "fc.weight")
        return (dict(state), "") if all(k in state for k in needed) else None

    def export(self, trunk: Mapping[str, Tensor], encoder: Encoder,
               encoder_config: Mapping[str, Any]) -> dict[str, Any]:
        """The trunk plus torchvision's freshly initialised 1000-way `fc` (seed 0), so the
        file loads strictly into `torchvision.models.<arch>()`; the head is untrained."""
        if not isinstance(encoder, ResNetEncoder):
            raise CheckpointError(f"the torchvision layout holds ResNets, not "
                                  f"{type(encoder).__name__}", "export with another --format")
        if encoder.small_input:
            raise CheckpointError("a small_input ResNet (3x3 conv1, no max-pool) has no "
                                  "torchvision counterpart",
                                  "export with --format moco, or give sslc commands the run's "
                                  "own RUN_DIR/models/NAME as it is")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            fc = getattr(torchvision.models, encoder.arch)(weights=None).fc
        return {**{k: v.detach().cpu() for k, v in trunk.items()},
                "fc.weight": fc.weight.detach(), "fc.bias": fc.bias.detach()}


#: lightly's backbone is `nn.Sequential(*list(resnet.children())[:-1])`: children by index
_SEQUENTIAL_CHILDREN = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3",
                        "7": "layer4"}


class LightlyFormat(CheckpointFormat):
    """lightly's ResNet backbone, a Sequential of torchvision's children without `fc`
    (`backbone.0.weight` = conv1, `backbone.1.*` = bn1, `backbone.4.0.conv1.weight` =
    layer1.0.conv1), renamed onto torchvision's keys; the shortest such prefix wins
    (`backbone.` over `backbone_momentum.`)."""

    def __init__(self, params: Params | None = None) -> None:
        pass

    def select(self, state: Mapping[str, Tensor], meta: Mapping[str, Any]
               ) -> tuple[dict[str, Tensor], str] | None:
        anchor = "4.0.conv1.weight"
        found = [k[: -len(anchor)] for k in state if k.endswith(anchor)]
        found = [p for p in found if (p == "" or p.endswith(".")) and p + "1.running_mean" in state
                 and state.get(p + "0.weight", torch.empty(0)).dim() == 4]
        if not found:
            return None
        prefix = min(found, key=lambda p: (len(p), p))
        out: dict[str, Tensor] = {}
        for k, v in state.items():
            if k.startswith(prefix):
                idx, _, rest = k[len(prefix):].partition(".")
                if idx in _SEQUENTIAL_CHILDREN and rest:
                    out[f"{_SEQUENTIAL_CHILDREN[idx]}.{rest}"] = v
        return out, prefix


@hookimpl
def register_encoders(register: Register) -> None:
    for arch, cls in RESNETS.items():
        dim = 512 if not cls.bottleneck else 2048
        paper = " (the paper's)" if arch == "resnet50" else ""
        register(arch, cls, params=ResNetParams,
                 summary=f"torchvision {arch.replace('resnet', 'ResNet-')} trunk, "
                         f"{dim}-d pooled features{paper}")


@hookimpl
def register_checkpoint_formats(register: Register) -> None:
    register("torchvision", TorchvisionFormat,
             summary="torchvision ResNet state dict (trunk + fc), e.g. supervised ImageNet weights")
    register("lightly", LightlyFormat,
             summary="lightly's Sequential ResNet backbone (backbone.0.weight, backbone.4.0...)")
