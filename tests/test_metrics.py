"""Confusion-matrix metrics against hand-checked cases and scikit-learn on the same arrays."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import jaccard_score

from supernet.evaluation.metrics import (SegmentationMetrics, accuracy_per_class, confusion_matrix, iou_per_class, mean_iou,
                              pixel_accuracy, summarize)


def test_hand_checked_case_with_ignore_and_absent_class() -> None:
    target = torch.tensor([[0, 0, 1], [1, 2, 255]])
    pred = torch.tensor([[0, 1, 1], [1, 0, 3]])  # the pixel predicted 3 is ignored
    matrix = confusion_matrix(pred, target, num_classes=4)
    assert matrix.tolist() == [[1, 1, 0, 0],
                               [0, 2, 0, 0],
                               [1, 0, 0, 0],
                               [0, 0, 0, 0]]
    ious = iou_per_class(matrix)
    assert ious[:3].tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])  # 1/(2+2-1), 2/(3+2-2), 0/(1+0)
    assert math.isnan(ious[3])  # class 3: union 0 -> NaN, left out of the mean
    assert mean_iou(matrix) == pytest.approx(1 / 3)
    assert pixel_accuracy(matrix) == pytest.approx(3 / 5)
    assert accuracy_per_class(matrix)[:3].tolist() == pytest.approx([0.5, 1.0, 0.0])


def test_class_predicted_but_never_labelled_counts_as_zero() -> None:
    target = torch.tensor([0, 0, 0, 0])
    pred = torch.tensor([0, 0, 0, 2])
    matrix = confusion_matrix(pred, target, 3)
    ious = iou_per_class(matrix)
    assert ious[0] == pytest.approx(0.75) and ious[2] == 0 and math.isnan(ious[1])
    assert mean_iou(matrix) == pytest.approx((0.75 + 0) / 2)


def test_everything_ignored_gives_nan_not_an_error() -> None:
    matrix = confusion_matrix(torch.tensor([1, 2]), torch.tensor([255, 255]), 3)
    assert matrix.sum() == 0 and math.isnan(mean_iou(matrix)) and math.isnan(pixel_accuracy(matrix))
    assert summarize(matrix)["mIoU"] is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_scikit_learn_on_random_maps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_classes = 7
    target = rng.integers(0, 5, (4, 16, 16))  # classes 5 and 6 never labelled
    target[rng.random(target.shape) < 0.2] = 255
    pred = np.where(rng.random(target.shape) < 0.6, target, rng.integers(0, 6, target.shape))  # 6 never predicted
    pred[pred == 255] = 0
    keep = target != 255
    labels = list(range(num_classes))
    reference_matrix = sk_confusion_matrix(target[keep], pred[keep], labels=labels)
    reference_iou = jaccard_score(target[keep], pred[keep], labels=labels, average=None, zero_division=0)
    present = np.isin(labels, np.concatenate([target[keep], pred[keep]]))
    reference_iou[~present] = np.nan  # mmseg convention: union 0 -> NaN, excluded from the mean

    matrix = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), num_classes)
    assert np.array_equal(matrix.numpy(), reference_matrix)
    ours = iou_per_class(matrix).numpy()
    assert np.array_equal(np.isnan(ours), np.isnan(reference_iou)) and np.isnan(ours[6])
    assert np.allclose(ours[~np.isnan(ours)], reference_iou[~np.isnan(reference_iou)])
    assert mean_iou(matrix) == pytest.approx(float(np.nanmean(reference_iou)))
    assert pixel_accuracy(matrix) == pytest.approx(float((target[keep] == pred[keep]).mean()))


def test_accumulator_equals_one_shot_and_takes_logits() -> None:
    rng = np.random.default_rng(3)
    target = torch.from_numpy(rng.integers(0, 4, (6, 8, 8)))
    target[0, 0] = 255
    logits = torch.from_numpy(rng.normal(size=(6, 4, 8, 8)))
    metrics = SegmentationMetrics(4, class_names=["a", "b", "c", "d"])
    for start in range(0, 6, 2):
        metrics.update(logits[start:start + 2], target[start:start + 2])
    expected = confusion_matrix(logits.argmax(1), target, 4)
    assert torch.equal(metrics.matrix, expected)
    metrics.all_reduce()  # not distributed: a no-op
    assert torch.equal(metrics.matrix, expected)
    summary = metrics.summary()
    assert summary["mIoU"] == pytest.approx(mean_iou(expected))
    assert summary["pixels"] == 6 * 64 - 8 and set(summary["per_class"]) == {"a", "b", "c", "d"}
    metrics.reset()
    assert metrics.matrix.sum() == 0


def test_out_of_range_values_raise() -> None:
    with pytest.raises(ValueError, match="label values"):
        confusion_matrix(torch.tensor([0]), torch.tensor([5]), 3)
    with pytest.raises(ValueError, match="predicted values"):
        confusion_matrix(torch.tensor([3]), torch.tensor([0]), 3)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0]), 3)
