"""Multi-process training (torchrun, DistributedDataParallel) on CPU with gloo: the global
batch splits over the ranks, MoCo's keys are gathered in rank order, two ranks train what
one process trains, rank 0 alone writes, and a killed rank's run resumes exactly."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import require_plugins, write_aloi_views, write_images
from torch import Tensor, nn

from ssl_core.errors import RecipeError, SslcError
from ssl_core.interfaces import Encoder
from ssl_core.kit import distributed
from ssl_core.plugin.host import get_registry
from ssl_core.recipe.schema import TrainConfig
from ssl_core.run.seeding import RankSlices, RunSampler

WORLD = 2
BATCH = 8  # global: 4 images per rank
QUEUE = 16  # two steps of keys fill it


# -- pieces that need no process group ---------------------------------------------------
@pytest.mark.parametrize(("start", "world"), [(0, 2), (16, 2), (0, 4), (40, 4)])
def test_rank_slices_in_rank_order_are_the_global_batches(start: int, world: int) -> None:
    order = RunSampler(30, seed=7, per_epoch=24, start=start, stop=72)
    whole = list(order)
    shards = [list(RankSlices(order, BATCH, r, world)) for r in range(world)]
    per = BATCH // world
    rebuilt = []
    for step in range(len(whole) // BATCH):
        for shard in shards:
            rebuilt.extend(shard[step * per:(step + 1) * per])
    assert rebuilt == whole[:len(rebuilt)] and len(rebuilt) == len(whole) // BATCH * BATCH
    assert all(len(s) == len(RankSlices(order, BATCH, 0, world)) for s in shards)


def test_rank_slices_refuse_an_uneven_split() -> None:
    with pytest.raises(ValueError, match="split evenly"):
        RankSlices(range(10), 6, 0, 4)


def test_single_process_helpers_change_nothing() -> None:
    assert not distributed.is_initialized()
    assert (distributed.world_size(), distributed.rank(), distributed.is_main()) == (1, 0, True)
    distributed.barrier()
    assert distributed.broadcast_object({"step": 3}) == {"step": 3}
    module = nn.Linear(2, 2)
    assert distributed.wrap(module, torch.device("cpu")) is module
    values = torch.tensor([1.0, 2.0])
    assert distributed.mean_across_ranks(values) is values
    assert distributed.init(torch.device("cpu")) == torch.device("cpu")  # no WORLD_SIZE: no group


def test_partial_torchrun_environment_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(SslcError, match="MASTER_ADDR") as err:
        distributed.init(torch.device("cpu"))
    assert "torchrun" in (err.value.hint or "")


def test_global_batch_that_does_not_split_names_train_batch_size(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    from ssl_core.run.trainer import Trainer

    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    with pytest.raises(RecipeError, match="train.batch_size 8") as err:
        Trainer(make_objective(False), Pairs(), config(), device=torch.device("cpu"),
                checkpoint_path=tmp_path / "c.pt", fingerprint="f", encoder_config={"type": "tiny"})
    assert "multiple of 3" in (err.value.hint or "")


# -- two ranks against one process ---------------------------------------------------------
class TinyEncoder(Encoder):
    """A conv and a mean pool; with `bn` a batch norm, so shuffle-BN matters."""

    feature_dim = 6

    def __init__(self, bn: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.norm: nn.Module = nn.BatchNorm2d(6) if bn else nn.Identity()

    def feature_maps(self, x: Tensor) -> dict[str, Tensor]:
        m = torch.relu(self.norm(self.conv(x)))
        return {"layer3": m, "pooled": m.mean(dim=(2, 3))}

    def forward(self, x: Tensor) -> Tensor:
        return self.feature_maps(x)["pooled"]


class Pairs(torch.utils.data.Dataset):
    """Fixed random query/key images: what a step trains on depends on its position only."""

    def __init__(self, n: int = 24, size: int = 8) -> None:
        g = torch.Generator().manual_seed(0)
        self.q = torch.randn(n, 3, size, size, generator=g)
        self.k = torch.randn(n, 3, size, size, generator=g)

    def __len__(self) -> int:
        return len(self.q)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"query": self.q[i], "key": self.k[i]}


def config() -> TrainConfig:
    return TrainConfig(dataset="pairs", pair_sampler={"type": "none"}, objective={"type": "moco-queue"},
                       epochs=1, batch_size=BATCH, lr=0.5, max_steps=2, num_workers=0, log_every=1,
                       checkpoint_every=100, seed=5)


def make_objective(bn: bool, groups: int | None = None) -> Any:
    torch.manual_seed(0)
    objective = get_registry().create("objective", {"type": "moco-queue", "queue_size": QUEUE, "dim": 4,
                                                    "momentum": 0.9, "shuffle_bn_groups": groups})
    objective.bind(TinyEncoder(bn))
    return objective


def train(bn: bool, checkpoint: Path, groups: int | None = None) -> tuple[Any, list[float], list[Tensor]]:
    """Two steps of the real Trainer; returns the objective, the logged losses and the keys
    this rank handed to the queue at each step (before they were gathered)."""
    from ssl_core.run.trainer import Trainer

    objective = make_objective(bn, groups)
    keys: list[Tensor] = []
    enqueue = objective._dequeue_and_enqueue

    def recording(k: Tensor) -> None:
        keys.append(k.detach().clone())
        enqueue(k)

    objective._dequeue_and_enqueue = recording
    trainer = Trainer(objective, Pairs(), config(), device=torch.device("cpu"), checkpoint_path=checkpoint,
                      fingerprint="ddp-test", encoder_config={"type": "tiny"})
    result = trainer.fit()
    return objective, result.history, keys


def _worker(rank: int, port: int, out: str) -> None:
    from ssl_core.kit.progress import set_quiet

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    set_quiet(True)
    with distributed.session(torch.device("cpu")):
        assert (distributed.world_size(), distributed.rank()) == (WORLD, rank)
        for bn in (False, True):
            objective, history, keys = train(bn, Path(out) / f"bn{int(bn)}" / "checkpoint.pt")
            torch.save({"state": objective.state_dict(), "history": history, "keys": keys,
                        "params": dict(objective.named_parameters())},
                       Path(out) / f"bn{int(bn)}-rank{rank}.pt")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both scenarios (no batch norm; batch norm with shuffle-BN) trained by two gloo ranks."""
    require_plugins("moco-queue")
    out = tmp_path_factory.mktemp("ddp")
    torch.multiprocessing.spawn(_worker, args=(free_port(), str(out)), nprocs=WORLD, join=True)
    return out


