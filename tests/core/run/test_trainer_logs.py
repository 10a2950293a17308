"""Training logs (metrics.jsonl, TensorBoard), host syncs only every `log_every` steps, one
DataLoader per fit, channels_last: the real Trainer on a tiny encoder and objective."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ssl_core.errors import DataError
from ssl_core.interfaces import ContrastiveObjective, Encoder, ObjectiveOutput
from ssl_core.recipe.schema import TrainConfig
from ssl_core.results.layout import METRICS_FILE
from ssl_core.run.metrics_log import TENSORBOARD_DIR
from ssl_core.run.seeding import EpochSampler, RunSampler
from ssl_core.run.trainer import Trainer, cosine_lr, progress_info


class Config(TrainConfig):
    """TrainConfig with the trainer options read through getattr (until recipe.py has them)."""

    log_every: int = 10
    channels_last: bool | None = None
    prefetch_factor: int = 2


class Pairs(torch.utils.data.Dataset):
    """Random views drawn from torch's RNG, so each item depends on its (seed, epoch, index)."""

    def __init__(self, n: int, size: int = 8) -> None:
        self.n, self.size = n, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        base = torch.full((3, self.size, self.size), float(index) / self.n)
        return {"query": base + 0.3 * torch.rand(3, self.size, self.size),
                "key": base + 0.3 * torch.rand(3, self.size, self.size),
                "pid": torch.tensor(os.getpid())}


class TinyEncoder(Encoder):
    feature_dim = 8

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)).relu().mean((2, 3))

    def feature_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        m = self.bn(self.conv(x)).relu()
        return {"layer3": m, "pooled": m.mean((2, 3))}


class Crash(Exception):
    """Stands in for a kill in the middle of training."""


class InBatchNCE(ContrastiveObjective):
    """In-batch InfoNCE whose metrics stay tensors; records what the trainer hands it."""

    def __init__(self, *, nan_at: int | None = None, crash_at: int | None = None,
                 watch: Path | None = None) -> None:
        super().__init__()
        self.nan_at, self.crash_at, self.watch = nan_at, crash_at, watch
        self.calls = 0
        self.pids: set[int] = set()
        self.lines_seen: list[int] = []
        self.channels_last_inputs: list[bool] = []

    def bind(self, encoder: Encoder) -> None:
        self._encoder = encoder
        self.head = nn.Linear(encoder.feature_dim, 8)

    @property
    def encoder(self) -> Encoder:
        return self._encoder

    def forward(self, batch: Any) -> ObjectiveOutput:
        self.calls += 1
        if self.crash_at == self.calls:
            raise Crash
        if batch["pid"].device.type == "cpu":  # reading it on CUDA would be a host sync
            self.pids.update(batch["pid"].tolist())
        self.channels_last_inputs.append(batch["query"].is_contiguous(memory_format=torch.channels_last))
        if self.watch is not None:
            text = self.watch.read_text() if self.watch.exists() else ""
            self.lines_seen.append(sum('"event": "step"' in line for line in text.splitlines()))
        q = F.normalize(self.head(self._encoder(batch["query"])), dim=1)
        k = F.normalize(self.head(self._encoder(batch["key"])), dim=1)
        logits = q @ k.T / 0.2
        labels = torch.arange(len(q), device=q.device)
        loss = F.cross_entropy(logits, labels)
        if self.nan_at == self.calls:
            loss = loss * float("nan")
        acc1 = (logits.argmax(1) == labels).float().mean() * 100
        return ObjectiveOutput(loss, {"acc1": acc1, "loss": loss.detach()})  # type: ignore[dict-item]


def make_trainer(run_dir: Path, *, n: int = 20, objective: InBatchNCE | None = None,
                 device: str = "cpu", **cfg: Any) -> Trainer:
    torch.manual_seed(0)
    objective = objective or InBatchNCE()
    objective.bind(TinyEncoder())
    settings = {"epochs": 2, "batch_size": 4, "lr": 0.1, "num_workers": 0, "checkpoint_every": 1000,
                "seed": 5, **cfg}
    config = Config(dataset="-", pair_sampler={}, objective={}, **settings)
    return Trainer(objective, Pairs(n), config, device=torch.device(device),
                   checkpoint_path=run_dir / "checkpoint.pt", fingerprint="test", encoder_config={})


def read_log(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines()]


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.objective.state_dict().items()}


