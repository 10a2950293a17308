"""The pretraining loop: SGD + cosine (MoCo v2), AMP on CUDA, resumable checkpoints."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ssl_core.atomic import torch_save
from ssl_core.checkpoints import SSLC_FORMAT_VERSION, read_checkpoint
from ssl_core.errors import CheckpointError, DataError
from ssl_core.interfaces import ContrastiveObjective
from ssl_core.progress import progress_bar
from ssl_core.recipe import TrainConfig
from ssl_core.seeding import EpochSampler, SeededItems


@dataclass
class TrainResult:
    steps: int
    epochs: int
    final_loss: float
    images_per_s: float
    resumed_from_step: int
    history: list[float] = field(default_factory=list)


def cosine_lr(base_lr: float, epoch: int, epochs: int) -> float:
    """MoCo v2's per-epoch cosine schedule."""
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint of this run, read through the one safe reader."""
    try:
        ckpt = read_checkpoint(path)
    except CheckpointError as exc:
        raise CheckpointError(f"cannot resume from {path}: {exc.message}",
                              "delete it (the stage will start again) or restore it from a backup") from None
    if not isinstance(ckpt, dict) or ckpt.get("sslc_format") != SSLC_FORMAT_VERSION:
        raise CheckpointError(f"{path} is not an sslc training checkpoint", "delete it or rerun with --force")
    return ckpt


class Trainer:
    """Trains `objective` (which owns the encoder) on the pairs of a PairSampler."""

    def __init__(self, objective: ContrastiveObjective, pairs: torch.utils.data.Dataset,
                 config: TrainConfig, *, device: torch.device, checkpoint_path: Path,
                 fingerprint: str, encoder_config: Mapping[str, Any], description: str = "train") -> None:
        self.objective = objective.to(device)
        self.pairs = pairs
        self.cfg = config
        self.device = device
        self.checkpoint_path = checkpoint_path
        self.fingerprint = fingerprint
        self.encoder_config = dict(encoder_config)
        self.description = description
        n = len(pairs)  # type: ignore[arg-type]
        self.steps_per_epoch = n // config.batch_size
        if self.steps_per_epoch == 0:
            raise DataError(f"the training dataset has {n} images, fewer than batch_size={config.batch_size}",
                            "lower train.batch_size or use a larger dataset")
        total = config.epochs * self.steps_per_epoch
        self.total_steps = min(total, config.max_steps) if config.max_steps else total
        params = [p for p in objective.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                                         weight_decay=config.weight_decay)
        use_amp = config.precision == "amp" or (config.precision == "auto" and device.type == "cuda")
        if use_amp and device.type != "cuda":
            raise DataError("precision: amp needs a CUDA device", "use precision: auto or fp32 on CPU")
        self.amp_dtype = (torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16) if use_amp else None
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.step = 0
        self.history: list[float] = []

    # -- one step, also used by benchmarks ----------------------------------------------
    def train_step(self, batch: Mapping[str, Any]) -> float:
        batch = {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        autocast = (torch.autocast("cuda", dtype=self.amp_dtype) if self.amp_dtype is not None else nullcontext())
        with autocast:
            out = self.objective(batch)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(out.loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            out.loss.backward()
            self.optimizer.step()
        return float(out.loss.detach())

    def set_epoch_lr(self, epoch: int) -> float:
        lr = cosine_lr(self.cfg.lr, epoch, self.cfg.epochs) if self.cfg.schedule == "cosine" else self.cfg.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    # -- checkpoints ----------------------------------------------------------------------
    def state(self, done: bool) -> dict[str, Any]:
        return {
            "sslc_format": SSLC_FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "step": self.step,
            "done": done,
            "encoder": self.encoder_config,
            "encoder_state_dict": self.objective.encoder.state_dict(),
            "objective_state_dict": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "history": list(self.history),
        }

    def save(self, done: bool = False) -> None:
        torch_save(self.checkpoint_path, self.state(done))

    def try_resume(self) -> int:
        """Continue from `checkpoint_path` if it belongs to this very configuration."""
        if not self.checkpoint_path.exists():
            return 0
        ckpt = load_checkpoint(self.checkpoint_path)
        if ckpt.get("fingerprint") != self.fingerprint:
            stale = self.checkpoint_path.with_name(f"{self.checkpoint_path.stem}.stale-{int(time.time())}.pt")
            self.checkpoint_path.rename(stale)
            return 0
        self.objective.load_state_dict(ckpt["objective_state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.step = int(ckpt["step"])
        self.history = [float(x) for x in ckpt.get("history", [])]
        return self.step

    # -- the loop -------------------------------------------------------------------------
    def _loader(self, epoch: int, start: int) -> torch.utils.data.DataLoader:
        cfg = self.cfg
        n_batches = self.steps_per_epoch
        sampler = EpochSampler(len(self.pairs), cfg.seed, epoch, start * cfg.batch_size,  # type: ignore[arg-type]
                               limit=n_batches * cfg.batch_size)
        return torch.utils.data.DataLoader(
            SeededItems(self.pairs, cfg.seed), batch_size=cfg.batch_size, sampler=sampler,
            num_workers=cfg.num_workers, drop_last=True, pin_memory=self.device.type == "cuda",
            persistent_workers=False)

    def fit(self) -> TrainResult:
        self.objective.check_batch_size(self.cfg.batch_size)
        resumed = self.try_resume()
        self.objective.train()
        start_time, images = time.perf_counter(), 0
        with progress_bar() as progress:
            task = progress.add_task(self.description, total=self.total_steps, completed=self.step,
                                     info="resumed" if resumed else "")
            while self.step < self.total_steps:
                epoch, in_epoch = divmod(self.step, self.steps_per_epoch)
                lr = self.set_epoch_lr(epoch)
                for batch in self._loader(epoch, in_epoch):
                    loss = self.train_step(batch)
                    self.step += 1
                    self.history.append(loss)
                    images += self.cfg.batch_size
                    rate = images / max(time.perf_counter() - start_time, 1e-9)
                    progress.update(task, advance=1,
                                    info=f"epoch {epoch + 1}/{self.cfg.epochs} loss {loss:.3f} "
                                         f"lr {lr:.4f} {rate:.0f} img/s")
                    if not math.isfinite(loss):
                        raise DataError(f"training diverged at step {self.step}: loss is {loss}",
                                        "lower train.lr, or use precision: fp32")
                    if self.step % self.cfg.checkpoint_every == 0 and self.step < self.total_steps:
                        self.save()
                    if self.step >= self.total_steps:
                        break
        self.save(done=True)
        elapsed = max(time.perf_counter() - start_time, 1e-9)
        return TrainResult(self.step, math.ceil(self.step / self.steps_per_epoch),
                           self.history[-1] if self.history else float("nan"), images / elapsed,
                           resumed, self.history)
