"""One MoCo-v2 training step through sslc (registry components + Trainer.train_step) against
a bare PyTorch loop doing the same math on the same model, batch and image size.

Baseline: `bare_moco_step` below — torchvision ResNet trunk, MLP head, momentum copy, queue,
InfoNCE, SGD — written without any sslc code. Both run in the same process, interleaved.

    python benchmarks/bench_train_step.py                 # resnet18, batch 32, 64 px
    python benchmarks/bench_train_step.py --arch resnet50 --batch 32 --size 96
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn


class BareMoCo(nn.Module):
    """MoCo v2 as in the official builder, with no sslc code."""

    def __init__(self, arch: str, dim: int, queue: int, m: float, t: float) -> None:
        super().__init__()
        q = getattr(torchvision.models, arch)(weights=None)
        width = q.fc.in_features
        q.fc = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, dim))
        self.encoder_q = q
        self.encoder_k = copy.deepcopy(q)
        for p in self.encoder_k.parameters():
            p.requires_grad = False
        self.m, self.t = m, t
        self.register_buffer("queue", F.normalize(torch.randn(dim, queue), dim=0))
        self.register_buffer("ptr", torch.zeros(1, dtype=torch.long))

    def forward(self, im_q: torch.Tensor, im_k: torch.Tensor) -> torch.Tensor:
        q = F.normalize(self.encoder_q(im_q), dim=1)
        with torch.no_grad():
            for pq, pk in zip(self.encoder_q.parameters(), self.encoder_k.parameters(), strict=True):
                pk.mul_(self.m).add_(pq.detach(), alpha=1 - self.m)
            k = F.normalize(self.encoder_k(im_k), dim=1)
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ self.queue.clone().detach()], 1) / self.t
        loss = F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))
        with torch.no_grad():
            p = int(self.ptr)
            self.queue[:, p:p + len(k)] = k.T
            self.ptr[0] = (p + len(k)) % self.queue.shape[1]
        return loss


def time_steps(step, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        step()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet50"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--queue", type=int, default=4096)
    args = ap.parse_args()

    from ssl_core.plugins import get_registry
    from ssl_core.recipe import TrainConfig
    from ssl_core.trainer import Trainer

    torch.manual_seed(0)
    x_q = torch.randn(args.batch, 3, args.size, args.size)
    x_k = torch.randn(args.batch, 3, args.size, args.size)
    cfg = dict(dim=128, queue=args.queue, m=0.999, t=0.2)

    reg = get_registry()
    encoder = reg.create("encoder", {"type": args.arch})
    objective = reg.create("objective", {"type": "moco-queue", "dim": 128, "queue_size": args.queue,
                                         "momentum": 0.999, "temperature": 0.2})
    objective.bind(encoder)
    train_cfg = TrainConfig(dataset="-", pair_sampler={}, objective={}, batch_size=args.batch, lr=0.03)
    pairs = [None] * args.batch  # Trainer only needs len() here; batches are fed directly
    trainer = Trainer(objective, pairs, train_cfg, device=torch.device("cpu"),  # type: ignore[arg-type]
                      checkpoint_path=Path("/nonexistent"), fingerprint="bench", encoder_config={})
    batch = {"query": x_q, "key": x_k}

    bare = BareMoCo(args.arch, **cfg)
    opt = torch.optim.SGD([p for p in bare.parameters() if p.requires_grad], lr=0.03, momentum=0.9,
                          weight_decay=1e-4)

    def bare_step() -> None:
        loss = bare(x_q, x_k)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sslc_step() -> None:
        trainer.train_step(batch)

    for step in (bare_step, sslc_step):  # warm-up
        time_steps(step, 2)
    bare_t, sslc_t = [], []
    for _ in range(args.rounds):
        bare_t += time_steps(bare_step, args.steps)
        sslc_t += time_steps(sslc_step, args.steps)
    b, s = statistics.median(bare_t), statistics.median(sslc_t)
    print(f"MoCo-v2 step, {args.arch}, batch {args.batch}, {args.size}x{args.size}, queue {args.queue}, "
          f"{torch.get_num_threads()} threads, {args.rounds}x{args.steps} steps each (median)")
    print(f"{'':<28}{'ms/step':>10}{'img/s':>10}")
    print(f"{'bare PyTorch (baseline)':<28}{b * 1e3:>10.1f}{args.batch / b:>10.1f}")
    print(f"{'sslc Trainer.train_step':<28}{s * 1e3:>10.1f}{args.batch / s:>10.1f}")
    overhead = (s - b) / b * 100
    print(f"sslc overhead: {overhead:+.1f}% (target <= 10%)")


if __name__ == "__main__":
    main()
