"""One MoCo-v2 training step through sslc (registry components + Trainer.run_step) against
a bare PyTorch loop doing the same math on the same model, batch and image size.

Baseline: `bare_moco_step` below — torchvision ResNet trunk, MLP head, momentum copy, queue,
InfoNCE, SGD — written without any sslc code. Both run in the same process, interleaved.

Second figure: `Trainer.fit` (the whole loop: DataLoader with workers over an in-memory pair
dataset, host-to-device copies, logs, host syncs every `log_every` steps) against the same
bare step on tensors already on the device, in the same run, with the loop's data-wait
fraction (time blocked on the loader / wall time) from its metrics.jsonl.

    python benchmarks/bench_train_step.py                 # resnet18, batch 32, 64 px, CPU
    python benchmarks/bench_train_step.py --arch resnet50 --batch 32 --size 96
    python benchmarks/bench_train_step.py --device cuda --amp --arch resnet50 --batch 256 --size 224
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from contextlib import nullcontext
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
        loss = F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))
        with torch.no_grad():
            p = int(self.ptr)
            self.queue[:, p:p + len(k)] = k.T
            self.ptr[0] = (p + len(k)) % self.queue.shape[1]
        return loss


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, n: int, device: torch.device = torch.device("cpu")) -> list[float]:
    """Per-step wall times of `n` steps run back to back (one device sync at the end, spread
    evenly, so that asynchronous CUDA steps are timed as the GPU runs them)."""
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    _sync(device)
    return [(time.perf_counter() - t0) / n] * n


class InMemoryPairs(torch.utils.data.Dataset):
    """Pairs already decoded and augmented: what is left is the loader's own cost."""

    def __init__(self, n: int, size: int) -> None:
        g = torch.Generator().manual_seed(1)
        self.query = torch.randn(n, 3, size, size, generator=g)
        self.key = torch.randn(n, 3, size, size, generator=g)

    def __len__(self) -> int:
        return len(self.query)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"query": self.query[index], "key": self.key[index]}


def fit_figure(args: argparse.Namespace, device: torch.device) -> tuple[float, float]:
    """Steady-state img/s and data-wait fraction of Trainer.fit (its first step, which starts
    the workers, left out), read from the metrics.jsonl the loop writes."""
    from ssl_core.kit.progress import set_quiet
    from ssl_core.plugin.host import get_registry
    from ssl_core.recipe.schema import TrainConfig
    from ssl_core.run.trainer import Trainer

    set_quiet(True)
    reg = get_registry()
    encoder = reg.create("encoder", {"type": args.arch})
    objective = reg.create("objective", {"type": "moco-queue", "dim": 128, "queue_size": args.queue,
                                         "momentum": 0.999, "temperature": 0.2})
    objective.bind(encoder)
    steps = args.fit_steps + 1
    cfg = TrainConfig(dataset="-", pair_sampler={}, objective={}, batch_size=args.batch, lr=0.03, epochs=1,
                      num_workers=args.workers, checkpoint_every=10**9,
                      precision="amp" if args.amp else "fp32")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(objective, InMemoryPairs(steps * args.batch, args.size), cfg, device=device,
                          checkpoint_path=Path(tmp) / "checkpoint.pt", fingerprint="bench", encoder_config={})
        trainer.fit()
        records = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in records if r["event"] == "step" and r["step"] > 1]
    wall = sum(r["step_s"] for r in timed)
    return len(timed) * args.batch / wall, sum(r["data_s"] for r in timed) / wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet50"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--queue", type=int, default=4096)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", action="store_true", help="bf16/fp16 autocast in both (CUDA only)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the Trainer.fit figure")
    ap.add_argument("--fit-steps", type=int, default=20, help="timed steps of the Trainer.fit figure")
    args = ap.parse_args()
    device = torch.device(args.device)

    from ssl_core.plugin.host import get_registry
    from ssl_core.recipe.schema import TrainConfig
    from ssl_core.run.trainer import Trainer

    torch.manual_seed(0)
    x_q = torch.randn(args.batch, 3, args.size, args.size, device=device)
    x_k = torch.randn(args.batch, 3, args.size, args.size, device=device)
    cfg = dict(dim=128, queue=args.queue, m=0.999, t=0.2)

    reg = get_registry()
    encoder = reg.create("encoder", {"type": args.arch})
    objective = reg.create("objective", {"type": "moco-queue", "dim": 128, "queue_size": args.queue,
                                         "momentum": 0.999, "temperature": 0.2})
    objective.bind(encoder)
    train_cfg = TrainConfig(dataset="-", pair_sampler={}, objective={}, batch_size=args.batch, lr=0.03,
                            precision="amp" if args.amp else "fp32")
    pairs = [None] * args.batch  # Trainer only needs len() here; batches are fed directly
    trainer = Trainer(objective, pairs, train_cfg, device=device,  # type: ignore[arg-type]
                      checkpoint_path=Path("/nonexistent"), fingerprint="bench", encoder_config={})
    batch = {"query": x_q, "key": x_k}

    bare = BareMoCo(args.arch, **cfg).to(device)
    if trainer.channels_last:  # the same memory format on both sides (auto: on with AMP on CUDA)
        bare.to(memory_format=torch.channels_last)
        x_q, x_k = (x.contiguous(memory_format=torch.channels_last) for x in (x_q, x_k))
    amp_dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
    opt = torch.optim.SGD([p for p in bare.parameters() if p.requires_grad], lr=0.03, momentum=0.9,
                          weight_decay=1e-4)

    def bare_step() -> None:
        with torch.autocast("cuda", dtype=amp_dtype) if args.amp else nullcontext():
            loss = bare(x_q, x_k)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sslc_step() -> None:
        trainer.run_step(batch)

    for step in (bare_step, sslc_step):  # warm-up
        time_steps(step, 2, device)
    bare_t, sslc_t = [], []
    for _ in range(args.rounds):
        bare_t += time_steps(bare_step, args.steps, device)
        sslc_t += time_steps(sslc_step, args.steps, device)
    b, s = statistics.median(bare_t), statistics.median(sslc_t)
    print(f"MoCo-v2 step, {args.arch}, batch {args.batch}, {args.size}x{args.size}, queue {args.queue}, "
          f"{device}{' amp' if args.amp else ' fp32'}{' channels_last' if trainer.channels_last else ''}, "
          f"{torch.get_num_threads()} threads, "
          f"{args.rounds}x{args.steps} steps each (median)")
    print(f"{'':<28}{'ms/step':>10}{'img/s':>10}")
    print(f"{'bare PyTorch (baseline)':<28}{b * 1e3:>10.1f}{args.batch / b:>10.1f}")
    print(f"{'sslc Trainer.run_step':<28}{s * 1e3:>10.1f}{args.batch / s:>10.1f}")
    overhead = (s - b) / b * 100
    print(f"sslc overhead: {overhead:+.1f}% (target <= 10%)")

    fit_rate, wait = fit_figure(args, device)
    bare_t += time_steps(bare_step, args.steps, device)  # the baseline on both sides of the fit
    b = statistics.median(bare_t)
    print(f"\nTrainer.fit, in-memory pairs, {args.workers} workers, {args.fit_steps} steps after the first")
    print(f"{'':<28}{'img/s':>10}")
    print(f"{'bare step (baseline)':<28}{args.batch / b:>10.1f}")
    print(f"{'sslc Trainer.fit':<28}{fit_rate:>10.1f}   {fit_rate * b / args.batch:.0%} of the bare step, "
          f"data wait {wait:.0%}")


if __name__ == "__main__":
    main()
