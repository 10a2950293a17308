"""Tests of the simclr-ntxent objective: the loss, its gradients, params and discovery.

The contract with sslc (registration, parameters, the objective's promises) is checked
with sslc's own kit, `ssl_core.testing`; its fixtures come in through conftest.py.
"""

from __future__ import annotations

import math
import os
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from ssl_core import ComponentError, Encoder
from ssl_core.testing import (
    check_encoder,
    check_entry_point,
    check_objective,
    check_params_reject_unknown_keys,
    check_registers_cleanly,
    check_steps_never_wait,
)
from torch import Tensor, nn

import sslc_simclr
from sslc_simclr import SimCLRNTXent, SimCLRParams, nt_xent


class TinyEncoder(Encoder):
    """A real (if small) conv net: the objective is tested without any other plugin."""

    feature_dim = 16

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, self.feature_dim, 3, stride=2, padding=1),
            nn.ReLU(),
        )

    def feature_maps(self, x: Tensor) -> dict[str, Tensor]:
        fmap = self.body(x)
        return {"layer3": fmap, "pooled": fmap.mean(dim=(2, 3))}

    def forward(self, x: Tensor) -> Tensor:
        return self.feature_maps(x)["pooled"]


def make_encoder() -> Encoder:
    return TinyEncoder()


def make_objective(seed: int = 0, **params: object) -> SimCLRNTXent:
    torch.manual_seed(seed)
    objective = SimCLRNTXent(SimCLRParams.model_validate(params))
    objective.bind(make_encoder())
    return objective


