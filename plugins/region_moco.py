"""Objective `region-moco`: MoCo v2 on frames plus a region-level contrastive loss (paper sec. 5).

The Region Tracker model is trained "similar to the Frame Temporal Invariance model, but
with an additional contrastive loss to match positive region pairs and discriminate
negative region pairs". Here that is:

    loss = frame_weight * L_frame + region_weight * L_region

L_frame is moco-queue's loss on the two frames (query frame i, key frame i + k).
L_region is the same InfoNCE on regions. Where a region's vector comes from
(`region_pool`):

- `crops` (default): the region is cut out of the view (ROI-align to
  `region_crop_size` pixels square) and goes through the whole trunk like an image, its
  pooled feature projected by a region head. Figure 2 of the paper feeds "full frames and
  tracked region proposals ... as the query and key", i.e. regions are inputs of the
  encoder as frames are, and every stage (layer4 included, what every evaluation reads)
  learns from the region loss. Only valid rows are forwarded.
- `roi`: the view goes through the trunk once and the region is ROI-pooled out of
  `region_layer`'s map (one forward for all regions; with `layer3`, stages after it get no
  region gradient).

The query region goes through the query encoder and region head; its positive is the
region tracked into the key view (`key_boxes`) through the momentum (key) encoder and the
momentum copy of the region head; its negatives are a queue of past region keys of its own
(`region_queue_size`). Rows of `box_valid` False are masked out (no loss, never enqueued). Under torchrun the region keys
are gathered from all ranks before enqueueing and the key boxes travel with their images
through shuffle-BN, like the frame keys; in one process shuffle-BN is emulated by BatchNorm
groups as in moco-queue (`shuffle_bn_groups`).

The MoCo machinery (branches, queues, momentum update, shuffle-BN, InfoNCE) and the ROI
pooling come from the core's kit (`ssl_core.MomentumContrast`, `ssl_core.pool_regions`);
this plugin imports nothing from other plugins.

State dict: moco-queue's (`encoder_q.*`, `encoder_k.*`, `queue`, `queue_ptr`, so the trunk
exports in the official MoCo layout) plus `region_q.*`, `region_k.*`, `region_queue`,
`region_queue_ptr`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn
from torchvision.ops import roi_align

from ssl_core import (
    ComponentError,
    Encoder,
    MomentumContrast,
    MomentumContrastParams,
    ObjectiveOutput,
    Register,
    device_constant,
    enqueue_valid,
    ensure_fits,
    hookimpl,
    info_nce,
    momentum_update,
    pool_regions,
    projection_head,
)


class RegionMocoParams(MomentumContrastParams):
    """The frame loss's parameters (moco-queue's, same names and defaults) plus the region
    loss's."""

    frame_weight: float = Field(1.0, ge=0.0, description="weight of the frame-level MoCo loss")
    region_weight: float = Field(1.0, ge=0.0, description="weight of the region-level loss")
    region_queue_size: int = Field(65536, ge=1, description="negative region keys kept")
    region_temperature: float = Field(0.2, gt=0.0, description="softmax temperature of the "
                                      "region loss")
    region_pool: Literal["crops", "roi"] = Field(
        "crops", description="crops: each region cut out of the view and forwarded through the "
        "whole trunk (the paper's Figure 2: regions as query and key); roi: ROI-pooled from "
        "`region_layer`'s map of the view (one forward)")
    region_crop_size: int = Field(64, ge=8, description="crops: side in pixels each region is "
                                  "resampled to before the trunk")
    region_layer: Literal["layer1", "layer2", "layer3", "layer4"] = Field(
        "layer4", description="roi: the stage whose map regions are pooled from")
    roi_op: Literal["roi_pool", "roi_align"] = Field(
        "roi_align", description="roi: how regions are cut out of the maps")
    roi_output: int = Field(7, ge=1, description="roi: ROI output cells per side, averaged")


