"""`segmentation`: semantic segmentation on the frozen encoder's feature maps; mIoU, pixel accuracy.

The paper (Table 3) trains "a two-layered upsampling neural network [FCN, Long et al.]" on
ADE20K and reports mean IoU and pixel accuracy; it gives no further detail. Here, on one
feature map of the frozen trunk (`layer`, cached like pooled features):

    3x3 conv (C -> hidden_dim, no bias) -> BatchNorm -> ReLU -> Dropout2d -> 1x1 conv (-> K)
    -> bilinear upsampling (align_corners=False) to the label size

i.e. mmsegmentation's FCNHead with one conv (kaiming init; classifier N(0, 0.01), bias 0),
trained with per-pixel cross-entropy (ignored pixels excluded), SGD with momentum and
weight decay, and mmseg's poly schedule, seeded. Images are resized straight to
`image_size`; masks to `label_size` with nearest neighbour. Test predictions are upsampled
to each mask's own size (`test_resolution: original`, as the ADE20K benchmark scores) or
scored at `label_size`. Scores come from one confusion matrix over all test pixels: IoU
per class = TP / (TP + FP + FN); mIoU = mean over classes present in the ground truth or
the prediction (mmseg's nanmean; absent classes are NaN, not 0); pixel accuracy = correct
labelled pixels / labelled pixels.

Data contract (the `ade20k` dataset): each record's `meta["mask"]` is a single-channel PNG
of the image's size holding 1..K per pixel and `ignore_index` (0) where unlabelled; the
dataset object has `num_classes` (K), optionally `class_names` and `ignore_index`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import Field
from torch import Tensor, nn

from ssl_core import (
    ComponentError,
    DataError,
    Dataset,
    EvaluationResult,
    Evaluator,
    FeatureFn,
    ImageRecord,
    Params,
    Preprocessing,
    Register,
    ensure_fits,
    hookimpl,
    resolve_device,
)

#: PIL modes that hold one integer per pixel (class indices)
_INDEX_MODES = ("L", "P", "I", "I;16", "I;16L", "I;16B", "1")


class SegmentationParams(Params):
    """Defaults suit the synthetic world (64-128 px, CPU); see docs/plugins/segmentation.md."""

    image_size: int = Field(128, ge=8, description="side the images are resized to for the encoder")
    label_size: int = Field(
        64, ge=1, description="side the training masks are resized to (nearest) and the "
        "logits upsampled to for the loss (and for scoring with test_resolution: label)")
    layer: str = Field("layer4", description="the Encoder.feature_maps entry the head reads")
    feature_dtype: Literal["float16", "float32"] = Field(
        "float16", description="dtype the feature maps are extracted and cached as")
    hidden_dim: int = Field(256, ge=1, description="channels of the head's 3x3 conv")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout2d before the classifier")
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(0.01, gt=0.0, description="initial SGD learning rate")
    momentum: float = Field(0.9, ge=0.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    poly_power: float = Field(0.9, ge=0.0, description="lr = lr0 * (1 - iter / iters) ** power")
    train_subset: str = "training"
    test_subset: str = "validation"
    test_resolution: Literal["original", "label"] = Field(
        "original", description="score at each mask's own size, or at label_size")
    seed: int = 0
    device: str = Field("auto", description="where the head trains: auto (CUDA if available), "
                        "cpu, cuda, ...")


# -- masks ----------------------------------------------------------------------------------


def nearest_indices(src: int, dst: int) -> np.ndarray:
    """Source index of each of `dst` output pixels for nearest-neighbour resizing (pixel
    centres: floor((i + 0.5) * src / dst), as PIL's NEAREST and torch's nearest-exact)."""
    return np.minimum(((np.arange(dst) + 0.5) * src / dst).astype(np.int64), src - 1)


def resize_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """`mask` (H x W) resized to (height, width) with nearest neighbour: no class mixing."""
    return mask[nearest_indices(mask.shape[0], height)[:, None],
                nearest_indices(mask.shape[1], width)[None, :]]


def _mask_path(record: ImageRecord) -> Path:
    mask = record.meta.get("mask") if record.meta else None
    if not mask:
        raise DataError(f"segmentation: {record.path} has no mask (`meta['mask']`)",
                        "use a dataset with per-pixel class masks, e.g. ade20k")
    return Path(mask)


def read_mask(record: ImageRecord, num_classes: int, ignore_index: int) -> np.ndarray:
    """The record's mask as class indices (H x W int16): 0..K-1 for values 1..K, -1 where
    ignored; checked to be single-channel, of the image's size, with no other value."""
    path = _mask_path(record)
    if record.box is not None:
        raise DataError(f"segmentation: {record.path} is a box {record.box}, not a whole image",
                        "segmentation reads whole images and their masks")
    try:
        with Image.open(record.path) as img:
            image_size = img.size
    except OSError as exc:
        raise DataError(f"cannot read image {record.path}: {exc}",
                        "check the dataset's images") from None
    try:
        with Image.open(path) as m:
            mode, mask_size = m.mode, m.size
            values = np.asarray(m) if mode in _INDEX_MODES else None
    except OSError as exc:
        raise DataError(f"cannot read mask {path} (of {record.path}): {exc}",
                        "check the dataset's annotations") from None
    if mask_size != image_size:
        raise DataError(f"mask {path} is {mask_size[0]} x {mask_size[1]} but its image "
                        f"{record.path} is {image_size[0]} x {image_size[1]} (width x height)",
                        "a mask must have its image's size; re-export the annotation")
    if values is None:
        raise DataError(f"mask {path} is a {mode} image, not single-channel class indices",
                        "masks are 8- or 16-bit grey (or palette) PNGs of class indices")
    values = values.astype(np.int64)
    bad = (values != ignore_index) & ((values < 1) | (values > num_classes))
    if bad.any():
        found = ", ".join(str(v) for v in np.unique(values[bad])[:5])
        raise DataError(f"mask {path} holds value(s) {found}, outside the classes 1..{num_classes}"
                        f" and the ignore value {ignore_index}",
                        "check the dataset's num_classes and that masks are class indices")
    return np.where(values == ignore_index, -1, values - 1).astype(np.int16)