def images(n: int, seed: int) -> Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def reference_nt_xent(query: Tensor, key: Tensor, t: float) -> tuple[float, float]:
    """NT-Xent written out row by row, straight from the SimCLR paper (Alg. 1)."""
    z = [v / v.norm() for v in torch.cat([query, key]).double()]
    two_n = len(z)
    losses, hits = [], 0
    for i in range(two_n):
        positive = (i + two_n // 2) % two_n
        sims = {m: float(z[i] @ z[m]) / t for m in range(two_n) if m != i}
        denominator = sum(math.exp(s) for s in sims.values())
        losses.append(-math.log(math.exp(sims[positive]) / denominator))
        hits += max(sims, key=lambda m: sims[m]) == positive
    return sum(losses) / two_n, hits / two_n


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_nt_xent_matches_hand_written(temperature: float) -> None:
    g = torch.Generator().manual_seed(3)
    query = torch.randn(6, 8, generator=g, dtype=torch.float64)
    key = torch.randn(6, 8, generator=g, dtype=torch.float64)
    loss, acc1 = nt_xent(query, key, temperature)
    ref_loss, ref_acc1 = reference_nt_xent(query, key, temperature)
    assert loss.item() == pytest.approx(ref_loss, abs=1e-6)
    assert acc1.item() == pytest.approx(ref_acc1, abs=1e-6)


def test_acc1_counts_positive_retrievals() -> None:
    g = torch.Generator().manual_seed(4)
    query = torch.randn(5, 8, generator=g, dtype=torch.float64)
    loss_near, acc_near = nt_xent(query, query + 0.01 * torch.randn(5, 8, generator=g), 0.1)
    assert acc_near.item() == 1.0
    # Swapping two keys makes rows 0 and 1 (and their keys) retrieve the wrong partner.
    swapped = (query + 0.01 * torch.randn(5, 8, generator=g))[[1, 0, 2, 3, 4]]
    loss_swap, acc_swap = nt_xent(query, swapped, 0.1)
    assert acc_swap.item() == pytest.approx(6 / 10)
    assert loss_swap.item() > loss_near.item()


def test_objective_loss_is_nt_xent_of_head_outputs() -> None:
    objective = make_objective(temperature=0.2)
    batch = {"query": images(4, 1), "key": images(4, 2)}
    out = objective(batch)
    with torch.no_grad():
        z = objective.head(objective.encoder(torch.cat([batch["query"], batch["key"]])))
    ref_loss, ref_acc1 = reference_nt_xent(z[:4], z[4:], 0.2)
    assert out.loss.item() == pytest.approx(ref_loss, abs=1e-5)
    assert set(out.metrics) == {"acc1"}
    assert float(out.metrics["acc1"]) == pytest.approx(ref_acc1)


def test_identical_views_give_lower_loss_than_random_ones() -> None:
    objective = make_objective()
    query = images(8, 5)
    same = objective({"query": query, "key": query.clone()})
    different = objective({"query": query, "key": images(8, 6)})
    assert same.loss.item() < different.loss.item()
    assert float(same.metrics["acc1"]) == 1.0


def test_gradients_reach_encoder_and_head() -> None:
    objective = make_objective(batch_norm=True)
    objective({"query": images(4, 7), "key": images(4, 8)}).loss.backward()
    first = next(objective.encoder.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0
    for name, p in objective.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
    assert any(isinstance(m, nn.BatchNorm1d) for m in objective.head)


def test_head_shape_follows_params() -> None:
    objective = make_objective(hidden_dim=32, out_dim=24)
    assert objective.head[0].in_features == objective.encoder.feature_dim
    assert objective.head[0].out_features == 32
    assert objective.head[-1].out_features == 24


def test_params_reject_unknown_and_bad_values(plugin_registry) -> None:
    assert SimCLRParams().temperature == 0.1
    assert SimCLRParams().out_dim == 128
    with pytest.raises(ValidationError):
        SimCLRParams.model_validate({"temprature": 0.2})
    with pytest.raises(ValidationError):
        SimCLRParams.model_validate({"temperature": 0})

    # Through sslc's registry, as a recipe would: the error names the bad key.
    check_params_reject_unknown_keys("objective", "simclr-ntxent", registry=plugin_registry)
    with pytest.raises(ComponentError, match="temprature: unknown parameter"):
        plugin_registry.validate(
            "objective",
            {"type": "simclr-ntxent", "temprature": 0.2},
            where="models.simclr.train.objective",
        )
    obj = plugin_registry.create("objective", {"type": "simclr-ntxent", "temperature": 0.3})
    assert isinstance(obj, SimCLRNTXent) and obj.params.temperature == 0.3


def test_sslc_contract() -> None:
    """Registers its class cleanly, alone; the objective keeps the ContrastiveObjective promises."""
    (reg,) = check_registers_cleanly(sslc_simclr, "simclr")
    assert (reg.kind, reg.name, reg.cls, reg.params) == (
        "objective", "simclr-ntxent", SimCLRNTXent, SimCLRParams)
    encoder = make_encoder()
    check_encoder(encoder)  # the test encoder itself must be a valid sslc Encoder
    for params in ({}, {"batch_norm": True, "hidden_dim": 8}):
        torch.manual_seed(0)
        out = check_objective(SimCLRNTXent(SimCLRParams(**params)), make_encoder(),
                              {"query": images(4, 1), "key": images(4, 2)})
        assert set(out.metrics) == {"acc1"}


def test_a_step_never_waits_for_the_device() -> None:
    """sslc's loop keeps a GPU busy only while the host runs ahead of it: no `.item()`, no
    blocking copy inside a step (checked on CPU; on CUDA also by torch's sync debug mode)."""
    batches = [{"query": images(4, seed), "key": images(4, seed + 1)} for seed in (1, 3)]
    check_steps_never_wait(make_objective(batch_norm=True), batches)


def test_unusable_states_are_clear_errors() -> None:
    objective = SimCLRNTXent(SimCLRParams())
    with pytest.raises(ComponentError, match="before bind"):
        _ = objective.encoder
    with pytest.raises(ComponentError, match="batch_size >= 2"):
        objective.check_batch_size(1)
    objective.check_batch_size(2)


def test_discovered_through_entry_point() -> None:
    try:
        distribution("sslc-simclr")
    except PackageNotFoundError:
        pytest.skip("sslc-simclr is not installed: pip install -e examples/sslc-simclr")
    host = check_entry_point("simclr", distribution="sslc-simclr")
    assert isinstance(
        host.registry.create("objective", {"type": "simclr-ntxent"}), SimCLRNTXent)


def _distributed_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
    )
    g = torch.Generator().manual_seed(11)
    query, key = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    n = 8 // world
    q = query[rank * n : (rank + 1) * n].clone().requires_grad_()
    k = key[rank * n : (rank + 1) * n].clone().requires_grad_()
    loss, _ = nt_xent(q, k, 0.2)
    loss.backward()
    torch.save(
        {"loss": loss.detach(), "q_grad": q.grad, "k_grad": k.grad},
        os.path.join(out_dir, f"rank{rank}.pt"),
    )
    torch.distributed.destroy_process_group()


def test_distributed_candidates_match_one_big_batch(tmp_path: Path) -> None:
    """Two gloo ranks with 4 pairs each must act like one process with 8 pairs."""
    world = 2
    # spawn, not fork: forking after earlier tests started torch's OpenMP threads can
    # deadlock the children.
    torch.multiprocessing.spawn(
        _distributed_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world
    )
    g = torch.Generator().manual_seed(11)
    query = torch.randn(8, 5, generator=g).requires_grad_()
    key = torch.randn(8, 5, generator=g).requires_grad_()
    full_loss, _ = nt_xent(query, key, 0.2)
    full_loss.backward()
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]
    # Each rank's loss covers its own rows; DDP averages, so the mean is the full loss.
    assert torch.stack([r["loss"] for r in ranks]).mean().item() == pytest.approx(
        full_loss.item(), abs=1e-5
    )
    # all_gather's backward sums every rank's gradient; DDP's average then divides by world.
    for r, out in enumerate(ranks):
        rows = slice(r * 4, (r + 1) * 4)
        torch.testing.assert_close(out["q_grad"] / world, query.grad[rows])
        torch.testing.assert_close(out["k_grad"] / world, key.grad[rows])