def load(out: Path, bn: bool, rank: int) -> dict[str, Any]:
    return torch.load(out / f"bn{int(bn)}-rank{rank}.pt", weights_only=True)


@pytest.mark.slow  # two spawned ranks (shared by these three tests)
def test_without_batch_norm_two_ranks_train_what_one_process_trains(two_ranks: Path, tmp_path: Path) -> None:
    objective, history, _ = train(False, tmp_path / "checkpoint.pt")
    single = objective.state_dict()
    for rank in range(WORLD):
        ddp = load(two_ranks, False, rank)
        # the loss rank 0 logs is the global batch's loss, step by step
        torch.testing.assert_close(torch.tensor(ddp["history"]), torch.tensor(history), rtol=0, atol=1e-5)
        assert ddp["state"].keys() == single.keys()
        for key, value in single.items():
            torch.testing.assert_close(ddp["state"][key], value, rtol=0, atol=1e-5, msg=key)
    moved = objective.state_dict()["encoder_q.trunk.conv.weight"] - make_objective(False).state_dict()[
        "encoder_q.trunk.conv.weight"]
    assert moved.abs().max() > 1e-3  # the steps changed the weights: the comparison can fail


@pytest.mark.slow  # two spawned ranks (shared by these tests)
def test_with_batch_norm_one_process_emulating_shuffle_bn_trains_what_two_ranks_train(
        two_ranks: Path, tmp_path: Path) -> None:
    """moco-queue's `shuffle_bn_groups: 2` in one process: the losses, the weights and the
    running statistics (rank 0's, which DDP broadcasts) of the two-rank shuffle-BN run."""
    objective, history, _ = train(True, tmp_path / "checkpoint.pt", groups=WORLD)
    ddp = load(two_ranks, True, 0)
    torch.testing.assert_close(torch.tensor(ddp["history"]), torch.tensor(history), rtol=0, atol=1e-5)
    for key, value in objective.state_dict().items():
        torch.testing.assert_close(ddp["state"][key], value, rtol=0, atol=1e-5, msg=key)
    plain, plain_history, _ = train(True, tmp_path / "plain.pt", groups=1)
    assert max(abs(a - b) for a, b in zip(plain_history, history, strict=True)) > 1e-4


