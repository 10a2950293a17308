"""moco-queue against hand-written MoCo-v2 computations and the official checkpoint layout."""

from __future__ import annotations

import copy
import os

import pytest
import torch
import torch.nn.functional as F

from ssl_core.errors import CheckpointError, ComponentError, SslcError
from ssl_core.interfaces import Encoder
from ssl_core.plugin.registry import Registry, make_spec
from ssl_core.testing import check_steps_never_wait
from sslc_plugins import moco_queue
from sslc_plugins.moco_queue import MocoFormat, MocoQueue, MocoQueueParams, official_checkpoint
from sslc_plugins.resnet import RESNETS, ResNetParams

SIZE = 16  # tiny images keep a resnet18 step well under a second on CPU


def make_objective(seed: int = 0, **kw) -> MocoQueue:
    torch.manual_seed(seed)
    params = {"dim": 8, "queue_size": 16, "momentum": 0.9, "temperature": 0.2, **kw}
    obj = MocoQueue(MocoQueueParams(**params))
    obj.bind(RESNETS["resnet18"](ResNetParams(small_input=True)))
    return obj


def make_batch(b: int = 4, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "query": torch.randn(b, 3, SIZE, SIZE, generator=g),
        "key": torch.randn(b, 3, SIZE, SIZE, generator=g),
        "index": torch.arange(b),
    }


def perturb_query(obj: MocoQueue) -> None:
    """Make the query branch differ from the key branch, as after an optimizer step."""
    with torch.no_grad():
        for p in obj.encoder_q.parameters():
            p.add_(0.01 * torch.randn_like(p))


def expected_keys(obj: MocoQueue, im_k: torch.Tensor) -> torch.Tensor:
    """k = normalize(key branch after k <- m*k + (1-m)*q), computed on a copy."""
    k_branch = copy.deepcopy(obj.encoder_k)
    with torch.no_grad():
        for pk, pq in zip(k_branch.parameters(), obj.encoder_q.parameters(), strict=True):
            pk.copy_(pk * obj.m + pq * (1.0 - obj.m))
        return F.normalize(k_branch(im_k), dim=1)


def test_bind_builds_heads_key_copy_and_queue() -> None:
    obj = make_objective()
    sd = obj.state_dict()
    assert tuple(sd["encoder_q.fc.0.weight"].shape) == (512, 512)
    assert tuple(sd["encoder_q.fc.2.weight"].shape) == (8, 512)
    assert tuple(obj.queue.shape) == (8, 16)
    torch.testing.assert_close(obj.queue.norm(dim=0), torch.ones(16))
    assert obj.queue_ptr.tolist() == [0]
    assert obj.encoder is obj.encoder_q.trunk
    assert all(not p.requires_grad for p in obj.encoder_k.parameters())
    assert all(p.requires_grad for p in obj.encoder_q.parameters())
    for (nq, pq), (nk, pk) in zip(obj.encoder_q.named_parameters(),
                                  obj.encoder_k.named_parameters(), strict=True):
        assert nq == nk and torch.equal(pq, pk) and pq.data_ptr() != pk.data_ptr()
    with pytest.raises(ComponentError, match="already bound"):
        obj.bind(RESNETS["resnet18"](ResNetParams(small_input=True)))


def test_unbound_use_is_a_clear_error() -> None:
    obj = MocoQueue(MocoQueueParams(dim=8, queue_size=16))
    with pytest.raises(ComponentError, match="bind"):
        obj(make_batch())
    with pytest.raises(ComponentError, match="bind"):
        _ = obj.encoder


def test_single_linear_head_without_mlp() -> None:
    obj = make_objective(mlp=False)
    keys = moco_queue.to_official_state_dict(obj)
    assert "module.encoder_q.fc.weight" in keys and "module.encoder_q.fc.bias" in keys
    assert not any(k.startswith("module.encoder_q.fc.0") for k in keys)


def test_momentum_update_is_exact_and_happens_before_the_key_pass() -> None:
    obj = make_objective()
    perturb_query(obj)
    old_k = [p.detach().clone() for p in obj.encoder_k.parameters()]
    old_q = [p.detach().clone() for p in obj.encoder_q.parameters()]
    batch = make_batch()
    keys = expected_keys(obj, batch["key"])
    obj(batch)
    for pk, k0, q0 in zip(obj.encoder_k.parameters(), old_k, old_q, strict=True):
        assert torch.equal(pk, k0 * 0.9 + q0 * (1.0 - 0.9))
    # the keys enqueued were computed with the updated key encoder
    torch.testing.assert_close(obj.queue[:, :4], keys.T, rtol=1e-5, atol=1e-6)