def test_metrics_jsonl_has_each_step_once_and_epoch_summaries(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, log_every=3)
    result = trainer.fit()
    records = read_log(tmp_path)
    steps = [r for r in records if r["event"] == "step"]
    epochs = [r for r in records if r["event"] == "epoch"]
    assert [r["step"] for r in steps] == list(range(1, 11))
    assert [r["epoch"] for r in steps] == [1] * 5 + [2] * 5
    assert [r["loss"] for r in steps] == result.history  # exact: the same floats
    assert steps[7]["lr"] == pytest.approx(cosine_lr(0.1, 1, 2))
    for r in steps:
        assert 0.0 <= r["data_wait"] <= 1.0 and r["img_s"] > 0 and 0 <= r["acc1"] <= 100
        assert r["data_s"] <= r["step_s"]
    assert [(r["epoch"], r["step"], r["steps"]) for r in epochs] == [(1, 5, 5), (2, 10, 5)]
    assert epochs[0]["loss"] == pytest.approx(sum(result.history[:5]) / 5)
    assert epochs[1]["acc1"] == pytest.approx(sum(r["acc1"] for r in steps[5:]) / 5)
    assert records.index(epochs[0]) == 5  # the epoch summary follows its last step
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["history"] == result.history


def test_losses_are_fetched_from_the_device_only_every_log_every_steps(tmp_path: Path) -> None:
    watch = InBatchNCE(watch=tmp_path / METRICS_FILE)
    make_trainer(tmp_path, n=40, epochs=1, log_every=4, objective=watch).fit()
    # before step c, c - 1 steps are done but only whole windows of 4 have been fetched
    assert watch.lines_seen == [(c - 1) // 4 * 4 for c in range(1, 11)]


def test_resume_cuts_the_log_back_and_continues_it_exactly(tmp_path: Path) -> None:
    reference = make_trainer(tmp_path / "a", epochs=3, log_every=2, checkpoint_every=4)
    reference.fit()
    crashing = make_trainer(tmp_path / "b", epochs=3, log_every=2, checkpoint_every=4,
                            objective=InBatchNCE(crash_at=7))
    with pytest.raises(Crash):
        crashing.fit()
    before = read_log(tmp_path / "b")
    assert [r["step"] for r in before if r["event"] == "step"] == [1, 2, 3, 4, 5, 6]  # beyond the checkpoint
    assert any(r["event"] == "epoch" for r in before)

    resumed = make_trainer(tmp_path / "b", epochs=3, log_every=2, checkpoint_every=4)
    assert resumed.fit().resumed_from_step == 4
    a, b = read_log(tmp_path / "a"), read_log(tmp_path / "b")
    assert [(r["event"], r["step"], r["epoch"]) for r in a] == [(r["event"], r["step"], r["epoch"]) for r in b]
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-12)
    assert [r.get("acc1") for r in a] == pytest.approx([r.get("acc1") for r in b], rel=1e-12)
    wa, wb = weights(reference), weights(resumed)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_divergence_is_caught_at_the_next_sync_and_never_checkpointed(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, log_every=10, checkpoint_every=2, objective=InBatchNCE(nan_at=3))
    with pytest.raises(DataError, match="diverged at step 3"):
        trainer.fit()
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 2 and len(ckpt["history"]) == 2 and not ckpt["done"]
    logged = read_log(tmp_path)
    assert [r["loss"] is None for r in logged if r["event"] == "step"] == [False, False, True, True]  # NaN weights after 3


def test_one_loader_per_fit_and_worker_count_does_not_change_training(tmp_path: Path) -> None:
    single = make_trainer(tmp_path / "w0", epochs=3, num_workers=0)
    r0 = single.fit()
    pooled = make_trainer(tmp_path / "w2", epochs=3, num_workers=2, prefetch_factor=3)
    r2 = pooled.fit()
    assert isinstance(pooled.objective, InBatchNCE)
    assert len(pooled.objective.pids) == 2 and os.getpid() not in pooled.objective.pids  # not 2 per epoch
    assert r0.history == r2.history
    w0, w2 = weights(single), weights(pooled)
    assert all(torch.equal(w0[k], w2[k]) for k in w0)


def test_run_sampler_is_the_epoch_permutations_end_to_end() -> None:
    whole = [x for e in range(3) for x in EpochSampler(10, 7, e, 0, limit=8)]
    assert list(RunSampler(10, 7, 8, 0, 24)) == whole
    assert list(RunSampler(10, 7, 8, 5, 20)) == whole[5:20]  # a resumed run draws the same suffix
    assert len(RunSampler(10, 7, 8, 5, 20)) == 15


