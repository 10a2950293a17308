"""Any torchvision classification builder (`torchvision.models.list_models()`) as an encoder.

The feature a probe reads is the pooled pre-logits: the model's own forward with its
last `nn.Linear` (the classifier) replaced by the identity, so it is what feeds the
classifier (ViT: the class token after the final norm; ConvNeXt: the normalised pooled
map; MobileNetV3: the hidden layer before the last Linear). The state-dict keys are
torchvision's minus that classifier, so torchvision files load as they are. Feature
maps are the stages' outputs, caught by forward hooks (ViT blocks as patch grids).
Nothing is ever downloaded (`weights=None`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
import torchvision
from pydantic import Field
from torch import Tensor, nn

from ssl_core import ComponentError, Encoder, Params, Register, hookimpl


class TorchvisionZooParams(Params):
    """Which torchvision builder, with which arguments."""

    name: str = Field(..., description="torchvision.models builder, e.g. convnext_tiny, vit_b_16, "
                                       "efficientnet_b0")
    kwargs: dict[str, Any] = Field(default_factory=dict,
                                   description="extra builder arguments, e.g. {image_size: 32} "
                                               "for a ViT")


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the wanted map is out."""


def _stage_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules whose outputs are the model's intermediate maps, in forward order."""
    if isinstance(model, torchvision.models.VisionTransformer):
        return [(f"encoder.layers.{n}", m) for n, m in model.encoder.layers.named_children()]
    if all(hasattr(model, f"layer{i}") for i in range(1, 5)):  # ResNet family
        return [(f"layer{i}", getattr(model, f"layer{i}")) for i in range(1, 5)]
    for container in ("trunk_output", "features", "blocks", "layers"):
        seq = getattr(model, container, None)
        if isinstance(seq, nn.Sequential | nn.ModuleList):
            return [(f"{container}.{n}", m) for n, m in seq.named_children()]
    return []