def test_momentum_update_touches_parameters_only() -> None:
    obj = make_objective()
    with torch.no_grad():
        obj.encoder_q.trunk.bn1.running_mean.fill_(5.0)
    obj(make_batch())
    # the key BN statistics come from its own forward pass, never from the query's
    assert obj.encoder_k.trunk.bn1.running_mean.abs().max() < 1.0
    assert int(obj.encoder_k.trunk.bn1.num_batches_tracked) == 1


def test_loss_is_infonce_against_the_queue_before_enqueue() -> None:
    obj = make_objective()
    perturb_query(obj)
    batch = make_batch()
    ref = copy.deepcopy(obj)
    queue_before = obj.queue.clone()
    out = obj(batch)

    with torch.no_grad():
        q = F.normalize(ref.encoder_q(batch["query"]), dim=1)
        k = expected_keys(ref, batch["key"])
    T = 0.2
    losses, hits = [], 0
    for i in range(q.shape[0]):
        pos = torch.exp(torch.dot(q[i], k[i]) / T)
        negs = [torch.exp(torch.dot(q[i], queue_before[:, j]) / T) for j in range(16)]
        losses.append(-torch.log(pos / (pos + sum(negs))))
        hits += int(all(pos > n for n in negs))
    torch.testing.assert_close(out.loss.detach(), torch.stack(losses).mean(), rtol=1e-5, atol=1e-6)
    assert set(out.metrics) == {"acc1"}  # a tensor: read back only when the trainer logs
    assert float(out.metrics["acc1"]) == pytest.approx(100.0 * hits / q.shape[0])


def test_key_encoder_gets_no_gradient() -> None:
    obj = make_objective()
    out = obj(make_batch())
    out.loss.backward()
    assert all(p.grad is None for p in obj.encoder_k.parameters())
    assert obj.queue.grad is None and not obj.queue.requires_grad
    grads = [p.grad for p in obj.encoder_q.parameters()]
    assert all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_queue_wraps_around_and_holds_the_last_keys_in_order() -> None:
    obj = make_objective(queue_size=12)
    enqueued, ptrs = [], []
    for step in range(3):
        batch = make_batch(seed=10 + step)
        enqueued.append(expected_keys(obj, batch["key"]))
        obj(batch)
        ptrs.append(int(obj.queue_ptr))
    assert ptrs == [4, 8, 0]
    torch.testing.assert_close(obj.queue, torch.cat(enqueued).T, rtol=1e-5, atol=1e-6)