@pytest.mark.slow  # two spawned ranks (shared by these three tests)
def test_queue_holds_both_ranks_keys_in_rank_order_and_ranks_agree(two_ranks: Path) -> None:
    r0, r1 = load(two_ranks, True, 0), load(two_ranks, True, 1)
    per = BATCH // WORLD
    for step in range(2):
        for rank, data in enumerate((r0, r1)):
            assert data["keys"][step].shape[0] == per
            lo = step * BATCH + rank * per
            for holder in (r0, r1):
                torch.testing.assert_close(holder["state"]["queue"][:, lo:lo + per], data["keys"][step].T,
                                           rtol=0, atol=0)
    assert int(r0["state"]["queue_ptr"]) == int(r1["state"]["queue_ptr"]) == 0  # 2 * 8 keys wrapped 16
    assert r0["params"].keys() == r1["params"].keys()
    for name in r0["params"]:
        assert torch.equal(r0["params"][name], r1["params"][name]), name
    assert r0["history"] == r1["history"]


@pytest.mark.slow  # two spawned ranks (shared by these three tests)
def test_rank_zero_alone_writes_the_checkpoint_without_module_prefix(two_ranks: Path) -> None:
    ckpt = torch.load(two_ranks / "bn1" / "checkpoint.pt", weights_only=True)
    assert ckpt["done"] and ckpt["step"] == 2 and ckpt["world_size"] == WORLD
    assert not any(k.startswith("module.") for k in ckpt["objective_state_dict"])
    r0 = load(two_ranks, True, 0)
    for key, value in r0["state"].items():
        assert torch.equal(ckpt["objective_state_dict"][key], value), key
    lines = (two_ranks / "bn1" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines if json.loads(x)["event"] == "step"] == [1, 2]


# -- the command: torchrun --nproc-per-node 2 $(which sslc) run RECIPE -----------------------
STEPS = 6  # 24 images, global batch 8: 3 steps an epoch, 2 epochs, a checkpoint every 2 steps
RECIPE = """\
name: ddp
data_root: {root}
datasets:
  train: {{type: image-folder, root: images}}
  aloi: {{type: aloi, root: aloi}}
models:
  m:
    encoder: {{type: resnet18, small_input: true}}
    train:
      dataset: train
      pair_sampler: {{type: aggressive-crop, size: 16}}
      objective: {{type: moco-queue, queue_size: 32, dim: 8, momentum: 0.9}}
      epochs: 2
      batch_size: 8
      lr: 0.05
      num_workers: 0
      checkpoint_every: 2
      log_every: 1
      seed: 3
probes:
  viewpoint: {{type: aloi-viewpoint, dataset: aloi, image_size: 16}}
probe_settings: {{top_k: [3], num_workers: 0, resamples: 50}}
"""


def make_recipe(tmp_path: Path) -> Path:
    require_plugins("image-folder", "aloi", "aloi-viewpoint", "resnet18", "aggressive-crop", "moco-queue")
    if not (tmp_path / "images").exists():
        write_images(tmp_path / "images", {"a": 12, "b": 12}, size=20)
        write_aloi_views(tmp_path / "aloi")
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE.format(root=tmp_path))
    return path


