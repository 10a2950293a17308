"""The pretraining loop: SGD + cosine (MoCo v2), AMP on CUDA, resumable checkpoints, logs.

The loop does not wait for the device between steps: losses and metrics stay on it and are
fetched every `log_every` steps, at each epoch end and before each checkpoint; the divergence
check and the training logs (`metrics.jsonl`, TensorBoard) happen there. One DataLoader
serves the whole fit, so its workers and prefetched batches carry on across epochs.

Under torchrun (`ssl_core.kit.distributed`) every rank runs this loop on its slice of each global
batch, the objective wrapped in DistributedDataParallel; losses and metrics are averaged over
the ranks at each host sync, and only rank 0 writes the checkpoint and the logs.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress, TaskID

from ssl_core.errors import CheckpointError, ComponentError, DataError, RecipeError
from ssl_core.interfaces import ContrastiveObjective
from ssl_core.kit import distributed
from ssl_core.kit.atomic import torch_save
from ssl_core.kit.progress import progress_bar
from ssl_core.models.checkpoints import SSLC_FORMAT_VERSION, read_checkpoint
from ssl_core.recipe.schema import TrainConfig
from ssl_core.run.metrics_log import RESERVED, MetricsLog, json_number
from ssl_core.run.seeding import RankSlices, RunSampler, SeededItems, derive_seed

#: defaults of the TrainConfig options read with getattr (older configs lack them)
LOG_EVERY = 10
PREFETCH_FACTOR = 2

#: `fit(on_epoch_end=hook)`: every rank calls hook(epoch, step, final) after each epoch
#: (1-based) that ends before the last step, then once with final=True when training is
#: over. A run resumed at an epoch's end calls it again for that epoch, and one resumed with
#: no step left calls the final one: an interruption may have cut them short, so a hook must
#: tell what it has done already. The loop waits for it: a caller that evaluates the encoder
#: there (the runner's `probe_every`) sees the weights of that epoch.
EpochHook = Callable[[int, int, bool], None]


@dataclass
class TrainResult:
    steps: int
    epochs: int
    final_loss: float
    images_per_s: float
    resumed_from_step: int
    history: list[float] = field(default_factory=list)
    #: processes that trained together (torchrun's WORLD_SIZE; 1 without it)
    world_size: int = 1


@dataclass
class StepOutput:
    """One step's loss and objective metrics, still on the device (nothing waited for)."""

    loss: torch.Tensor
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Pending:
    """A finished step whose values are not fetched from the device yet."""

    step: int
    epoch: int  # 1-based, as logged
    lr: float
    out: StepOutput
    data_s: float
    step_s: float = 0.0


def progress_info(epoch: int, epochs: int, loss: float, lr: float, img_s: float, wait: float) -> str:
    """The progress bar's text; `wait` (time blocked on the loader / wall time) tells a user
    when the data pipeline, not the model, sets the pace."""
    return f"epoch {epoch}/{epochs} loss {loss:.3f} lr {lr:.4f} {img_s:.0f} img/s wait {wait:.0%}"


#: how much less CPU priority DataLoader workers get than the training process
WORKER_NICENESS = 10


def lower_priority(_worker_id: int) -> None:
    """Workers yield the CPU to the training process: with as many workers as cores, the
    process that launches the accelerator's kernels (and the GPU-side augmentation) would
    otherwise wait its turn behind JPEG decoding, and the accelerator with it."""
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)


def use_channels_last(option: bool | None, device: torch.device, mixed_precision: bool) -> bool:
    """`channels_last: null` (auto) means NHWC where it pays: mixed precision on CUDA."""
    return bool(option) if option is not None else (device.type == "cuda" and mixed_precision)


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



def check_views(batch: Mapping[str, Any], pairs_from: str) -> None:
    """The first batch as the objective will get it: float (N, C, H, W) `query` and `key` of
    one shape. A sampler that breaks this would train on nonsense silently (a key larger
    than the query still runs through a ResNet) or fail deep inside an objective; shapes
    and dtypes are metadata, so checking costs no wait for the device."""
    hint = ("a pair sampler's items need `query` and `key` float tensors (C, H, W) of one "
            "shape; ssl_core.testing.check_pair_sampler checks a sampler in its own tests")
    views = {k: batch.get(k) for k in ("query", "key")}
    for key, value in views.items():
        if not isinstance(value, torch.Tensor):
            raise ComponentError(f"{pairs_from} gave batches without a {key!r} tensor (keys: "
                                 f"{', '.join(map(str, batch))})", hint)
        if value.dim() != 4 or not value.is_floating_point() or value.shape[1] not in (1, 3):
            raise ComponentError(f"{pairs_from} gave {key!r} batches of shape "
                                 f"{tuple(value.shape)} and dtype {value.dtype}, not float "
                                 "(N, 3, H, W) after on_device", hint)
    q, k = views["query"], views["key"]
    assert isinstance(q, torch.Tensor) and isinstance(k, torch.Tensor)
    if q.shape != k.shape:
        raise ComponentError(f"{pairs_from} gave query {tuple(q.shape)} and key "
                             f"{tuple(k.shape)} batches of different shapes", hint)

