"""Objective `region-moco`: MoCo v2 on frames plus a region-level contrastive loss (paper sec. 5).

The Region Tracker model is trained "similar to the Frame Temporal Invariance model, but
with an additional contrastive loss to match positive region pairs and discriminate
negative region pairs". Here that is:

    loss = frame_weight * L_frame + region_weight * L_region

L_frame is moco-queue's loss on the two frames (query frame t, key frame t + delta).
L_region is the same InfoNCE on regions: a query region is the query encoder's layer3 map
of the query view ROI-pooled at `query_boxes`, averaged and projected by a region head; its
positive is the momentum (key) encoder's layer3 map of the key view pooled at `key_boxes`
(the region tracked into the key frame) through the momentum copy of the region head; its
negatives are a queue of past region keys of its own (`region_queue_size`). Rows of
`box_valid` False are masked out (no loss, never enqueued). Under torchrun the region keys
are gathered from all ranks before enqueueing and the key boxes travel with their images
through shuffle-BN, like the frame keys.

State dict: moco-queue's (`encoder_q.*`, `encoder_k.*`, `queue`, `queue_ptr`, so the trunk
exports in the official MoCo layout) plus `region_q.*`, `region_k.*`, `region_queue`,
`region_queue_ptr`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ssl_core import (
    ComponentError,
    Encoder,
    ObjectiveOutput,
    Register,
    device_constant,
    ensure_fits,
    hookimpl,
)
from sslc_plugins.moco_queue import (
    MocoQueue,
    MocoQueueParams,
    _distributed,
    concat_all_gather,
    info_nce,
)
from sslc_plugins.region_tracker.features import pool_regions


class RegionMocoParams(MocoQueueParams):
    """moco-queue's parameters plus the region loss's."""

    frame_weight: float = Field(1.0, ge=0.0, description="weight of the frame-level MoCo loss")
    region_weight: float = Field(1.0, ge=0.0, description="weight of the region-level loss")
    region_queue_size: int = Field(65536, ge=1, description="negative region keys kept")
    region_temperature: float = Field(0.2, gt=0.0, description="softmax temperature of the "
                                      "region loss")
    roi_op: Literal["roi_pool", "roi_align"] = Field(
        "roi_align", description="how regions are cut out of the layer3 maps")
    roi_output: int = Field(7, ge=1, description="ROI output cells per side, averaged")


class RegionMoco(MocoQueue):
    """MoCo v2 with a second, region-level InfoNCE over tracked region pairs."""

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
        self.region_q: nn.Module | None = None
        self.region_k: nn.Module | None = None
        ensure_fits(3 * 4 * p.dim * p.region_queue_size,
                    f"the region queue (objective region_queue_size={p.region_queue_size}, "
                    f"dim={p.dim})", "lower region_queue_size or dim")
        self.register_buffer("region_queue",
                             F.normalize(torch.randn(p.dim, p.region_queue_size), dim=0))
        self.register_buffer("region_queue_ptr", torch.zeros(1, dtype=torch.long))

    def bind(self, encoder: Encoder) -> None:
        """moco-queue's branches, then the region head (sized by the encoder's layer3
        channels, read from one tiny forward) and its momentum copy."""
        super().bind(encoder)
        device = next(iter(encoder.parameters()), self.queue).device
        was_training = encoder.training
        encoder.eval()
        try:
            with torch.no_grad():
                channels = int(encoder.feature_maps(torch.zeros(1, 3, 64, 64, device=device))
                               ["layer3"].shape[1])
        finally:
            encoder.train(was_training)
        if self.mlp:
            head: nn.Module = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(),
                                            nn.Linear(channels, self.dim))
        else:
            head = nn.Linear(channels, self.dim)
        self.region_q = head.to(device)
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
        """moco-queue's update, and the same for the region head: k = m*k + (1-m)*q."""
        super()._momentum_update_key_encoder()
        region_q, region_k = self._region_heads()
        ks = [p.data for p in region_k.parameters()]
        qs = [p.data for p in region_q.parameters()]
        torch._foreach_mul_(ks, self.m)
        torch._foreach_add_(ks, torch._foreach_mul(qs, 1.0 - self.m))

    @torch.no_grad()
    def _shuffle_like(self, x: Tensor, idx_unshuffle: Tensor) -> Tensor:
        """This rank's share of the gathered `x` in the permutation `_batch_shuffle_ddp` drew
        (its inverse is `idx_unshuffle`): the key boxes follow their images."""
        x_all = concat_all_gather(x)
        idx_shuffle = torch.argsort(idx_unshuffle)
        ranks = x_all.shape[0] // x.shape[0]
        return x_all[idx_shuffle.view(ranks, -1)[dist.get_rank()]]

    @torch.no_grad()
    def _enqueue_regions(self, keys: Tensor, valid: Tensor) -> None:
        """Enqueue the valid rows of `keys` (all ranks'), oldest first, without reading the
        count back to the host: valid rows go first and invalid ones rewrite what was there."""
        keys = concat_all_gather(keys)
        valid = concat_all_gather(valid.to(keys.dtype)) > 0.5
        n = keys.shape[0]
        if n > self.region_K:
            raise ComponentError(
                f"region-moco got {n} region keys in one step (global batch x regions per "
                f"item), more than region_queue_size {self.region_K}",
                f"set region_queue_size to at least {n}")
        order = torch.argsort((~valid).to(torch.int8), stable=True)
        keys, valid = keys[order], valid[order]
        idx = (self.region_queue_ptr + torch.arange(n, device=keys.device)) % self.region_K
        old = self.region_queue[:, idx]
        self.region_queue[:, idx] = torch.where(valid[None, :], keys.T.to(old.dtype), old)
        self.region_queue_ptr.add_(valid.sum()).remainder_(self.region_K)

    def _pool(self, maps: Tensor, boxes: Tensor, width: int) -> Tensor:
        """(B, R, 4) view-pixel boxes -> (B*R, C) pooled layer3 vectors."""
        return pool_regions(maps, boxes, width, self.roi_op, self.roi_output)

    def forward(self, batch: Mapping[str, Tensor]) -> ObjectiveOutput:
        q_branch, k_branch = self._bound()
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

        q_maps = q_branch.trunk.feature_maps(im_q)
        q_out = q_branch.fc(q_maps["pooled"])
        q_reg = region_q(self._pool(q_maps["layer3"], q_boxes, w))
        with torch.no_grad():
            self._momentum_update_key_encoder()
            shuffle = self.shuffle_bn and _distributed()
            if shuffle:
                im_k, idx_unshuffle = self._batch_shuffle_ddp(im_k)
                k_boxes = self._shuffle_like(k_boxes, idx_unshuffle)
            k_maps = k_branch.trunk.feature_maps(im_k)
            k_out = k_branch.fc(k_maps["pooled"])
            k_reg = region_k(self._pool(k_maps["layer3"], k_boxes, im_k.shape[-1])).view(b, r, -1)
            if shuffle:
                k_out = self._batch_unshuffle_ddp(k_out, idx_unshuffle)
                k_reg = self._batch_unshuffle_ddp(k_reg, idx_unshuffle)

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
                     "(ROI-pooled layer3, own queue; paper sec. 5)")