def training_targets(records: Sequence[ImageRecord], num_classes: int, ignore_index: int,
                     size: int, progress: Any | None = None, name: str = "") -> np.ndarray:
    """Every record's mask resized to size x size (nearest): N x size x size int16, -1 ignored."""
    ensure_fits(2 * size * size * len(records),
                f"the {name} masks at label_size={size} ({len(records)} images)",
                "lower the evaluator's label_size")
    out = np.empty((len(records), size, size), dtype=np.int16)
    task = progress.add_task(f"masks {name}", total=len(records), info="") if progress else None
    for i, rec in enumerate(records):
        out[i] = resize_nearest(read_mask(rec, num_classes, ignore_index), size, size)
        if progress is not None and task is not None:
            progress.advance(task)
    return out


# -- scores ---------------------------------------------------------------------------------


def confusion_matrix(target: Tensor, pred: Tensor, num_classes: int) -> Tensor:
    """K x K counts, rows = ground truth, columns = prediction; targets < 0 are ignored."""
    keep = target >= 0
    flat = target[keep].long() * num_classes + pred[keep].long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def segmentation_scores(confusion: np.ndarray) -> dict[str, Any]:
    """Per-class IoU and accuracy (NaN where undefined), mIoU over the classes present in
    the ground truth or the prediction, mean class accuracy and pixel accuracy; percent."""
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(cm)
    gt, pred = cm.sum(axis=1), cm.sum(axis=0)
    union = gt + pred - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan) * 100.0
        acc = np.where(gt > 0, tp / gt, np.nan) * 100.0
    total = cm.sum()
    present = np.isfinite(iou)
    return {
        "iou": iou, "acc": acc,
        "mIoU": float(np.mean(iou[present])) if present.any() else float("nan"),
        "mAcc": float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan"),
        "pixel_acc": float(tp.sum() / total * 100.0) if total > 0 else float("nan"),
        "scored_classes": int(present.sum()),
    }


# -- the head -------------------------------------------------------------------------------