class Trainer:
    """Trains `objective` (which owns the encoder) on the pairs of a PairSampler.

    `config.batch_size` is the global batch: under torchrun each of the N ranks takes
    batch_size / N of it, so N processes train the same steps as one would."""

    def __init__(self, objective: ContrastiveObjective, pairs: torch.utils.data.Dataset,
                 config: TrainConfig, *, device: torch.device, checkpoint_path: Path,
                 fingerprint: str, encoder_config: Mapping[str, Any], description: str = "train",
                 on_device: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 pairs_from: str = "the pair sampler") -> None:
        self.objective = objective.to(device)
        self.pairs = pairs
        #: who made the pairs (named when their first batch is malformed)
        self.pairs_from = pairs_from
        self._batch_checked = False
        #: the pair sampler's work left for the accelerator (PairSampler.on_device)
        self.on_device = on_device
        self.cfg = config
        self.device = device
        self.checkpoint_path = checkpoint_path
        self.fingerprint = fingerprint
        self.encoder_config = dict(encoder_config)
        self.description = description
        self.world, self.rank = distributed.world_size(), distributed.rank()
        if config.batch_size % self.world:
            raise RecipeError(f"train.batch_size {config.batch_size} does not split over {self.world} "
                              "processes: it is the global batch, each process takes batch_size / "
                              "world_size of it",
                              f"set train.batch_size to a multiple of {self.world}, or start "
                              "another number of processes")
        #: images per step on this rank
        self.local_batch = config.batch_size // self.world
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
        # Options newer than some configs: read with defaults so any TrainConfig works.
        self.log_every = max(1, int(getattr(config, "log_every", LOG_EVERY)))
        self.prefetch_factor = max(1, int(getattr(config, "prefetch_factor", PREFETCH_FACTOR)))
        self.channels_last = use_channels_last(getattr(config, "channels_last", None), device,
                                               self.amp_dtype is not None)
        if self.channels_last:
            self.objective.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        #: what steps call: the objective itself, or it in DistributedDataParallel (several
        #: ranks); checkpoints always take the bare objective's state (no `module.` keys)
        self.model = distributed.wrap(self.objective, device)
        self.step = 0
        self.history: list[float] = []
        self.on_epoch_end: EpochHook | None = None  # set by fit()
        self.hook_s = 0.0  # seconds spent in on_epoch_end (not training)

    # -- one step, also used by benchmarks ----------------------------------------------
    def _to_device(self, value: Any) -> Any:
        if not torch.is_tensor(value):
            return value
        value = value.to(self.device, non_blocking=True)
        if self.channels_last and value.dim() == 4:  # permuted on the device, not by the host
            return value.contiguous(memory_format=torch.channels_last)
        return value

    def run_step(self, batch: Mapping[str, Any]) -> StepOutput:
        """One optimisation step; the loss and metrics it returns stay on the device."""
        batch = {k: self._to_device(v) for k, v in batch.items()}
        if self.on_device is not None:
            batch = self.on_device(batch)
        if not self._batch_checked:
            check_views(batch, self.pairs_from)
            self._batch_checked = True
        autocast = (torch.autocast("cuda", dtype=self.amp_dtype) if self.amp_dtype is not None else nullcontext())
        with autocast:
            out = self.model(batch)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(out.loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            out.loss.backward()
            self.optimizer.step()
        return StepOutput(out.loss.detach(), dict(out.metrics))

    def train_step(self, batch: Mapping[str, Any]) -> float:
        """`run_step`, then wait for its loss: for one-off calls and tests, not the loop."""
        return float(self.run_step(batch).loss)

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
            "world_size": self.world,
        }

    def save(self, done: bool = False) -> None:
        """Rank 0 writes the checkpoint (every rank holds the same weights)."""
        if distributed.is_main():
            torch_save(self.checkpoint_path, self.state(done))

    def _resumable(self) -> dict[str, Any] | None:
        """Rank 0's view: the checkpoint to continue from, if it belongs to this very
        configuration (a stale one is renamed aside)."""
        if not self.checkpoint_path.exists():
            return None
        ckpt = load_checkpoint(self.checkpoint_path)
        if ckpt.get("fingerprint") != self.fingerprint:
            stale = self.checkpoint_path.with_name(f"{self.checkpoint_path.stem}.stale-{int(time.time())}.pt")
            self.checkpoint_path.rename(stale)
            return None
        return ckpt

    def try_resume(self) -> int:
        """Continue from `checkpoint_path` if it belongs to this very configuration. Rank 0
        decides; under torchrun every rank then loads the same checkpoint."""
        ckpt = self._resumable() if distributed.is_main() else None
        step = distributed.broadcast_object(None if ckpt is None else int(ckpt["step"]))
        if step is None:
            return 0
        if ckpt is None:  # another rank: read the file rank 0 chose
            where = "put --run-dir on a file system that every node mounts"
            if not self.checkpoint_path.exists():
                raise CheckpointError(f"rank {self.rank} cannot see {self.checkpoint_path}, which rank 0 "
                                      "resumes from", where)
            ckpt = load_checkpoint(self.checkpoint_path)
            if ckpt.get("fingerprint") != self.fingerprint or int(ckpt["step"]) != step:
                raise CheckpointError(f"rank {self.rank} reads another {self.checkpoint_path} than rank 0 "
                                      f"(step {ckpt.get('step')}, rank 0: step {step})", where)
        self.objective.load_state_dict(ckpt["objective_state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.step = int(ckpt["step"])
        self.history = [float(x) for x in ckpt.get("history", [])]
        return self.step

    # -- the loop -------------------------------------------------------------------------
    def loader(self, start_step: int) -> torch.utils.data.DataLoader:
        """One loader for every step left: its single pass spans the epochs, so worker
        processes start once per fit and keep prefetching across epoch boundaries."""
        cfg = self.cfg
        bs = cfg.batch_size
        order = RunSampler(len(self.pairs), cfg.seed, self.steps_per_epoch * bs,  # type: ignore[arg-type]
                           start_step * bs, self.total_steps * bs)
        # several ranks: each takes its contiguous slice of every global batch of that order
        sampler = order if self.world == 1 else RankSlices(order, bs, self.rank, self.world)
        workers = cfg.num_workers
        return torch.utils.data.DataLoader(
            SeededItems(self.pairs, cfg.seed), batch_size=self.local_batch, sampler=sampler, num_workers=workers,
            drop_last=True, pin_memory=self.device.type == "cuda",
            prefetch_factor=self.prefetch_factor if workers > 0 else None,
            worker_init_fn=lower_priority if workers > 0 else None)

    def _fetch(self, pending: list[_Pending]) -> list[tuple[float, dict[str, float]]]:
        """The one host sync: every pending loss and metric in a single transfer, averaged
        over the ranks (each rank's shard mean -> the global batch's mean)."""
        tensors: list[torch.Tensor] = []
        for p in pending:
            tensors.append(p.out.loss.reshape(()).double())
            for name, value in p.out.metrics.items():
                if not torch.is_tensor(value):
                    value = torch.tensor(float(value))
                if value.numel() != 1:
                    raise ComponentError(f"the objective's metric {name!r} has {value.numel()} values, "
                                         "not one", "return a scalar (e.g. `.mean()`) for each metric")
                tensors.append(value.detach().reshape(()).double().to(self.device))
        values = iter(distributed.mean_across_ranks(torch.stack(tensors)).cpu().tolist())
        return [(next(values), {name: next(values) for name in p.out.metrics}) for p in pending]

    def _records(self, pending: list[_Pending], fetched: list[tuple[float, dict[str, float]]]) -> list[dict[str, Any]]:
        bs = self.cfg.batch_size
        records = []
        for p, (loss, metrics) in zip(pending, fetched, strict=True):
            step_s = max(p.step_s, 1e-9)
            extra = {k: json_number(v) for k, v in metrics.items() if k not in RESERVED}
            records.append({"event": "step", "step": p.step, "epoch": p.epoch, "loss": json_number(loss),
                            "lr": p.lr, "img_s": bs / step_s, "data_wait": min(p.data_s / step_s, 1.0),
                            "step_s": p.step_s, "data_s": p.data_s, **extra})
        return records

    def fit(self, on_epoch_end: EpochHook | None = None) -> TrainResult:
        self.objective.check_batch_size(self.cfg.batch_size)
        self.on_epoch_end, self.hook_s = on_epoch_end, 0.0
        resumed = self.try_resume()
        self.model.train()
        log = MetricsLog(self.checkpoint_path.parent, resume_step=self.step,
                         steps_per_epoch=self.steps_per_epoch, batch_size=self.cfg.batch_size,
                         write=distributed.is_main())
        start_time = time.perf_counter()
        try:
            self._loop(log, resumed > 0)
        finally:
            log.close()
        self.save(done=True)
        self._epoch_hook(math.ceil(self.step / self.steps_per_epoch), final=True)
        elapsed = max(time.perf_counter() - start_time - self.hook_s, 1e-9)  # training alone
        images = (self.step - resumed) * self.cfg.batch_size
        return TrainResult(self.step, math.ceil(self.step / self.steps_per_epoch),
                           self.history[-1] if self.history else float("nan"), images / elapsed,
                           resumed, self.history, self.world)

    def _loop(self, log: MetricsLog, resumed: bool) -> None:
        spe = self.steps_per_epoch
        pending: list[_Pending] = []
        lr = self.set_epoch_lr(self.step // spe)
        with progress_bar() as progress:
            task = progress.add_task(self.description, total=self.total_steps, completed=self.step,
                                     info="resumed" if resumed else "")
            if self.step >= self.total_steps:
                return
            if resumed and self.step % spe == 0 and self.on_epoch_end is not None:
                progress.stop()  # the epoch ending here: an interruption may have cut its hook short
                self._epoch_hook(self.step // spe, final=False)
                progress.start()
            batches = iter(self.loader(self.step))
            mark = time.perf_counter()
            while self.step < self.total_steps:
                epoch = self.step // spe
                if self.step % spe == 0:
                    lr = self.set_epoch_lr(epoch)
                t0 = time.perf_counter()
                batch = next(batches)
                data_s = time.perf_counter() - t0
                # randomness inside a step (shuffle-BN's permutation, dropout) is a function
                # of (seed, step, rank), so a resumed run draws what an uninterrupted one did
                torch.manual_seed(derive_seed(self.cfg.seed, self.step, self.rank))
                pending.append(_Pending(self.step + 1, epoch + 1, lr, self.run_step(batch), data_s))
                self.step += 1
                epoch_end = self.step % spe == 0
                save_due = self.step % self.cfg.checkpoint_every == 0 and self.step < self.total_steps
                sync = (self.step % self.log_every == 0 or epoch_end or save_due
                        or self.step >= self.total_steps)
                fetched = self._fetch(pending) if sync else []
                now = time.perf_counter()
                pending[-1].step_s, mark = now - mark, now
                progress.update(task, advance=1)
                if not sync:
                    continue
                self._log(pending, fetched, log, progress, task)
                pending = []
                if epoch_end:
                    log.end_epoch(epoch + 1, self.step, lr)
                if save_due:
                    self.save()
                if epoch_end and self.step < self.total_steps and self.on_epoch_end is not None:
                    progress.stop()  # the hook may show bars of its own: one live display at a time
                    self._epoch_hook(epoch + 1, final=False)
                    progress.start()
                    mark = time.perf_counter()  # the hook's time is no step's

    def _epoch_hook(self, epoch: int, final: bool) -> None:
        """Call `on_epoch_end` (if any); its time is not training time."""
        if self.on_epoch_end is None:
            return
        start = time.perf_counter()
        try:
            self.on_epoch_end(epoch, self.step, final)
        finally:
            self.model.train()  # whatever the hook did to the modules' modes
            self.hook_s += time.perf_counter() - start

    def _log(self, pending: list[_Pending], fetched: list[tuple[float, dict[str, float]]], log: MetricsLog,
             progress: Progress, task: TaskID) -> None:
        """At a host sync: keep the exact losses, write the logs, stop on divergence."""
        losses = [loss for loss, _ in fetched]
        self.history.extend(losses)
        log.steps(self._records(pending, fetched))
        for p, loss in zip(pending, losses, strict=True):
            if not math.isfinite(loss):
                raise DataError(f"training diverged at step {p.step}: loss is {loss}",
                                "lower train.lr, or use precision: fp32")
        time_s = sum(p.step_s for p in pending)
        wait = min(sum(p.data_s for p in pending) / max(time_s, 1e-9), 1.0)
        last = pending[-1]
        progress.update(task, info=progress_info(last.epoch, self.cfg.epochs, losses[-1], last.lr,
                                                 len(pending) * self.cfg.batch_size / max(time_s, 1e-9), wait))