def test_queue_overwrites_oldest_keys_when_ptr_wraps() -> None:
    obj = make_objective(queue_size=8)
    keys = []
    for step in range(3):
        batch = make_batch(seed=20 + step)
        keys.append(expected_keys(obj, batch["key"]))
        obj(batch)
    assert int(obj.queue_ptr) == 4
    torch.testing.assert_close(obj.queue[:, :4], keys[2].T, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(obj.queue[:, 4:], keys[1].T, rtol=1e-5, atol=1e-6)


def test_check_batch_size() -> None:
    obj = MocoQueue(MocoQueueParams(dim=8, queue_size=16))
    obj.check_batch_size(4)
    obj.check_batch_size(16)
    with pytest.raises(ComponentError) as err:
        obj.check_batch_size(6)
    assert "16" in err.value.message and "6" in err.value.message
    assert "12 or 18" in err.value.hint
    with pytest.raises(ComponentError):
        MocoQueue(MocoQueueParams(dim=8, queue_size=65536)).check_batch_size(100)
    with pytest.raises(ComponentError, match="positive"):
        obj.check_batch_size(0)


def test_shuffle_bn_groups_default_and_when_they_apply() -> None:
    obj = make_objective()
    assert obj.shuffle_bn_groups is None
    assert [obj.groups(b) for b in (4, 6, 8, 12, 256)] == [1, 1, 2, 3, 8]  # >= 4 images each
    obj.eval()
    assert obj.groups(256) == 1  # running statistics: nothing to emulate
    assert make_objective(shuffle_bn=False).groups(256) == 1
    assert make_objective(shuffle_bn_groups=1).groups(256) == 1
    assert make_objective(shuffle_bn_groups=4).groups(8) == 4
    no_bn = MocoQueue(MocoQueueParams(dim=8, queue_size=16))
    no_bn.bind(TinyEncoder())
    assert no_bn.groups(256) == 1
    with pytest.raises(ComponentError, match="shuffle_bn_groups 3"):
        make_objective(shuffle_bn_groups=3).check_batch_size(8)


class TinyEncoder(Encoder):
    """A conv trunk without BatchNorm."""

    feature_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def feature_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        m = self.conv(x)
        return {"layer3": m, "pooled": m.mean(dim=(2, 3))}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_maps(x)["pooled"]


def test_one_process_shuffle_bn_is_emulated_by_batch_norm_groups() -> None:
    """Queries in consecutive groups, keys shuffled into groups (each its own BatchNorm
    statistics), computed by hand on a copy; the running statistics are the first group's."""
    obj = make_objective(shuffle_bn_groups=2)
    perturb_query(obj)
    ref = copy.deepcopy(obj)
    batch = make_batch(b=8, seed=3)
    queue_before = obj.queue.clone()
    torch.manual_seed(7)
    out = obj(batch)

    torch.manual_seed(7)
    perm = torch.randperm(8)
    with torch.no_grad():
        q = torch.cat([ref.encoder_q(batch["query"][:4]), ref.encoder_q(batch["query"][4:])])
        for pk, pq in zip(ref.encoder_k.parameters(), ref.encoder_q.parameters(), strict=True):
            pk.copy_(pk * ref.m + pq * (1.0 - ref.m))
        first = copy.deepcopy(ref.encoder_k)
        shuffled = batch["key"][perm]
        k = torch.cat([first(shuffled[:4]), ref.encoder_k(shuffled[4:])])[torch.argsort(perm)]
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue_before], dim=1) / 0.2
    expected = F.cross_entropy(logits, torch.zeros(8, dtype=torch.long))
    torch.testing.assert_close(out.loss.detach(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(obj.queue[:, :8], k.T, rtol=1e-5, atol=1e-6)
    # running statistics: the first group's, as DDP broadcasts rank 0's
    torch.testing.assert_close(obj.encoder_k.trunk.bn1.running_mean,
                               first.trunk.bn1.running_mean)
    assert int(obj.encoder_q.trunk.bn1.num_batches_tracked) == 1
    out.loss.backward()  # the restored running statistics do not upset autograd
    assert obj.encoder_q.trunk.conv1.weight.grad.abs().sum() > 0
    # ... and the groups change the numbers: one full-batch BatchNorm gives another loss
    off = copy.deepcopy(ref)
    off.shuffle_bn_groups = 1
    assert abs(float(off(batch).loss.detach()) - float(out.loss.detach())) > 1e-4


def test_runtime_batch_that_does_not_divide_the_queue() -> None:
    obj = make_objective(queue_size=16)
    with pytest.raises(ComponentError, match="drop_last"):
        obj(make_batch(b=3))


def test_official_layout_round_trip(tmp_path) -> None:
    obj = make_objective(seed=0)
    perturb_query(obj)
    obj(make_batch(seed=3))  # queue, ptr and the key encoder now differ from a fresh one
    opt = torch.optim.SGD([p for p in obj.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    ckpt = official_checkpoint(obj, epoch=7, arch="resnet18", optimizer_state=opt.state_dict())
    assert set(ckpt) == {"epoch", "arch", "state_dict", "optimizer"}
    keys = list(ckpt["state_dict"])
    for k in ("module.encoder_q.conv1.weight", "module.encoder_q.layer3.0.bn1.running_mean",
              "module.encoder_q.fc.0.weight", "module.encoder_q.fc.2.bias",
              "module.encoder_k.conv1.weight", "module.encoder_k.fc.2.weight",
              "module.queue", "module.queue_ptr"):
        assert k in keys
    assert all(k.startswith("module.") and ".trunk." not in k for k in keys)
    path = tmp_path / "checkpoint_0007.pth.tar"
    torch.save(ckpt, path)
    loaded = torch.load(path, weights_only=True)

    fresh = make_objective(seed=123)
    assert not torch.equal(fresh.queue, obj.queue)
    missing, unexpected = moco_queue.load_official_state_dict(fresh, loaded["state_dict"])
    assert missing == [] and unexpected == []
    assert int(fresh.queue_ptr) == int(obj.queue_ptr) == 4
    # identical outputs: frozen features and a full training step
    obj.eval()
    fresh.eval()
    x = make_batch(seed=4)["query"]
    with torch.no_grad():
        assert torch.equal(obj.encoder(x), fresh.encoder(x))
    obj.train()
    fresh.train()
    batch = make_batch(seed=5)
    a, b = obj(batch), fresh(batch)
    assert torch.equal(a.loss, b.loss)
    assert torch.equal(obj.queue, fresh.queue)

    # the registered `moco` format picks the query trunk, keys as torchvision's
    picked = MocoFormat().select(loaded["state_dict"], {})
    assert picked is not None and picked[1] == "module.encoder_q."
    trunk = {k: v for k, v in picked[0].items() if not k.startswith("fc.")}
    enc = RESNETS["resnet18"](ResNetParams(small_input=True))
    enc.load_state_dict(trunk)


def test_queue_that_cannot_fit_is_refused_before_allocating() -> None:
    with pytest.raises(SslcError, match="queue_size=100000000000"):
        MocoQueue(MocoQueueParams(dim=128, queue_size=100_000_000_000))


def test_load_without_module_prefix_and_whole_checkpoint() -> None:
    obj = make_objective(seed=0)
    obj(make_batch())
    bare = moco_queue.to_official_state_dict(obj, prefix="")
    assert "encoder_q.conv1.weight" in bare and "queue" in bare
    fresh = make_objective(seed=9)
    moco_queue.load_official_state_dict(fresh, bare)
    assert torch.equal(fresh.queue, obj.queue)
    fresh2 = make_objective(seed=10)
    moco_queue.load_official_state_dict(fresh2, official_checkpoint(obj, 1, "resnet18", None))
    for a, b in zip(fresh2.state_dict().values(), obj.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_load_reports_missing_unexpected_and_shape_errors() -> None:
    obj = make_objective()
    sd = moco_queue.to_official_state_dict(obj)
    broken = dict(sd)
    del broken["module.encoder_k.fc.0.bias"]
    broken["module.encoder_q.fc.9.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        moco_queue.load_official_state_dict(make_objective(), broken)
    assert "encoder_k.fc.0.bias" in err.value.message
    assert "encoder_q.fc.9.weight" in err.value.message
    missing, unexpected = moco_queue.load_official_state_dict(make_objective(), broken, strict=False)
    assert missing == ["encoder_k.fc.0.bias"] and unexpected == ["encoder_q.fc.9.weight"]

    other_k = make_objective(queue_size=8)
    with pytest.raises(CheckpointError, match="queue") as err:
        moco_queue.load_official_state_dict(other_k, sd)
    assert "queue_size=16" in err.value.hint


def test_autocast_keeps_loss_and_queue_in_float32() -> None:
    obj = make_objective()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = obj(make_batch())
    assert out.loss.dtype == torch.float32
    assert obj.queue.dtype == torch.float32
    out.loss.backward()
    assert torch.isfinite(out.loss)


def test_trainer_style_loop_with_default_collate() -> None:
    obj = make_objective(momentum=0.99)
    items = [{"query": torch.randn(3, SIZE, SIZE), "key": torch.randn(3, SIZE, SIZE), "index": i}
             for i in range(8)]
    loader = torch.utils.data.DataLoader(items, batch_size=4, drop_last=True)
    obj.check_batch_size(4)
    opt = torch.optim.SGD([p for p in obj.parameters() if p.requires_grad], lr=0.03,
                          momentum=0.9, weight_decay=1e-4)
    before_q = obj.encoder_q.fc[0].weight.detach().clone()
    before_k = obj.encoder_k.fc[0].weight.detach().clone()
    for batch in loader:
        out = obj(batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        assert torch.isfinite(out.loss)
    assert not torch.equal(obj.encoder_q.fc[0].weight, before_q)
    assert not torch.equal(obj.encoder_k.fc[0].weight, before_k)
    assert int(obj.queue_ptr) == 8 % 16


def test_a_training_step_never_waits_for_the_device() -> None:
    """No `.item()`, no pointer read back, no blocking copy: the host can run ahead."""
    obj = make_objective()
    obj.check_batch_size(4)
    out = check_steps_never_wait(obj, [make_batch(seed=s) for s in range(3)])
    assert int(obj.queue_ptr) == 12 and torch.isfinite(out.loss)


def test_an_emulated_shuffle_bn_step_never_waits_for_the_device() -> None:
    """The permutation is drawn and inverted on the device; the groups are slices."""
    obj = make_objective(shuffle_bn_groups=2)
    out = check_steps_never_wait(obj, [make_batch(b=8, seed=s) for s in range(3)])
    assert int(obj.queue_ptr) == 8 and torch.isfinite(out.loss)


def test_registered_with_official_defaults() -> None:
    reg = Registry()

    def register(name, factory, params=None, summary=""):
        reg.add(make_spec("objective", "moco-queue", None, name, factory, params, summary))

    moco_queue.register_objectives(register=register)
    spec, params = reg.validate("objective", {"type": "moco-queue"})
    assert params.model_dump() == {"dim": 128, "queue_size": 65536, "momentum": 0.999,
                                   "temperature": 0.2, "mlp": True, "shuffle_bn": True,
                                   "shuffle_bn_groups": None}
    obj = reg.create("objective", {"type": "moco-queue", "queue_size": 32, "dim": 16})
    assert isinstance(obj, MocoQueue) and tuple(obj.queue.shape) == (16, 32)
    with pytest.raises(ComponentError, match="temperature"):
        reg.create("objective", {"type": "moco-queue", "temperature": 0})


# -- two processes over gloo: keys gathered for the queue, shuffle-BN --------------------

def _ddp_worker(rank: int, world: int, store: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        for mode in ("eval", "train"):
            obj = make_objective(seed=0)  # same init on every rank, as DDP would broadcast
            obj.train(mode == "train")
            out = obj(make_batch(seed=40 + rank))
            out.loss.backward()
            torch.save({"queue": obj.queue, "ptr": obj.queue_ptr, "loss": out.loss.detach(),
                        "grad": obj.encoder_q.trunk.conv1.weight.grad},
                       os.path.join(out_dir, f"{mode}{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_gloo_gathers_keys_and_shuffles_bn(tmp_path) -> None:
    world = 2
    torch.multiprocessing.spawn(_ddp_worker, args=(world, str(tmp_path / "store"), str(tmp_path)),
                                nprocs=world, join=True)
    for mode in ("eval", "train"):
        res = [torch.load(tmp_path / f"{mode}{r}.pt", weights_only=True) for r in range(world)]
        assert torch.equal(res[0]["queue"], res[1]["queue"])  # all ranks enqueued the same keys
        assert res[0]["ptr"].tolist() == [8]  # the global batch: 2 ranks x 4
        assert not torch.equal(res[0]["loss"], res[1]["loss"])  # each rank its own queries
    # with running BN statistics shuffling cannot change a key, so the gathered keys must
    # come back unshuffled, in rank order
    obj = make_objective(seed=0)
    obj.eval()
    x_all = torch.cat([make_batch(seed=40 + r)["key"] for r in range(world)])
    queue = torch.load(tmp_path / "eval0.pt", weights_only=True)["queue"]
    torch.testing.assert_close(queue[:, :8], expected_keys(obj, x_all).T, rtol=1e-5, atol=1e-6)
    # one process with shuffle-BN emulated by 2 BatchNorm groups computes what the 2 ranks
    # computed in training mode (batch statistics): the same keys, mean loss and gradient
    single = make_objective(seed=0, shuffle_bn_groups=world)
    both = [make_batch(seed=40 + r) for r in range(world)]
    out = single({k: torch.cat([b[k] for b in both]) for k in both[0]})
    out.loss.backward()
    res = [torch.load(tmp_path / f"train{r}.pt", weights_only=True) for r in range(world)]
    torch.testing.assert_close(single.queue[:, :8], res[0]["queue"][:, :8], rtol=0, atol=1e-5)
    torch.testing.assert_close(out.loss.detach(), (res[0]["loss"] + res[1]["loss"]) / 2,
                               rtol=0, atol=1e-5)
    torch.testing.assert_close(single.encoder_q.trunk.conv1.weight.grad,
                               (res[0]["grad"] + res[1]["grad"]) / 2, rtol=0, atol=1e-5)
    # without the groups, the one-process numbers differ: the comparison can fail
    plain = make_objective(seed=0, shuffle_bn_groups=1)
    plain_loss = plain({k: torch.cat([b[k] for b in both]) for k in both[0]}).loss.detach()
    assert (plain_loss - out.loss.detach()).abs() > 1e-4