class RegionMoco(MomentumContrast):
    """MoCo v2 with a second, region-level InfoNCE over tracked region pairs."""

    name = "region-moco"
    needs_keys = frozenset({"query", "key", "query_boxes", "key_boxes", "box_valid"})
    #: moco-queue's branch names, so the trunk exports in the official MoCo layout too
    branch_names = ("encoder_q", "encoder_k")
    region_queue: Tensor
    region_queue_ptr: Tensor

    def __init__(self, params: RegionMocoParams | None = None) -> None:
        p = params or RegionMocoParams()
        super().__init__(p)
        self.frame_weight = p.frame_weight
        self.region_weight = p.region_weight
        self.region_K = p.region_queue_size
        self.region_T = p.region_temperature
        self.roi_op: Literal["roi_pool", "roi_align"] = p.roi_op
        self.roi_output = p.roi_output
        self.region_pool = p.region_pool
        self.region_layer = p.region_layer
        self.crop_size = p.region_crop_size
        self.region_q: nn.Module | None = None
        self.region_k: nn.Module | None = None
        ensure_fits(3 * 4 * p.dim * p.region_queue_size,
                    f"the region queue (objective region_queue_size={p.region_queue_size}, "
                    f"dim={p.dim})", "lower region_queue_size or dim")
        self.register_buffer("region_queue",
                             F.normalize(torch.randn(p.dim, p.region_queue_size), dim=0))
        self.register_buffer("region_queue_ptr", torch.zeros(1, dtype=torch.long))

    def bind(self, encoder: Encoder) -> None:
        """The MoCo branches, then the region head (sized by the channels of what it reads,
        the pooled trunk or `region_layer`, read from one tiny forward) and its momentum
        copy."""
        super().bind(encoder)
        device = next(iter(encoder.parameters()), self.queue).device
        was_training = encoder.training
        encoder.eval()
        try:
            with torch.no_grad():
                maps = encoder.feature_maps(torch.zeros(1, 3, 64, 64, device=device))
        finally:
            encoder.train(was_training)
        read = "pooled" if self.region_pool == "crops" else self.region_layer
        if read not in maps:
            raise ComponentError(f"region-moco reads {read!r} of the encoder, which gives "
                                 f"{sorted(maps)}", "choose another region_layer, or "
                                 "region_pool: crops")
        channels = int(maps[read].shape[1])
        self.region_q = projection_head(channels, self.dim, mlp=self.mlp).to(device)
        self.region_k = copy.deepcopy(self.region_q)
        for param in self.region_k.parameters():
            param.requires_grad = False

    def _region_heads(self) -> tuple[nn.Module, nn.Module]:
        if self.region_q is None or self.region_k is None:
            raise ComponentError("region-moco is used before bind(encoder) was called",
                                 "call objective.bind(encoder) first")
        return self.region_q, self.region_k

    @torch.no_grad()
    def _momentum_update_key_encoder(self) -> None:
        """The MoCo branches' update, and the same for the region head: k = m*k + (1-m)*q."""
        super()._momentum_update_key_encoder()
        region_q, region_k = self._region_heads()
        momentum_update(region_q, region_k, self.m)

    @torch.no_grad()
    def _enqueue_regions(self, keys: Tensor, valid: Tensor) -> None:
        """Enqueue the valid rows of `keys` (all ranks'), oldest first."""
        enqueue_valid(self.region_queue, self.region_queue_ptr, keys, valid,
                      "region-moco (global batch x regions per item)", "region_queue_size")

    def _regions(self, trunk: Encoder, x: Tensor, maps: Mapping[str, Tensor], boxes: Tensor
                 ) -> Tensor:
        """(B, R, 4) view-pixel boxes -> (B*R, C) region vectors: ROI-pooled from
        `region_layer`'s map, or the trunk's pooled feature of each region's crop. Every row
        is forwarded (invalid ones crop the whole view, masked later), image by image, so a
        slice of the batch's crops is the same slice of its images: shuffle-BN's groups and
        ranks see the crops of their own images."""
        if self.region_pool == "roi":
            return pool_regions(maps[self.region_layer], boxes, x.shape[-1], self.roi_op,
                                self.roi_output)
        b, r = boxes.shape[:2]
        owner = torch.arange(b, device=boxes.device).repeat_interleave(r).to(torch.float32)
        rois = torch.cat([owner[:, None], boxes.reshape(-1, 4).float()], dim=1)
        crops = roi_align(x.float(), rois, self.crop_size, 1.0, 2, aligned=True).to(x.dtype)
        return trunk.feature_maps(crops)["pooled"]

    def forward(self, batch: Mapping[str, Tensor]) -> ObjectiveOutput:
        q_branch, k_branch = self.branches()
        region_q, region_k = self._region_heads()
        try:
            im_q, im_k = batch["query"], batch["key"]
            q_boxes, k_boxes, valid = batch["query_boxes"], batch["key_boxes"], batch["box_valid"]
        except KeyError as err:
            raise ComponentError(f"region-moco needs batches with 'query', 'key', 'query_boxes', "
                                 f"'key_boxes' and 'box_valid', missing {err.args[0]!r}",
                                 "use the selective-search-tracker pair sampler (or another "
                                 "that yields region boxes)") from None
        valid = valid.bool()
        b, r = valid.shape
        h, w = im_q.shape[-2:]
        # invalid rows (padding, regions cropped away) pool the whole view: finite, masked
        whole = device_constant((0.0, 0.0, w, h), q_boxes.device)
        q_boxes = torch.where(valid[..., None], q_boxes.float(), whole)
        k_boxes = torch.where(valid[..., None], k_boxes.float(), whole)

        def query(x: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
            maps = q_branch.trunk.feature_maps(x)
            regions = region_q(self._regions(q_branch.trunk, x, maps, boxes))
            return q_branch.fc(maps["pooled"]), regions

        def key(x: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
            maps = k_branch.trunk.feature_maps(x)
            regions = region_k(self._regions(k_branch.trunk, x, maps, boxes))
            return k_branch.fc(maps["pooled"]), regions.view(x.shape[0], r, -1)

        q_out, q_reg = self.query_forward(query, im_q, q_boxes)
        with torch.no_grad():
            self._momentum_update_key_encoder()
            k_out, k_reg = self.key_forward(key, im_k, k_boxes)

        frame_losses, frame_hits, k = info_nce(q_out, k_out, self.queue, self.T)
        region_losses, region_hits, k_reg_n = info_nce(q_reg, k_reg.reshape(b * r, -1),
                                                       self.region_queue, self.region_T)
        mask = valid.reshape(-1).to(region_losses.dtype)
        count = mask.sum()
        frame_loss = frame_losses.mean()
        # masked mean; with no valid region the term is 0 but keeps the head in the graph
        region_loss = (region_losses * mask).sum() / count.clamp(min=1.0)
        loss = self.frame_weight * frame_loss + self.region_weight * region_loss
        with torch.no_grad():
            acc1 = frame_hits.float().mean() * 100.0
            region_acc1 = (region_hits.float() * mask).sum() / count.clamp(min=1.0) * 100.0
        self._dequeue_and_enqueue(k)
        self._enqueue_regions(k_reg_n, valid.reshape(-1))
        return ObjectiveOutput(loss=loss, metrics={
            "acc1": acc1.detach(), "frame_loss": frame_loss.detach(),
            "region_loss": region_loss.detach(), "region_acc1": region_acc1.detach(),
            "regions": count.detach()})


@hookimpl
def register_objectives(register: Register) -> None:
    register("region-moco", RegionMoco, params=RegionMocoParams,
             summary="MoCo v2 on frames plus a region-level InfoNCE on tracked region pairs "
                     "(region crops through the trunk, or ROI-pooled; own queue; paper sec. 5)")
