"""sslc plugin adding SimCLR's NT-Xent objective as ``simclr-ntxent``.

SimCLR (Chen et al., 2020) needs no queue and no momentum encoder: both views of
every image go through the same encoder and a small MLP head, and for each of the
2N embeddings the other view of the same image is the positive while the remaining
2N - 2 are negatives. Copy this file to start your own objective plugin: a params
model, a ContrastiveObjective subclass whose `__init__` takes it, and one hook that
registers the class. It imports only what the top-level `ssl_core` package exports.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from pydantic import Field
from ssl_core import (
    ComponentError,
    ContrastiveObjective,
    Encoder,
    ObjectiveOutput,
    Params,
    Register,
    gather_with_grad,
    hookimpl,
    projection_head,
    rank,
)
from torch import Tensor, nn

__all__ = ["SimCLRNTXent", "SimCLRParams", "nt_xent", "register_objectives"]


class SimCLRParams(Params):
    """What a recipe may set under `objective: {type: simclr-ntxent, ...}`.

    Subclassing `Params` makes a misspelt key (``temprature``) an error instead of a
    silently ignored setting.
    """

    # SimCLR's paper sweeps 0.1-0.5 (0.1 is best at its large batches; 0.2-0.5 are
    # common at small ones). Below ~0.05 the softmax saturates and training is unstable.
    temperature: float = Field(0.1, gt=0, description="softmax temperature of NT-Xent")
    hidden_dim: int | None = Field(
        None, gt=0, description="width of the head's hidden layer; None = encoder feature_dim"
    )
    out_dim: int = Field(128, gt=0, description="size of the embedding the loss compares")
    batch_norm: bool = Field(False, description="BatchNorm after the hidden layer (SimCLR v2)")


def nt_xent(query: Tensor, key: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """NT-Xent over 2N embeddings; row i of `query` and row i of `key` are positives.

    Returns (mean loss over the 2N rows, top-1 accuracy of finding the positive among
    the 2N - 1 other embeddings). Under torch.distributed the embeddings of every rank
    are candidates, as in SimCLR, and the loss covers this rank's rows.
    """
    n = query.shape[0]
    local = F.normalize(torch.cat([query, key]), dim=1)  # cosine similarity = dot product
    # gather_with_grad keeps the gradient of each rank's rows (a plain all_gather cuts it)
    q_all, k_all = gather_with_grad(local[:n]), gather_with_grad(local[n:])
    candidates = torch.cat([q_all, k_all])
    total = q_all.shape[0]  # N over all ranks

    logits = local @ candidates.T / temperature  # (2n, 2*total)
    rows = torch.arange(n, device=query.device) + rank() * n
    own = torch.cat([rows, rows + total])  # where each local row sits among the candidates
    positive = torch.cat([rows + total, rows])  # ... and where its other view sits
    # An embedding is trivially most similar to itself: drop it from its own softmax.
    self_mask = F.one_hot(own, candidates.shape[0]).bool()
    logits = logits.masked_fill(self_mask, float("-inf"))

    loss = F.cross_entropy(logits, positive)
    acc1 = (logits.argmax(dim=1) == positive).float().mean()
    return loss, acc1


class SimCLRNTXent(ContrastiveObjective):
    """Encoder + projection head trained with NT-Xent on in-batch negatives."""

    def __init__(self, params: SimCLRParams) -> None:
        super().__init__()
        self.params = params
        # Built in bind(): the head's input size depends on the encoder.
        self.trunk: Encoder | None = None
        self.head: nn.Module | None = None

    def bind(self, encoder: Encoder) -> None:
        p = self.params
        # Linear -> [BatchNorm] -> ReLU -> Linear, from the core's contrastive toolkit.
        # Both are submodules, so the trainer's optimizer and checkpoints include them.
        self.trunk = encoder
        self.head = projection_head(encoder.feature_dim, p.out_dim, p.hidden_dim,
                                    batch_norm=p.batch_norm)

    @property
    def encoder(self) -> Encoder:
        # Probes and evaluators use the trunk only: the head is thrown away after
        # training, as in SimCLR.
        if self.trunk is None:
            raise ComponentError(
                "simclr-ntxent: encoder used before bind(encoder)",
                "call objective.bind(encoder) first",
            )
        return self.trunk

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size < 2:
            raise ComponentError(
                f"simclr-ntxent needs batch_size >= 2 (got {batch_size}): its negatives "
                "are the other images of the batch",
                "raise batch_size (SimCLR works best with hundreds or more)",
            )

    def forward(self, batch: Mapping[str, Tensor]) -> ObjectiveOutput:
        encoder, head = self.encoder, self.head
        assert head is not None  # set together with the trunk in bind()
        n = batch["query"].shape[0]
        # One pass over both views, so BatchNorm statistics see all 2N images.
        z = head(encoder(torch.cat([batch["query"], batch["key"]])))
        loss, acc1 = nt_xent(z[:n], z[n:], self.params.temperature)
        return ObjectiveOutput(loss, {"acc1": acc1.detach()})  # tensors: no host sync per step


@hookimpl
def register_objectives(register: Register) -> None:
    # sslc validates the recipe's keys with SimCLRParams, then builds the registered
    # class with the validated model: SimCLRNTXent(params).
    register(
        "simclr-ntxent",
        SimCLRNTXent,
        params=SimCLRParams,
        summary="SimCLR NT-Xent: in-batch negatives, MLP projection head, no queue",
    )