class SegmentationHead(nn.Module):
    """3x3 conv + BN + ReLU, Dropout2d, 1x1 conv to classes; bilinear upsampling (mmseg's
    FCNHead with one conv, on one frozen feature map)."""

    def __init__(self, in_channels: int, num_classes: int, hidden_dim: int = 256,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, hidden_dim, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(hidden_dim)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(hidden_dim, num_classes, 1)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.classifier.weight, 0.0, 0.01)
        assert self.classifier.bias is not None
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """Logits at the map's resolution, or upsampled (bilinear) to `size`."""
        logits = self.classifier(self.dropout(self.relu(self.bn(self.conv(x)))))
        if size is None:
            return logits
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def _batches(n: int, batch_size: int, order: Tensor) -> list[Tensor]:
    """Mini-batches of `order`; a last batch of one joins the previous one (BatchNorm
    needs two values per channel when a map is 1 x 1)."""
    chunks = list(order.split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return chunks


def train_head(maps: np.ndarray, targets: np.ndarray, num_classes: int, p: SegmentationParams,
               progress: Any | None = None) -> tuple[SegmentationHead, list[float]]:
    """The head trained on fixed maps (N x C x h x w) against targets (N x L x L, -1
    ignored); returns it (on the CPU, eval mode) and the mean loss of each epoch."""
    device = resolve_device(p.device, "segmentation device")
    size = (targets.shape[1], targets.shape[2])
    if maps.shape[2] * maps.shape[3] == 1 and min(p.batch_size, len(maps)) == 1:
        what = "one training image" if len(maps) == 1 else "batch_size: 1"
        raise DataError(
            f"segmentation: {what} with 1x1 feature maps gives the head's BatchNorm one value "
            "per channel, which it cannot train on",
            "set the evaluator's batch_size to 2 or more and use 2+ training images, or read "
            "a layer with larger maps (`layer`, or a larger image_size)")
    per_epoch = len(_batches(len(maps), p.batch_size, torch.arange(len(maps))))
    total = p.epochs * per_epoch
    task = progress.add_task("segmentation head", total=p.epochs, info="") if progress else None
    losses: list[float] = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
            torch.enable_grad():
        torch.manual_seed(p.seed)  # the head's init and its dropout
        gen = torch.Generator().manual_seed(p.seed)  # the shuffling
        head = SegmentationHead(maps.shape[1], num_classes, p.hidden_dim, p.dropout).to(device)
        opt = torch.optim.SGD(head.parameters(), lr=p.lr, momentum=p.momentum,
                              weight_decay=p.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda it: max(0.0, 1.0 - it / total) ** p.poly_power)
        head.train()
        for _ in range(p.epochs):
            running = torch.zeros((), device=device)
            for idx in _batches(len(maps), p.batch_size, torch.randperm(len(maps), generator=gen)):
                rows = np.sort(idx.numpy())
                x = torch.from_numpy(maps[rows]).to(device).float()
                y = torch.from_numpy(targets[rows]).to(device).long()
                logits = head(x, size)
                # a mean over the labelled pixels of the batch (never 0/0 when all are ignored)
                loss = (F.cross_entropy(logits, y, ignore_index=-1, reduction="sum")
                        / (y >= 0).sum().clamp_min(1))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                running += loss.detach()
            losses.append(float(running) / per_epoch)
            if not math.isfinite(losses[-1]):
                raise DataError(
                    f"segmentation: the head's training loss is {losses[-1]} at epoch "
                    f"{len(losses)}; its mIoU would mean nothing",
                    "lower the evaluator's lr, or check the features for inf/NaN (a "
                    "feature_dtype of float16 can overflow: try float32)")
            if progress is not None and task is not None:
                progress.advance(task)
    return head.eval().cpu(), losses


@torch.no_grad()
def confusion_on_test(head: SegmentationHead, maps: np.ndarray, records: Sequence[ImageRecord],
                      num_classes: int, ignore_index: int, p: SegmentationParams, label_size: int,
                      progress: Any | None = None) -> np.ndarray:
    """The confusion matrix of the head's predictions on the test maps, at each mask's own
    size (`test_resolution: original`) or at label_size."""
    device = resolve_device(p.device, "segmentation device")
    head = head.to(device).eval()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    task = progress.add_task("segmentation test", total=len(records), info="") if progress else None
    for start in range(0, len(records), p.batch_size):
        x = torch.from_numpy(maps[start:start + p.batch_size]).to(device).float()
        logits = head(x)
        for i, rec in enumerate(records[start:start + p.batch_size]):
            mask = read_mask(rec, num_classes, ignore_index)
            if p.test_resolution == "label":
                mask = resize_nearest(mask, label_size, label_size)
            target = torch.from_numpy(mask.astype(np.int64)).to(device)
            up = F.interpolate(logits[i:i + 1], size=tuple(target.shape), mode="bilinear",
                               align_corners=False)
            cm += confusion_matrix(target, up[0].argmax(dim=0), num_classes)
            if progress is not None and task is not None:
                progress.advance(task)
    return cm.cpu().numpy()


# -- the evaluator ----------------------------------------------------------------------------


def _classes(dataset: Dataset) -> tuple[int, list[str], int]:
    k = getattr(dataset, "num_classes", None)
    if not isinstance(k, int) or k < 1:
        raise DataError(f"segmentation: dataset {type(dataset).__name__} at "
                        f"{getattr(dataset, 'root', '?')} does not say its number of classes "
                        "(`num_classes`)", "use a segmentation dataset such as ade20k")
    names = [str(c) for c in getattr(dataset, "class_names", None) or range(1, k + 1)]
    if len(names) != k:
        raise DataError(f"segmentation: dataset {type(dataset).__name__} has {k} classes but "
                        f"{len(names)} class names", "fix the dataset's class list")
    return k, names, int(getattr(dataset, "ignore_index", 0))


class Segmentation(Evaluator):
    """A two-layer upsampling head on frozen (cached) feature maps; mIoU and pixel accuracy."""

    dataset_type: ClassVar[str] = "ade20k"

    def __init__(self, params: SegmentationParams) -> None:
        self.params = params

    def evaluate(self, dataset: Dataset, features: FeatureFn, *,
                 test_dataset: Dataset | None = None, progress: Any | None = None) -> EvaluationResult:
        p = self.params
        label_size = p.label_size
        k, names, ignore = _classes(dataset)
        test_ds = test_dataset or dataset
        if test_dataset is not None:
            tk, tnames, tignore = _classes(test_dataset)
            if (tk, tnames, tignore) != (k, names, ignore):
                raise DataError(f"segmentation: the test dataset's classes ({tk}, ignore "
                                f"{tignore}) are not the training dataset's ({k}, ignore {ignore})",
                                "train and test on datasets with the same class list")
        train_records, test_records = dataset.records(p.train_subset), test_ds.records(p.test_subset)
        for subset, recs in ((p.train_subset, train_records), (p.test_subset, test_records)):
            if not recs:
                raise DataError(f"segmentation: subset {subset!r} of {type(test_ds).__name__} at "
                                f"{getattr(test_ds, 'root', '?')} has no images",
                                "check the dataset root and the evaluator's train_subset/test_subset")
        # masks first: a bad annotation fails before minutes of feature extraction
        targets = training_targets(train_records, k, ignore, label_size, progress, p.train_subset)
        for rec in test_records:
            read_mask(rec, k, ignore)
        pre = Preprocessing((p.image_size, p.image_size), layer=p.layer, dtype=p.feature_dtype)
        train_maps = features(p.train_subset, train_records, pre)
        test_maps = features(p.test_subset, test_records, pre)
        if train_maps.ndim != 4 or test_maps.ndim != 4:
            raise ComponentError(f"segmentation: features for layer {p.layer!r} have shape "
                                 f"{train_maps.shape}, not N x C x h x w",
                                 "set `layer` to a spatial map of the encoder (e.g. layer3, layer4)")
        head, losses = train_head(train_maps, targets, k, p, progress)
        cm = confusion_on_test(head, test_maps, test_records, k, ignore, p, label_size, progress)
        if cm.sum() == 0:
            raise DataError(f"segmentation: no labelled pixel in subset {p.test_subset!r}",
                            f"every test mask is {ignore} (ignore) everywhere; check the masks")
        s = segmentation_scores(cm)
        details = {
            "iou": {names[c]: float(s["iou"][c]) for c in range(k)},
            "acc": {names[c]: float(s["acc"][c]) for c in range(k)},
            "mAcc": s["mAcc"],
            "miou_over": "classes present in the ground truth or the prediction",
            "num_classes": k, "ignore_index": ignore,
            "layer": p.layer, "feature_shape": [int(d) for d in train_maps.shape[1:]],
            "image_size": p.image_size, "label_size": label_size,
            "test_resolution": p.test_resolution,
            "train_subset": p.train_subset, "test_subset": p.test_subset,
            "train_rows": len(train_records), "test_rows": len(test_records),
            "labelled_test_pixels": int(cm.sum()),
            "train_loss": losses,
            "scored_classes": int(s["scored_classes"]),
        }
        metrics = {"mIoU": s["mIoU"], "pixel_acc": s["pixel_acc"]}
        return EvaluationResult(metrics=metrics, details=details)


@hookimpl
def register_evaluators(register: Register) -> None:
    register("segmentation", Segmentation, params=SegmentationParams,
             summary="two-layer upsampling head on frozen feature maps (ADE20K); mIoU, pixel acc")
