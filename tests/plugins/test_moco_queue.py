"""moco-queue against hand-written MoCo-v2 computations and the official checkpoint layout."""

from __future__ import annotations

import copy
import os

import pytest
import torch
import torch.nn.functional as F

from ssl_core.errors import CheckpointError, ComponentError, SslcError
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
    keys = obj.to_official_state_dict()
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
    missing, unexpected = fresh.load_official_state_dict(loaded["state_dict"])
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
    bare = obj.to_official_state_dict(prefix="")
    assert "encoder_q.conv1.weight" in bare and "queue" in bare
    fresh = make_objective(seed=9)
    fresh.load_official_state_dict(bare)
    assert torch.equal(fresh.queue, obj.queue)
    fresh2 = make_objective(seed=10)
    fresh2.load_official_state_dict(official_checkpoint(obj, 1, "resnet18", None))
    for a, b in zip(fresh2.state_dict().values(), obj.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_load_reports_missing_unexpected_and_shape_errors() -> None:
    obj = make_objective()
    sd = obj.to_official_state_dict()
    broken = dict(sd)
    del broken["module.encoder_k.fc.0.bias"]
    broken["module.encoder_q.fc.9.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        make_objective().load_official_state_dict(broken)
    assert "encoder_k.fc.0.bias" in err.value.message
    assert "encoder_q.fc.9.weight" in err.value.message
    missing, unexpected = make_objective().load_official_state_dict(broken, strict=False)
    assert missing == ["encoder_k.fc.0.bias"] and unexpected == ["encoder_q.fc.9.weight"]

    other_k = make_objective(queue_size=8)
    with pytest.raises(CheckpointError, match="queue") as err:
        other_k.load_official_state_dict(sd)
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


def test_registered_with_official_defaults() -> None:
    reg = Registry()

    def register(name, factory, params=None, summary=""):
        reg.add(make_spec("objective", "moco-queue", None, name, factory, params, summary))

    moco_queue.register_objectives(register=register)
    spec, params = reg.validate("objective", {"type": "moco-queue"})
    assert params.model_dump() == {"dim": 128, "queue_size": 65536, "momentum": 0.999,
                                   "temperature": 0.2, "mlp": True, "shuffle_bn": True}
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
            torch.save({"queue": obj.queue, "ptr": obj.queue_ptr, "loss": out.loss.detach()},
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
