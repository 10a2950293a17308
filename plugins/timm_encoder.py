"""Any `timm.create_model` network as an sslc encoder, with timm's own state-dict keys.

The feature a probe reads is the model's pooled pre-logits (`forward_features` then
`forward_head(pre_logits=True)`): the CLS token or the mean of the patch tokens, as
the model itself defines it. Feature maps are timm's intermediates
(`forward_intermediates`, NCHW), so a ViT's patch tokens come back as a
(B, C, H/patch, W/patch) grid. Nothing is ever downloaded (`pretrained=False`).

The encoder's state-dict keys are exactly the timm model's minus its classifier
(`cls_token`, `patch_embed.proj.weight`, `blocks.0.attn.qkv.weight`, ...), so a timm
checkpoint (or a DINO / MoCo v3 / MAE ViT, which use the same names) loads as it is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from ssl_core import CheckpointFormat, ComponentError, Encoder, Params, Register, hookimpl


class TimmParams(Params):
    """Which timm model, and which of its features a probe reads."""

    #: a `timm.list_models()` name, e.g. vit_small_patch16_224, convnext_tiny, resnet50
    name: str = Field(..., description="timm model name (timm.list_models()), e.g. "
                                       "vit_small_patch16_224")
    #: extra keyword arguments for timm.create_model (e.g. patch_size, img_size)
    kwargs: dict[str, Any] = Field(default_factory=dict,
                                   description="extra timm.create_model arguments, e.g. "
                                               "{patch_size: 8, img_size: 32}")
    #: pool this intermediate (timm's index; negative counts from the end) instead of the head
    pool_block: int | None = Field(None, description="read pooled features from this "
                                   "intermediate block/stage (spatial mean of its map) "
                                   "instead of the model's pre-logits")
    #: accept any input size (ViTs interpolate their position embedding); null = where supported
    dynamic_img_size: bool | None = Field(None, description="let a ViT take any input size; "
                                          "null: on where the model supports it")


_VIT_SIZES = {(192, 12): "vit_tiny", (384, 12): "vit_small", (768, 12): "vit_base",
              (1024, 24): "vit_large", (1280, 32): "vit_huge", (1536, 40): "vit_giant"}
_VIT_HEADS = {1280: 16, 1536: 24}  # sizes whose head dimension is not 64


def _create(name: str, kwargs: Mapping[str, Any], dynamic: bool | None) -> tuple[Any, bool]:
    import timm

    if name not in timm.list_models():
        close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
        raise ComponentError(f"timm has no model {name!r}",
                             "name one from timm.list_models()"
                             + (f", e.g. {', '.join(close)}" if close else ""))
    args = {"pretrained": False, "num_classes": 0, **kwargs}
    if dynamic is not False:
        try:
            return timm.create_model(name, dynamic_img_size=True, **args), True
        except TypeError:
            if dynamic:
                raise ComponentError(f"timm model {name!r} does not support dynamic_img_size",
                                     "set dynamic_img_size: false (inputs are then resized "
                                     "to the model's image size)") from None
    try:
        return timm.create_model(name, **args), False
    except TypeError as exc:
        raise ComponentError(f"timm.create_model({name!r}) rejects its kwargs: {exc}",
                             "check the encoder's kwargs against the timm model") from None


class TimmEncoder(Encoder):
    """A timm network without its classifier; `forward` gives its pooled pre-logits."""

    #: the ViT keys that let sslc infer a timm ViT from a checkpoint's weights
    anchor_keys = ("patch_embed.proj.weight", "blocks.0.attn.qkv.weight")
    head_prefixes = ("head.weight", "head.bias", "head.fc.", "fc.weight", "fc.bias",
                     "classifier.")

    _timm_model: Any
    layer_aliases: ClassVar[tuple[str, ...]] = ("layer1", "layer2", "layer3", "layer4")

    def __init__(self, params: TimmParams) -> None:
        super().__init__()
        model, dynamic = _create(params.name, params.kwargs, params.dynamic_img_size)
        # timm's own modules and tensors become this module's, so the state-dict keys are
        # timm's; the model object is kept (unregistered) to run its forward methods
        object.__setattr__(self, "_timm_model", model)
        for name, child in model.named_children():
            self.add_module(name, child)
        for name, param in model.named_parameters(recurse=False):
            self.register_parameter(name, param)
        for name, buf in model.named_buffers(recurse=False):
            self.register_buffer(name, buf, persistent=name not in
                                 model._non_persistent_buffers_set)
        self.name = params.name
        self.pool_block = params.pool_block
        self.dynamic_img_size = dynamic
        info = list(getattr(model, "feature_info", None) or [])
        self._maps = [str(f["module"]) for f in info]
        self._reductions = [int(f.get("reduction", 0)) for f in info]
        self._fixed_size: tuple[int, int] | None = None
        embed = getattr(model, "patch_embed", None)
        if not dynamic and embed is not None and getattr(embed, "img_size", None) is not None \
                and getattr(embed, "strict_img_size", True):
            self._fixed_size = tuple(int(s) for s in embed.img_size)  # type: ignore[assignment]
        if params.pool_block is not None:
            idx = self._index(params.pool_block)
            self.feature_dim = int(info[idx]["num_chs"])
        else:
            self.feature_dim = int(getattr(model, "head_hidden_size", None) or model.num_features)

    def train(self, mode: bool = True) -> TimmEncoder:
        super().train(mode)
        self._timm_model.training = mode  # some forward_head code reads the model's flag
        return self

    def _index(self, block: int) -> int:
        if not self._maps:
            raise ComponentError(f"timm model {self.name!r} exposes no intermediates",
                                 "leave pool_block unset")
        idx = block + len(self._maps) if block < 0 else block
        if not 0 <= idx < len(self._maps):
            raise ComponentError(f"pool_block {block} is out of range for timm model "
                                 f"{self.name!r} ({len(self._maps)} blocks/stages)",
                                 f"use 0..{len(self._maps) - 1} or a negative index")
        return idx

    def _fit(self, x: Tensor) -> Tensor:
        """Inputs of another size are resized to a fixed-size model's own (bilinear)."""
        if self._fixed_size is not None and tuple(x.shape[-2:]) != self._fixed_size:
            x = F.interpolate(x, size=self._fixed_size, mode="bilinear", align_corners=False)
        return x

    def forward(self, x: Tensor) -> Tensor:
        if self.pool_block is not None:
            return self._intermediate(x, self._index(self.pool_block)).mean(dim=(-2, -1))
        m = self._timm_model
        return m.forward_head(m.forward_features(self._fit(x)), pre_logits=True)

    def _intermediate(self, x: Tensor, idx: int) -> Tensor:
        out = self._timm_model.forward_intermediates(self._fit(x), indices=[idx],
                                                     stop_early=True, intermediates_only=True)
        return out[0]

    def _aliases(self) -> dict[str, int]:
        """layer1..layer4 as in a ResNet: for hierarchical models the last intermediate at
        stride 4, 8, 16, 32; for ViTs (one stride) the blocks at 1/4, 1/2, 3/4 and full depth."""
        n = len(self._maps)
        if not n:
            return {}
        if len(set(self._reductions)) == 1:
            return {f"layer{k}": max(0, math.ceil(n * k / 4) - 1) for k in range(1, 5)}
        out: dict[str, int] = {}
        for k in range(1, 5):
            at = [i for i, r in enumerate(self._reductions) if r == 2 ** (k + 1)]
            if at:
                out[f"layer{k}"] = at[-1]
        out["layer4"] = n - 1
        return out

    def layers(self) -> list[str]:
        """The map names `feature_map` accepts."""
        return [*self._maps, *[a for a in self._aliases() if a not in self._maps]]

    def feature_maps(self, x: Tensor) -> dict[str, Tensor]:
        """Every intermediate map (NCHW) under timm's module name, layer1..4 aliases and
        the pooled vector."""
        maps: dict[str, Tensor] = {}
        if self._maps:
            inter = self._timm_model.forward_intermediates(self._fit(x), intermediates_only=True)
            maps = dict(zip(self._maps, inter, strict=True))
            for alias, idx in self._aliases().items():
                maps.setdefault(alias, maps[self._maps[idx]])
        maps["pooled"] = self.forward(x)
        return maps

    def feature_map(self, x: Tensor, layer: str) -> Tensor:
        """One intermediate, stopping the network after it."""
        aliases = self._aliases()
        if layer in self._maps:
            return self._intermediate(x, self._maps.index(layer))
        if layer in aliases:
            return self._intermediate(x, aliases[layer])
        if layer == "pooled":
            return self.forward(x)
        raise KeyError(layer)

    @classmethod
    def infer_params(cls, state: Mapping[str, Tensor]) -> dict[str, Any] | None:
        """A timm VisionTransformer's name and kwargs from its weights: width and depth
        name the size (vit_tiny/small/base/large/huge/giant; 64-d heads otherwise), the
        patch embedding gives the patch size, the position embedding the image size, and
        the presence of qkv biases, layer scale, registers and fc_norm the rest."""
        if not all(k in state for k in cls.anchor_keys):
            return None
        proj = state["patch_embed.proj.weight"]
        if proj.dim() != 4 or proj.shape[-1] != proj.shape[-2]:
            return None
        dim, patch = int(proj.shape[0]), int(proj.shape[-1])
        depth = 1 + max(int(k.split(".")[1]) for k in state
                        if k.startswith("blocks.") and k.split(".")[1].isdigit())
        size = _VIT_SIZES.get((dim, depth))
        kwargs: dict[str, Any] = {"patch_size": patch}
        if size is None:
            size = "vit_base"
            kwargs.update(embed_dim=dim, depth=depth, num_heads=_VIT_HEADS.get(dim, max(1, dim // 64)))
        elif dim in _VIT_HEADS:
            kwargs["num_heads"] = _VIT_HEADS[dim]
        fc1 = state.get("blocks.0.mlp.fc1.weight")
        if fc1 is not None and fc1.shape[0] != 4 * dim:
            kwargs["mlp_ratio"] = fc1.shape[0] / dim
        if "blocks.0.attn.qkv.bias" not in state and "blocks.0.attn.q_bias" not in state:
            kwargs["qkv_bias"] = False
        if "blocks.0.ls1.gamma" in state:
            kwargs["init_values"] = 1e-5  # layer scale present; the value is loaded
        cls_token = "cls_token" in state
        if not cls_token:
            kwargs["class_token"] = False
        regs = int(state["reg_token"].shape[1]) if "reg_token" in state else 0
        if regs:
            kwargs["reg_tokens"] = regs
        if "fc_norm.weight" in state or not cls_token:
            kwargs["global_pool"] = "avg"
        pos = state.get("pos_embed")
        if pos is not None and pos.dim() == 3:
            prefix = int(cls_token) + regs
            tokens = int(pos.shape[1])
            for n, no_embed_class in ((tokens - prefix, False), (tokens, True)):
                side = math.isqrt(max(n, 0))
                if n > 0 and side * side == n:
                    kwargs["img_size"] = side * patch
                    if no_embed_class and prefix:
                        kwargs["no_embed_class"] = True
                    break
            else:
                return None
        else:
            kwargs["pos_embed"] = "none"
        if kwargs.get("img_size") == 224 and patch == 16:
            kwargs.pop("img_size")
        if patch == 16:
            kwargs.pop("patch_size")
        return {"name": f"{size}_patch16_224", "kwargs": kwargs}

    def extra_repr(self) -> str:
        return f"name={self.name}, feature_dim={self.feature_dim}"


_CHUNKED = re.compile(r"^blocks\.\d+\.(\d+)\.(.*)$")


class Dinov2Format(CheckpointFormat):
    """DINOv2's ViT (facebookresearch/dinov2) in timm's keys: FSDP block chunks
    (`blocks.CHUNK.N.`) are flattened to `blocks.N.`, the unused `mask_token` dropped, and
    registers (`register_tokens`) become timm's `reg_token` with the class token's
    position embedding folded into the class token (timm's `no_embed_class` layout).
    Only files with one of these DINOv2 marks are claimed; DINO v1 ViTs already use
    timm's keys. In a full training checkpoint the teacher is read by default."""

    def __init__(self, params: Params | None = None) -> None:
        pass

    def select(self, state: Mapping[str, Tensor], meta: Mapping[str, Any]
               ) -> tuple[dict[str, Tensor], str] | None:
        anchor = "patch_embed.proj.weight"
        found = [k[: -len(anchor)] for k in state if k.endswith(anchor)]
        found = [p for p in found if (p == "" or p.endswith(".")) and p + "mask_token" in state]
        if not found:
            return None
        prefix = min(found, key=lambda p: (len(p), p))
        out: dict[str, Tensor] = {}
        for k, v in state.items():
            if not k.startswith(prefix) or k == prefix + "mask_token":
                continue
            short = k[len(prefix):]
            m = _CHUNKED.match(short)
            out[f"blocks.{m.group(1)}.{m.group(2)}" if m else short] = v
        regs = out.pop("register_tokens", None)
        if regs is not None and "cls_token" in out and "pos_embed" in out:
            out["reg_token"] = regs
            out["cls_token"] = out["cls_token"] + out["pos_embed"][:, :1]
            out["pos_embed"] = out["pos_embed"][:, 1:]
        return out, prefix


@hookimpl
def register_encoders(register: Register) -> None:
    register("timm", TimmEncoder, params=TimmParams,
             summary="any timm.create_model network (ViT, ConvNeXt, ...); pooled pre-logits")


@hookimpl
def register_checkpoint_formats(register: Register) -> None:
    register("dinov2", Dinov2Format,
             summary="facebookresearch/dinov2 ViT (chunked blocks, registers) onto timm's keys")