class TorchvisionZooEncoder(Encoder):
    """A torchvision classifier without its last Linear; `forward` gives pre-logits."""

    _tv_model: Any

    def __init__(self, params: TorchvisionZooParams) -> None:
        super().__init__()
        names = torchvision.models.list_models(module=torchvision.models)
        if params.name not in names:
            close = [n for n in names if n.split("_")[0] == params.name.split("_")[0]][:8]
            raise ComponentError(f"torchvision has no model builder {params.name!r}",
                                 "name one from torchvision.models.list_models()"
                                 + (f", e.g. {', '.join(close)}" if close else ""))
        try:
            model = torchvision.models.get_model(params.name, weights=None, **params.kwargs)
        except (TypeError, ValueError) as exc:
            raise ComponentError(f"torchvision builder {params.name!r} rejects its kwargs: "
                                 f"{exc}", "check the encoder's kwargs") from None
        linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ComponentError(f"torchvision model {params.name!r} has no Linear classifier",
                                 "use a classification builder")
        head, last = linears[-1]
        parent = model.get_submodule(head.rpartition(".")[0]) if "." in head else model
        setattr(parent, head.rpartition(".")[2], nn.Identity())
        self.head_name = head
        self.feature_dim = int(last.in_features)
        # torchvision's modules and tensors become this module's (keys are torchvision's)
        object.__setattr__(self, "_tv_model", model)
        for name, child in model.named_children():
            self.add_module(name, child)
        for name, param in model.named_parameters(recurse=False):
            self.register_parameter(name, param)
        self.name = params.name
        self._stages = _stage_modules(model)
        self._vit = isinstance(model, torchvision.models.VisionTransformer)
        self._nhwc = isinstance(model, torchvision.models.SwinTransformer)

    def train(self, mode: bool = True) -> TorchvisionZooEncoder:
        super().train(mode)
        self._tv_model.training = mode
        return self

    def _fit(self, x: Tensor) -> Tensor:
        """A torchvision ViT takes only its `image_size`: other inputs are resized to it
        (bilinear); the convolutional models take any size."""
        if self._vit:
            size = int(self._tv_model.image_size)
            if tuple(x.shape[-2:]) != (size, size):
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return x

    def forward(self, x: Tensor) -> Tensor:
        out = self._tv_model(self._fit(x))
        if isinstance(out, tuple):  # Inception / GoogLeNet return aux logits when training
            out = out[0]
        return out.flatten(1)

    def _grid(self, y: Tensor, x: Tensor) -> Tensor:
        """A stage output as (B, C, h, w): ViT tokens (class token dropped) or NHWC maps."""
        if self._vit:
            tokens = y[:, 1:]
            side = int(self._tv_model.image_size) // int(self._tv_model.patch_size)
            return tokens.transpose(1, 2).reshape(y.shape[0], y.shape[2], side, side)
        if self._nhwc:
            return y.permute(0, 3, 1, 2)
        return y

    def _run(self, x: Tensor, stop_at: str | None) -> dict[str, Tensor]:
        x = self._fit(x)
        maps: dict[str, Tensor] = {}

        def catch(name: str) -> Any:
            def hook(module: nn.Module, args: Any, out: Tensor) -> None:
                maps[name] = self._grid(out, x)
                if name == stop_at:
                    raise _Stop

            return hook

        handles = [m.register_forward_hook(catch(n)) for n, m in self._stages]
        try:
            self._tv_model(x)
        except _Stop:
            pass
        finally:
            for h in handles:
                h.remove()
        return maps

    def _aliases(self, x: Tensor) -> dict[str, str]:
        """layer1..4 as in a ResNet: for ViTs the blocks at 1/4, 1/2, 3/4 and full depth;
        otherwise the last stage at stride 4, 8, 16 and 32 of this input (found with one
        pass through the stages)."""
        names = [n for n, _ in self._stages]
        if not names:
            return {}
        if self._vit:
            return {f"layer{k}": names[max(0, math.ceil(len(names) * k / 4) - 1)]
                    for k in range(1, 5)}
        shapes = {n: m.shape for n, m in self._run(x[:1], None).items()}
        size = self._fit(x).shape[-1]
        out: dict[str, str] = {}
        for n in names:
            if n in shapes and len(shapes[n]) == 4:
                stride = round(size / shapes[n][-1])
                for k in range(1, 5):
                    if stride == 2 ** (k + 1):
                        out[f"layer{k}"] = n
        return out

    def feature_maps(self, x: Tensor) -> dict[str, Tensor]:
        """Every stage's map by module path, layer1..4 aliases and the pooled vector."""
        maps = self._run(x, None)
        for alias, name in self._aliases(x).items():
            maps.setdefault(alias, maps[name])
        maps["pooled"] = self.forward(x)
        return maps

    def feature_map(self, x: Tensor, layer: str) -> Tensor:
        """One stage's map, stopping the network after it."""
        if layer == "pooled":
            return self.forward(x)
        names = [n for n, _ in self._stages]
        name = layer if layer in names else self._aliases(x).get(layer)
        if name is None:
            raise KeyError(layer)
        return self._run(x, name)[name]

    @classmethod
    def infer_params(cls, state: Mapping[str, Tensor]) -> dict[str, Any] | None:
        """A torchvision ViT from its weights: width, depth and patch size name the builder
        (vit_b_16, vit_b_32, vit_l_16, vit_l_32, vit_h_14), the position embedding the
        image size. Other architectures are named with `--arch torchvision:NAME`."""
        proj = state.get("conv_proj.weight")
        pos = state.get("encoder.pos_embedding")
        if proj is None or pos is None or "class_token" not in state:
            return None
        depth = 1 + max((int(k.split(".")[2].rpartition("_")[2]) for k in state
                         if k.startswith("encoder.layers.encoder_layer_")), default=-1)
        size = {(768, 12): "b", (1024, 24): "l", (1280, 32): "h"}.get((int(proj.shape[0]), depth))
        patch = int(proj.shape[-1])
        name = f"vit_{size}_{patch}"
        if size is None or name not in torchvision.models.list_models(module=torchvision.models):
            return None
        side = math.isqrt(int(pos.shape[1]) - 1)
        kwargs = {} if side * patch == 224 else {"image_size": side * patch}
        return {"name": name, "kwargs": kwargs}

    def extra_repr(self) -> str:
        return f"name={self.name}, feature_dim={self.feature_dim}"


@hookimpl
def register_encoders(register: Register) -> None:
    register("torchvision", TorchvisionZooEncoder, params=TorchvisionZooParams,
             summary="any torchvision.models classification builder (ConvNeXt, ViT, "
                     "EfficientNet, ...); pooled pre-logits")
