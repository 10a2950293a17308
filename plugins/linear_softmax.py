"""`linear-softmax`: a linear classifier on the frozen encoder's features; top-1 and top-5.

MoCo's linear protocol (main_lincls.py): fc initialised N(0, 0.01) with zero bias, SGD
lr 30, momentum 0.9, weight decay 0, batch 256, 100 epochs, lr x0.1 at epochs 60 and 80,
cross-entropy. One deliberate deviation: the features are those of the val transform
(Resize 256, CenterCrop 224) for the training images too, extracted once and cached,
instead of a fresh RandomResizedCrop + flip every epoch. That makes the evaluation
minutes instead of hours and shareable with other evaluators; it typically reads a
little lower than the augmented protocol.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field

from ssl_core import (
    DataError,
    Dataset,
    EvaluationResult,
    Evaluator,
    FeatureFn,
    ImageRecord,
    Params,
    Preprocessing,
    Register,
    hookimpl,
    resolve_device,
)


class LinearSoftmaxParams(Params):
    image_size: int = Field(224, ge=8)
    resize: int = Field(256, ge=8)
    train_subset: str | None = None
    val_subset: str | None = None
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(30.0, gt=0)
    momentum: float = Field(0.9, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    milestones: list[int] = Field(default_factory=lambda: [60, 80])
    seed: int = 0
    device: str = "auto"


def _labels(records: Sequence[ImageRecord], where: str) -> list[str]:
    missing = [r.path for r in records if r.label is None]
    if missing:
        raise DataError(f"linear-softmax needs a class label on every image; {missing[0]} ({where}) "
                        "has none", "use a labelled dataset such as image-folder")
    return [str(r.label) for r in records]


def train_linear(x: np.ndarray, y: np.ndarray, num_classes: int, p: LinearSoftmaxParams,
                 progress: Any | None = None) -> torch.nn.Linear:
    """MoCo's linear classifier schedule on fixed features (see the module docstring)."""
    device = resolve_device(p.device, "linear-softmax device")
    gen = torch.Generator().manual_seed(p.seed)
    fc = torch.nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():
        fc.weight.normal_(0.0, 0.01, generator=gen)
        fc.bias.zero_()
    fc.to(device)
    opt = torch.optim.SGD(fc.parameters(), lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(p.milestones), gamma=0.1)
    xs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    ys = torch.from_numpy(y.astype(np.int64)).to(device)
    task = progress.add_task("linear-softmax", total=p.epochs, info="") if progress is not None else None
    loss_fn = torch.nn.CrossEntropyLoss()
    with torch.enable_grad():
        for epoch in range(1, p.epochs + 1):
            order = torch.randperm(len(xs), generator=gen).to(device)
            running = torch.zeros((), device=device)
            for start in range(0, len(xs), p.batch_size):
                idx = order[start:start + p.batch_size]
                loss = loss_fn(fc(xs[idx]), ys[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                running += loss.detach()
            sched.step()
            total = float(running)  # one host sync an epoch
            if not math.isfinite(total):
                raise DataError(
                    f"linear-softmax: the classifier's training loss is {total} at epoch {epoch}; "
                    "its accuracy would mean nothing",
                    "lower the evaluator's lr, or check the features for inf/NaN")
            if progress is not None and task is not None:
                progress.advance(task)
    return fc.cpu()


def top_k_accuracy(logits: np.ndarray, y: np.ndarray, k: int) -> float:
    """Percent of rows whose true class is among the k highest logits."""
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return float((top == y[:, None]).any(axis=1).mean() * 100.0)


class LinearSoftmax(Evaluator):
    """Linear classifier on frozen (cached) features of a labelled dataset."""

    dataset_type: ClassVar[str] = "image-folder"

    def __init__(self, params: LinearSoftmaxParams) -> None:
        self.params = params

    def _subsets(self, dataset: Dataset, test_dataset: Dataset | None) -> tuple[str, Dataset, str]:
        p = self.params
        train = p.train_subset or ("train" if "train" in dataset.subsets else dataset.subsets[0])
        if test_dataset is not None:
            return train, test_dataset, p.val_subset or test_dataset.subsets[0]
        val = p.val_subset or "val"
        if val not in dataset.subsets or val == train:
            raise DataError(f"linear-softmax: dataset {type(dataset).__name__} at "
                            f"{getattr(dataset, 'root', '?')} has no subset {val!r} to test on "
                            f"(subsets: {', '.join(dataset.subsets)})",
                            "give a root holding train/ and val/, or name a second dataset "
                            "(`test_dataset` in a recipe)")
        return train, dataset, val

    def evaluate(self, dataset: Dataset, features: FeatureFn, *,
                 test_dataset: Dataset | None = None, progress: Any | None = None) -> EvaluationResult:
        p = self.params
        train_subset, val_ds, val_subset = self._subsets(dataset, test_dataset)
        train_records = dataset.records(train_subset)
        val_records = val_ds.records(val_subset)
        train_labels = _labels(train_records, train_subset)
        val_labels = _labels(val_records, val_subset)
        classes = sorted(set(train_labels))
        index = {c: i for i, c in enumerate(classes)}
        unseen = sorted(set(val_labels) - set(classes))
        if unseen:
            raise DataError(f"linear-softmax: {val_subset} has classes the training images lack: "
                            f"{', '.join(unseen[:5])}", "train and val must share their class names")
        pre = Preprocessing((p.image_size, p.image_size), resize=p.resize)
        x = features(train_subset, train_records, pre)
        xv = features(val_subset, val_records, pre)
        y = np.array([index[c] for c in train_labels])
        yv = np.array([index[c] for c in val_labels])
        fc = train_linear(x, y, len(classes), p, progress)
        with torch.no_grad():
            logits = fc(torch.from_numpy(np.ascontiguousarray(xv, dtype=np.float32))).numpy()
        k5 = min(5, len(classes))
        metrics = {"top1": top_k_accuracy(logits, yv, 1), "top5": top_k_accuracy(logits, yv, k5)}
        details = {"classes": len(classes), "top5_k": k5, "train_rows": len(train_records),
                   "val_rows": len(val_records), "train_subset": train_subset,
                   "val_subset": val_subset}
        return EvaluationResult(metrics=metrics, details=details)


@hookimpl
def register_evaluators(register: Register) -> None:
    register("linear-softmax", LinearSoftmax, params=LinearSoftmaxParams,
             summary="linear classifier on frozen (cached) features, MoCo schedule; top-1 and top-5")