def test_channels_last_option_converts_model_and_batches(tmp_path: Path) -> None:
    plain = make_trainer(tmp_path / "plain", epochs=1)
    assert not plain.channels_last  # auto is off on CPU
    nhwc = make_trainer(tmp_path / "nhwc", epochs=1, channels_last=True)
    assert isinstance(nhwc.objective, InBatchNCE)
    conv = nhwc.objective.encoder.conv.weight  # type: ignore[union-attr]
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    h_plain, h_nhwc = plain.fit().history, nhwc.fit().history
    assert all(nhwc.objective.channels_last_inputs)
    assert h_nhwc == pytest.approx(h_plain, rel=1e-4)


def test_without_tensorboard_the_logs_skip_it_silently(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import raises ImportError
    make_trainer(tmp_path, epochs=1).fit()
    assert not (tmp_path / TENSORBOARD_DIR).exists()
    assert len(read_log(tmp_path)) == 6


def test_tensorboard_when_installed_has_each_step_once_after_a_resume(tmp_path: Path) -> None:
    pytest.importorskip("torch.utils.tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with pytest.raises(Crash):
        make_trainer(tmp_path, epochs=3, log_every=2, checkpoint_every=4, objective=InBatchNCE(crash_at=7)).fit()
    result = make_trainer(tmp_path, epochs=3, log_every=2, checkpoint_every=4).fit()
    events = EventAccumulator(str(tmp_path / TENSORBOARD_DIR))
    events.Reload()
    losses = events.Scalars("step/loss")
    assert [e.step for e in losses] == list(range(1, 16))
    assert [e.value for e in losses] == pytest.approx(result.history, rel=1e-6)
    assert [e.step for e in events.Scalars("epoch/loss")] == [5, 10, 15]


def test_progress_bar_shows_the_data_wait_fraction() -> None:
    text = progress_info(2, 8, 5.4321, 0.03, 812.4, 0.35)
    assert text == "epoch 2/8 loss 5.432 lr 0.0300 812 img/s wait 35%"


@pytest.mark.gpu
def test_cuda_loop_syncs_with_the_host_only_at_log_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = make_trainer(tmp_path, n=40, epochs=1, log_every=4, device="cuda")
    assert trainer.amp_dtype is not None and trainer.channels_last  # auto: on with AMP on CUDA
    trainer.train_step(next(iter(trainer.loader(0))))  # warm-up: cuDNN/cuBLAS set-up may sync
    trainer.step, trainer.history = 0, []
    fetches: list[int] = []
    fetch, save = trainer._fetch, trainer.save

    def allowed(fn: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            torch.cuda.set_sync_debug_mode(0)
            try:
                return fn(*args, **kwargs)
            finally:
                torch.cuda.set_sync_debug_mode("error")
        return call

    def counted_fetch(pending: Any) -> Any:
        fetches.append(pending[-1].step)
        return fetch(pending)

    monkeypatch.setattr(trainer, "_fetch", allowed(counted_fetch))
    monkeypatch.setattr(trainer, "save", allowed(save))
    torch.cuda.set_sync_debug_mode("error")  # any other synchronising call raises
    try:
        result = trainer.fit()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert fetches == [4, 8, 10] and result.steps == 10
    assert len(read_log(tmp_path)) == 11 and all(math.isfinite(x) for x in result.history)


class LargerKeys(Pairs):
    """A broken sampler's items: the key 8 px larger than the query (an in-batch loss
    through a global pool would train on them without a word)."""

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = super().__getitem__(index)
        return {**item, "key": torch.rand(3, self.size + 8, self.size + 8)}


def test_a_sampler_whose_views_differ_in_shape_is_named_at_the_first_step(tmp_path: Path) -> None:
    from ssl_core.errors import ComponentError

    trainer = make_trainer(tmp_path)
    trainer.pairs = LargerKeys(20)
    trainer.pairs_from = "pair sampler 'broken' (models.m.train.pair_sampler)"
    batch = torch.utils.data.default_collate([trainer.pairs[i] for i in range(4)])
    with pytest.raises(ComponentError, match=r"pair sampler 'broken' \(models.m.train.pair_sampler\) "
                                             r"gave query \(4, 3, 8, 8\) and key \(4, 3, 16, 16\)"):
        trainer.run_step(batch)
    good = torch.utils.data.default_collate([Pairs(20)[i] for i in range(4)])
    assert torch.isfinite(trainer.run_step(good).loss)
    hwc = {**good, "query": good["query"].permute(0, 2, 3, 1), "key": good["key"].permute(0, 2, 3, 1)}
    fresh = make_trainer(tmp_path / "b")
    with pytest.raises(ComponentError, match=r"'query' batches of shape \(4, 8, 8, 3\)"):
        fresh.run_step(hwc)
