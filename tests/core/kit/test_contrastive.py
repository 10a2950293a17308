"""The contrastive toolkit (`ssl_core.kit.contrastive`, `ssl_core.kit.regions`) against hand
computations, in one process and across two gloo processes."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_pool

from ssl_core import (
    ComponentError,
    batch_shuffle,
    batch_unshuffle,
    bn_groups,
    concat_all_gather,
    enqueue,
    enqueue_valid,
    gather_with_grad,
    grouped_forward,
    has_batch_norm,
    info_nce,
    momentum_update,
    nearest_queue_sizes,
    pool_regions,
    prediction_head,
    projection_head,
    shuffle_like,
)


def test_single_process_gathers_are_the_input_and_keep_the_gradient() -> None:
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x
    assert torch.equal(concat_all_gather(x), x)
    (gather_with_grad(x) * 2).sum().backward()
    assert torch.equal(x.grad, torch.full((3, 2), 2.0))


def test_shuffle_then_unshuffle_is_identity_and_boxes_follow() -> None:
    torch.manual_seed(0)
    x = torch.arange(16.0)[:, None].repeat(1, 3)
    boxes = torch.arange(16.0)[:, None] * 10
    shuffled, idx = batch_shuffle(x)
    assert not torch.equal(shuffled, x)  # a real permutation
    assert sorted(shuffled[:, 0].tolist()) == x[:, 0].tolist()
    assert torch.equal(batch_unshuffle(shuffled, idx), x)
    assert torch.equal(shuffle_like(boxes, idx), shuffled[:, :1] * 10)


def test_momentum_update_is_ema_of_parameters_only() -> None:
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    target = copy.deepcopy(online)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
        online[1].running_mean.fill_(7.0)
    before = [p.detach().clone() for p in target.parameters()]
    momentum_update(online, target, 0.9)
    for t, b, o in zip(target.parameters(), before, online.parameters(), strict=True):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * o, rtol=0, atol=1e-7)
    assert torch.equal(target[1].running_mean, torch.zeros(4))  # buffers: left alone
    with pytest.raises(ComponentError, match="copy"):
        momentum_update(nn.Linear(3, 4, bias=False), nn.Linear(3, 4), 0.5)


def test_info_nce_equals_a_hand_computation() -> None:
    torch.manual_seed(0)
    q, k = torch.randn(5, 4, requires_grad=True), torch.randn(5, 4)
    queue = F.normalize(torch.randn(4, 6), dim=0)
    losses, correct, k_n = info_nce(q, k, queue, 0.3)
    qn, kn = F.normalize(q.detach(), dim=1), F.normalize(k, dim=1)
    for i in range(5):
        pos = torch.exp(qn[i] @ kn[i] / 0.3)
        negs = torch.exp(qn[i] @ queue / 0.3)
        torch.testing.assert_close(losses[i].detach(), -torch.log(pos / (pos + negs.sum())))
        assert bool(correct[i]) == bool((pos > negs).all())
    torch.testing.assert_close(k_n, kn)
    losses.mean().backward()
    assert q.grad is not None and q.grad.abs().sum() > 0


def test_enqueue_is_a_ring_buffer_and_refuses_a_batch_that_does_not_divide() -> None:
    queue, ptr = torch.zeros(2, 6), torch.zeros(1, dtype=torch.long)
    for step in range(4):
        enqueue(queue, ptr, torch.full((2, 2), float(step + 1)))
    assert ptr.tolist() == [2]
    assert queue[0].tolist() == [4, 4, 2, 2, 3, 3]
    with pytest.raises(ComponentError, match="does not divide") as err:
        enqueue(queue, ptr, torch.ones(4, 2), "my-objective")
    assert "my-objective" in err.value.message and "4 or 8" in err.value.hint
    assert nearest_queue_sizes(16, 6) == [12, 18]


def test_enqueue_valid_writes_valid_rows_first_and_counts_them() -> None:
    queue, ptr = torch.zeros(1, 5), torch.zeros(1, dtype=torch.long)
    keys = torch.tensor([[1.0], [2.0], [3.0]])
    enqueue_valid(queue, ptr, keys, torch.tensor([False, True, True]))
    assert queue[0].tolist() == [2, 3, 0, 0, 0] and ptr.tolist() == [2]
    enqueue_valid(queue, ptr, keys + 10, torch.tensor([True, False, True]))
    assert queue[0].tolist() == [2, 3, 11, 13, 0] and ptr.tolist() == [4]
    with pytest.raises(ComponentError, match="region_queue_size"):
        enqueue_valid(queue, ptr, torch.ones(6, 1), torch.ones(6, dtype=torch.bool),
                      size_field="region_queue_size")


def test_heads() -> None:
    head = projection_head(8, 3)
    assert [type(m) for m in head] == [nn.Linear, nn.ReLU, nn.Linear]
    assert (head[0].in_features, head[0].out_features, head[2].out_features) == (8, 8, 3)
    assert isinstance(projection_head(8, 3, mlp=False), nn.Linear)
    bn = projection_head(8, 3, hidden_dim=5, batch_norm=True)
    assert isinstance(bn[1], nn.BatchNorm1d) and bn[0].bias is None and has_batch_norm(bn)
    pred = prediction_head(4, 16)
    assert pred(torch.randn(6, 4)).shape == (6, 4) and has_batch_norm(pred)
    assert not has_batch_norm(head)


def test_grouped_forward_gives_each_group_its_own_batch_norm_statistics() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ref = copy.deepcopy(net)
    x = torch.randn(8, 3)
    (out,) = grouped_forward(lambda t: (net(t),), [x], 2, net)
    first = ref(x[:4])
    expected = torch.cat([first, ref(x[4:])])
    torch.testing.assert_close(out, expected)
    assert not torch.allclose(out, copy.deepcopy(net)(x), atol=1e-3)  # not one batch's stats
    # the running statistics the first group left (rank 0's, as DDP broadcasts them)
    first_only = copy.deepcopy(net)
    first_only[1].reset_running_stats()
    first_only(x[:4])
    torch.testing.assert_close(net[1].running_mean, first_only[1].running_mean)
    assert int(net[1].num_batches_tracked) == 1
    out.sum().backward()  # restoring the statistics leaves autograd intact
    with pytest.raises(ComponentError, match="3 BatchNorm groups"):
        grouped_forward(lambda t: (net(t),), [x], 3, net)


def test_bn_groups_rule() -> None:
    assert [bn_groups(b, None) for b in (2, 4, 8, 12, 32, 64, 256)] == [1, 1, 2, 3, 8, 8, 8]
    assert bn_groups(256, 2) == 2 and bn_groups(256, 1) == 1


def test_pool_regions_roi_pool_is_torchvision_averaged() -> None:
    torch.manual_seed(0)
    maps = torch.randn(2, 5, 4, 4)
    boxes = torch.tensor([[[0.0, 0.0, 8.0, 8.0], [4.0, 4.0, 16.0, 16.0]],
                          [[2.0, 0.0, 10.0, 6.0], [0.0, 0.0, 16.0, 16.0]]])
    got = pool_regions(maps, boxes, 16, "roi_pool", 2)
    want = roi_pool(maps, [b for b in boxes], 2, spatial_scale=0.25).mean(dim=(2, 3))
    torch.testing.assert_close(got, want)
    assert pool_regions(maps, boxes, 16, "roi_align", 2).shape == (4, 5)


# -- two gloo processes -----------------------------------------------------------------------

WORLD = 2


def _worker(rank: int, store: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    try:
        x = torch.arange(3.0 * 2).view(3, 2).add(100 * rank).requires_grad_(True)
        gathered = gather_with_grad(x)
        weights = torch.arange(float(gathered.numel())).view_as(gathered)
        (gathered * weights).sum().backward()
        torch.manual_seed(rank)  # rank 0's permutation must win
        shuffled, idx = batch_shuffle(x.detach())
        boxes = shuffle_like(x.detach() * 10, idx)
        queue, ptr = torch.zeros(2, 12), torch.zeros(1, dtype=torch.long)
        enqueue(queue, ptr, x.detach())
        torch.save({"gathered": gathered.detach(), "grad": x.grad, "shuffled": shuffled,
                    "boxes": boxes, "back": batch_unshuffle(shuffled, idx),
                    "plain": concat_all_gather(x.detach()), "queue": queue, "ptr": ptr},
                   os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_processes_gather_with_gradient_and_shuffle(tmp_path: Path) -> None:
    torch.multiprocessing.spawn(_worker, args=(str(tmp_path / "store"), str(tmp_path)),
                                nprocs=WORLD, join=True)
    res = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    xs = [torch.arange(6.0).view(3, 2) + 100 * r for r in range(WORLD)]
    both = torch.cat(xs)
    weights = torch.arange(12.0).view(6, 2)
    for r in range(WORLD):
        assert torch.equal(res[r]["gathered"], both) and torch.equal(res[r]["plain"], both)
        # every rank's loss reaches this rank's rows: the gradient is summed over ranks
        assert torch.equal(res[r]["grad"], WORLD * weights[3 * r:3 * r + 3])
        assert torch.equal(res[r]["back"], xs[r])  # unshuffle undoes shuffle
        assert torch.equal(res[r]["boxes"], res[r]["shuffled"] * 10)  # boxes follow
        assert torch.equal(res[r]["queue"][:, :6], both.T) and res[r]["ptr"].tolist() == [6]
    # the shares are one permutation of the global batch (rank 0's), split between ranks
    shares = torch.cat([res[r]["shuffled"] for r in range(WORLD)])
    assert sorted(shares[:, 0].tolist()) == sorted(both[:, 0].tolist())
    torch.manual_seed(0)
    assert torch.equal(shares, both[torch.randperm(6)])


class _SubclassedBatchNorm(torch.nn.BatchNorm2d):
    """Not a plain BatchNorm2d: grouped_forward runs it group by group."""


def _bn_net(norm: type[torch.nn.BatchNorm2d]) -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), norm(4), torch.nn.ReLU(),
                              torch.nn.Conv2d(4, 4, 3), norm(4), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 4 * 4, 3), torch.nn.BatchNorm1d(3))
    return net.train()


def test_grouped_forward_in_one_pass_equals_one_pass_per_group() -> None:
    """The SplitBatchNorm pass (plain BatchNorms) gives the outputs, gradients and running
    statistics of running each group on its own (the fallback for other BatchNorms)."""
    x = torch.randn(12, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    fast, slow = _bn_net(torch.nn.BatchNorm2d), _bn_net(_SubclassedBatchNorm)
    slow.load_state_dict(fast.state_dict())
    outs = []
    for net in (fast, slow):
        (out,) = grouped_forward(lambda t, net=net: (net(t),), [x], 3, net)
        out.pow(2).sum().backward()
        outs.append(out)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    for a, b in zip(fast.state_dict().values(), slow.state_dict().values(), strict=True):
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-5, atol=1e-6)
    for a, b in zip(fast.parameters(), slow.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-4)
    whole = _bn_net(torch.nn.BatchNorm2d)(x)  # and the groups do change the result
    assert not torch.allclose(whole, outs[0], atol=1e-3)
    assert all("forward" not in vars(m) for m in fast.modules())  # the patch is undone
