"""Objective `supervised`: cross-entropy on the dataset's class labels, for the paper's
supervised rows (Tables 1 and 2) trained by the same runner as the contrastive models.

A linear classifier on the encoder's pooled features (torchvision's `fc`: nn.Linear with
its default initialisation) trained on the pair sampler's "query" view; the "key" view is
unused. Labels come from the pair sampler: `aggressive-crop` adds "label" (the index of the
image's class among the sorted class names of its subset) when every image has one, as
`image-folder` images do.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ssl_core import (
    ComponentError,
    ContrastiveObjective,
    Encoder,
    ObjectiveOutput,
    Params,
    Register,
    hookimpl,
)


class SupervisedParams(Params):
    num_classes: int = Field(..., ge=2, description="classes of the training dataset (e.g. the "
                             "class folders of an image-folder): the classifier's outputs")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="cross-entropy label smoothing")


class Supervised(ContrastiveObjective):
    """Trunk + linear classifier, cross-entropy on the query view's labels."""

    def __init__(self, params: SupervisedParams) -> None:
        super().__init__()
        self.num_classes = params.num_classes
        self.label_smoothing = params.label_smoothing
        self.trunk: Encoder | None = None
        self.fc: nn.Linear | None = None
        self._checked_labels = False

    def bind(self, encoder: Encoder) -> None:
        """Keep the encoder and build the classifier on its pooled features."""
        if self.trunk is not None:
            raise ComponentError("supervised is already bound to an encoder",
                                 "create a new objective for each encoder")
        feat = encoder.checked_feature_dim()
        first = next(iter(encoder.parameters()), None)
        self.trunk = encoder
        self.fc = nn.Linear(feat, self.num_classes).to(first.device if first is not None else "cpu")

    def _bound(self) -> tuple[Encoder, nn.Linear]:
        if self.trunk is None or self.fc is None:
            raise ComponentError("supervised is used before bind(encoder) was called",
                                 "call objective.bind(encoder) first")
        return self.trunk, self.fc

    @property
    def encoder(self) -> Encoder:
        return self._bound()[0]

    def _labels(self, batch: Mapping[str, Tensor]) -> Tensor:
        labels = batch.get("label")
        if labels is None:
            raise ComponentError(
                "objective supervised needs a 'label' per image in each batch; this batch has "
                f"only {', '.join(repr(k) for k in batch)}",
                "use pair_sampler aggressive-crop on a dataset whose images all have a class "
                "label (e.g. image-folder): it then adds 'label' to each item")
        labels = torch.as_tensor(labels).long()
        # a label beyond the classifier fails deep in cross_entropy (a device assert on
        # CUDA): check the first batch, and every CPU batch (no device sync there)
        if not self._checked_labels or labels.device.type == "cpu":
            self._checked_labels = True
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
                raise ComponentError(
                    f"objective supervised got label {int(labels.max())} (of classes "
                    f"0..{self.num_classes - 1}): num_classes={self.num_classes} is too small",
                    "set the objective's num_classes to the number of classes of the dataset")
        return labels

    def forward(self, batch: Mapping[str, Tensor]) -> ObjectiveOutput:
        trunk, fc = self._bound()
        labels = self._labels(batch)
        try:
            images = batch["query"]
        except KeyError:
            raise ComponentError("objective supervised needs batches with a 'query' view",
                                 "use a pair-sampler that yields query/key views") from None
        logits = fc(trunk(images))
        with torch.autocast(device_type=logits.device.type, enabled=False):
            loss = F.cross_entropy(logits.float(), labels.to(logits.device),
                                   label_smoothing=self.label_smoothing)
        with torch.no_grad():
            acc1 = (logits.argmax(dim=1) == labels.to(logits.device)).float().mean() * 100.0
        # 0-d tensors (the trainer logs `loss` itself and reads both back only when it logs)
        return ObjectiveOutput(loss=loss, metrics={"acc1": acc1})


@hookimpl
def register_objectives(register: Register) -> None:
    register("supervised", Supervised, params=SupervisedParams,
             summary="cross-entropy on the dataset's class labels, linear classifier on pooled "
                     "features (supervised baseline)")