def sslc_script() -> str:
    """The `sslc` console script beside this Python (a pyenv shim is not a Python file)."""
    here = Path(sys.executable).parent / "sslc"
    found = str(here) if here.is_file() else shutil.which("sslc")
    if found is None:
        pytest.skip("the sslc console script is not installed")
    return found


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={WORLD}",
            sslc_script(), *args]


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One whole 2-rank run (train, probe, report): what the command writes, and the weights
    a killed and restarted run must end with."""
    tmp = tmp_path_factory.mktemp("torchrun")
    recipe = make_recipe(tmp)
    done = subprocess.run(torchrun("run", str(recipe), "--run-dir", str(tmp / "a"), "--json"),
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp, done


@pytest.mark.slow
def test_torchrun_trains_writes_one_set_of_results_and_probes_once(
        uninterrupted: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    tmp, done = uninterrupted
    run_dir = tmp / "a"
    report = json.loads(done.stdout)  # one report on stdout: rank 1 printed nothing
    assert set(report) and (run_dir / "report.md").is_file()
    train = json.loads((run_dir / "models" / "m" / "train.json").read_text())
    assert train["world_size"] == WORLD and train["steps"] == STEPS
    lines = [json.loads(x) for x in (run_dir / "models" / "m" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["event"] == "step"] == list(range(1, STEPS + 1))  # one writer
    assert [r["epoch"] for r in lines if r["event"] == "epoch"] == [1, 2]
    probe = json.loads((run_dir / "probes" / "m" / "viewpoint.json").read_text())
    assert 0 < probe["top3"] <= 100
    ckpt = torch.load(run_dir / "models" / "m" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["world_size"] == WORLD and not any(k.startswith("module.") for k in ckpt["encoder_state_dict"])


@pytest.mark.slow
def test_torchrun_probe_stage_alone_runs_on_rank_zero_without_waiting_for_the_others(
        uninterrupted: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """No training: rank 0 probes alone (the model is loaded from its checkpoint), the others
    exit; a collective on rank 0 here would hang until the timeout."""
    tmp, _ = uninterrupted
    probe = tmp / "a" / "probes" / "m" / "viewpoint.json"
    before = json.loads(probe.read_text())
    done = subprocess.run(torchrun("run", str(tmp / "recipe.yaml"), "--run-dir", str(tmp / "a"),
                                   "--stages", "probe,report", "--force", "--json"),
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) and json.loads(probe.read_text())["top3"] == before["top3"]


def rank_pid(parent: int, rank: int) -> int | None:
    """The pid of torchrun's worker process with RANK=`rank`."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in environ:
            return int(proc.name)
    return None


def final_state(run_dir: Path) -> dict[str, Tensor]:
    ckpt = torch.load(run_dir / "models" / "m" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["done"]
    return ckpt["objective_state_dict"]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's pid in /proc")
def test_sigkill_of_one_rank_then_restart_gives_the_uninterrupted_weights(
        uninterrupted: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    tmp, _ = uninterrupted
    reference = final_state(tmp / "a")
    args = ("run", str(tmp / "recipe.yaml"), "--stages", "train", "--quiet", "--run-dir", str(tmp / "b"))
    ckpt = tmp / "b" / "models" / "m" / "checkpoint.pt"
    proc = subprocess.Popen(torchrun(*args), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    victim = rank_pid(proc.pid, 1)
    assert victim is not None, "rank 1 not found (training over before the kill?)"
    os.kill(victim, signal.SIGKILL)
    assert proc.wait(timeout=300) != 0  # torchrun stops the other rank and fails
    partial = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert not partial["done"] and 0 < partial["step"] < STEPS

    subprocess.run(torchrun(*args), env=ENV, check=True, capture_output=True, timeout=600)
    train = json.loads((tmp / "b" / "models" / "m" / "train.json").read_text())
    assert train["resumed_from_step"] > 0 and train["world_size"] == WORLD
    resumed = final_state(tmp / "b")
    assert reference.keys() == resumed.keys()
    for key in reference:
        assert torch.equal(reference[key], resumed[key]), key
    lines = (tmp / "b" / "models" / "m" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines if json.loads(x)["event"] == "step"] == list(range(1, STEPS + 1))


@pytest.mark.gpu
@pytest.mark.parametrize("nproc", [1, 2])
def test_torchrun_on_gpus_over_nccl(nproc: int, tmp_path: Path) -> None:
    """NCCL, cuda:LOCAL_RANK, DDP with device ids, rank-0 writes (one GPU: a 1-process group)."""
    if torch.cuda.device_count() < nproc:
        pytest.skip(f"needs {nproc} GPUs")
    recipe = make_recipe(tmp_path)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           sslc_script(), "run", str(recipe), "--run-dir", str(tmp_path / "run"), "--device", "cuda", "--json"]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)
    train = json.loads((tmp_path / "run" / "models" / "m" / "train.json").read_text())
    assert train["world_size"] == nproc and train["device"] == "cuda:0" and train["steps"] == STEPS
    ckpt = torch.load(tmp_path / "run" / "models" / "m" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["done"] and not any(k.startswith("module.") for k in ckpt["objective_state_dict"])
    assert all(math.isfinite(x) for x in ckpt["history"])
