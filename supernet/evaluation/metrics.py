"""Segmentation metrics from a confusion matrix: per-class IoU, mIoU, pixel accuracy.

Convention (mmseg's): rows of the matrix are ground truth, columns predictions; pixels whose label
is the ignore index are skipped. A class's IoU is intersection / union; a class with union 0 (absent
from both ground truth and prediction over the whole set) has IoU NaN and is left out of the mean
(``nanmean``). A class that is predicted but never in the ground truth has IoU 0 and counts.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from supernet.data.datasets import IGNORE_INDEX


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Count (ground truth, prediction) pixel pairs into an int64 ``num_classes x num_classes`` matrix.

    ``pred`` and ``target`` are integer tensors of the same shape; target pixels equal to
    ``ignore_index`` are skipped. Other out-of-range values raise ValueError (a bug, not noise)."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from label shape {tuple(target.shape)}")
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    keep = target != ignore_index
    pred, target = pred[keep], target[keep]
    if target.numel() and (target.min() < 0 or target.max() >= num_classes):
        raise ValueError(f"label values must be in 0..{num_classes - 1} or {ignore_index}")
    if pred.numel() and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f"predicted values must be in 0..{num_classes - 1}")
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def iou_per_class(matrix: torch.Tensor) -> torch.Tensor:
    """IoU of each class (float64); NaN where the class is in neither ground truth nor prediction."""
    matrix = matrix.double()
    intersection = matrix.diag()
    union = matrix.sum(0) + matrix.sum(1) - intersection
    return intersection / union  # 0/0 -> NaN on purpose


def accuracy_per_class(matrix: torch.Tensor) -> torch.Tensor:
    """Recall of each class (mmseg's per-class Acc); NaN where the class is absent from ground truth."""
    matrix = matrix.double()
    return matrix.diag() / matrix.sum(1)


def mean_iou(matrix: torch.Tensor) -> float:
    """Mean IoU over classes present in ground truth or prediction (nanmean); NaN for an empty matrix."""
    ious = iou_per_class(matrix)
    return float(ious.nanmean()) if not ious.isnan().all() else math.nan


def pixel_accuracy(matrix: torch.Tensor) -> float:
    """Correct pixels / labelled pixels (ignored pixels excluded); NaN when nothing was labelled."""
    total = matrix.sum()
    return float(matrix.diag().sum().double() / total) if total > 0 else math.nan


def summarize(matrix: torch.Tensor, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """All metrics as plain Python numbers: mIoU, aAcc, mAcc and per-class IoU/Acc (NaN -> None)."""
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(matrix.shape[0])]
    ious, accs = iou_per_class(matrix), accuracy_per_class(matrix)

    def plain(value: float) -> float | None:
        return None if math.isnan(value) else value

    return {
        "mIoU": plain(mean_iou(matrix)),
        "aAcc": plain(pixel_accuracy(matrix)),
        "mAcc": plain(float(accs.nanmean())) if not accs.isnan().all() else None,
        "pixels": int(matrix.sum()),
        "per_class": {name: {"IoU": plain(float(i)), "Acc": plain(float(a))} for name, i, a in zip(names, ious, accs)},
    }


def all_reduce_counts(counts: torch.Tensor) -> torch.Tensor:
    """Sum an integer count tensor (a confusion matrix) over all ranks, in place, and return it; unchanged for
    one process. Integer sums are exact, so the result does not depend on how the images were dealt out.
    NCCL reduces on the GPU: the tensor goes there and back."""
    if torch.distributed.is_available() and torch.distributed.is_initialized() \
            and torch.distributed.get_world_size() > 1:
        on_gpu = torch.distributed.get_backend() == "nccl"
        buf = counts.cuda() if on_gpu else counts
        torch.distributed.all_reduce(buf)
        if on_gpu:
            counts.copy_(buf.cpu())
    return counts


class SegmentationMetrics:
    """Accumulate a confusion matrix over a data set, batch by batch, then read the metrics."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX,
                 class_names: Sequence[str] | None = None) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = list(class_names) if class_names is not None else None
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def reset(self) -> None:
        self.matrix.zero_()

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``pred`` are class ids shaped like ``target``, or logits with a class dim at 1."""
        if pred.dim() == target.dim() + 1 and pred.shape[1] == self.num_classes:
            pred = pred.argmax(1)
        self.matrix += confusion_matrix(pred.detach().cpu(), target.detach().cpu(), self.num_classes, self.ignore_index)

    def all_reduce(self) -> None:
        """Sum the matrix over processes when torch.distributed is initialised (no-op otherwise)."""
        all_reduce_counts(self.matrix)

    def iou_per_class(self) -> torch.Tensor:
        return iou_per_class(self.matrix)

    def mean_iou(self) -> float:
        return mean_iou(self.matrix)

    def pixel_accuracy(self) -> float:
        return pixel_accuracy(self.matrix)

    def summary(self) -> dict[str, Any]:
        return summarize(self.matrix, self.class_names)
