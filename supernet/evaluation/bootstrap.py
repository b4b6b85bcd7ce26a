"""Bootstrap intervals for mIoU and for the mIoU difference of two models scored on the same images.

mIoU is not a mean over images (it is computed from the confusion matrix summed over the set), so the
bootstrap resamples *images*: draw n images with replacement, sum their per-image confusion matrices, recompute
mIoU (the same ``nanmean`` convention as :mod:`supernet.evaluation.metrics`). For a difference, both models are
resampled with the same draw (paired), which is what makes a 1-point gap on 50 images testable at all.
The interval is the percentile interval of the resampled statistic; everything is seeded.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from supernet.evaluation.metrics import mean_iou

__all__ = ["BootstrapInterval", "miou_of_sums", "bootstrap_miou", "bootstrap_miou_difference"]

DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class BootstrapInterval:
    """A point estimate (on the images as given) and its percentile bootstrap interval, as fractions."""

    estimate: float
    low: float
    high: float
    confidence: float
    resamples: int
    images: int
    seed: int

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict:
        return asdict(self)

    def pct(self, digits: int = 2) -> str:
        """``+1.23 [-0.40, +2.91]`` in percentage points."""
        return (f"{100 * self.estimate:+.{digits}f} [{100 * self.low:+.{digits}f}, "
                f"{100 * self.high:+.{digits}f}]")


def miou_of_sums(matrices: torch.Tensor) -> torch.Tensor:
    """mIoU of each of a batch of confusion matrices (B x C x C) -> B values (float64; NaN when all classes are
    absent), with the convention of :func:`supernet.evaluation.metrics.mean_iou`."""
    m = matrices.double()
    inter = m.diagonal(dim1=-2, dim2=-1)
    union = m.sum(-1) + m.sum(-2) - inter
    return (inter / union).nanmean(-1)


def _check(per_image: torch.Tensor, name: str) -> torch.Tensor:
    if per_image.dim() != 3 or per_image.shape[1] != per_image.shape[2] or per_image.shape[0] < 1:
        raise ValueError(f"{name} must be per-image confusion matrices shaped (images, C, C), "
                         f"not {tuple(per_image.shape)}")
    return per_image


def _resampled_mious(stacks: list[torch.Tensor], resamples: int, seed: int, chunk: int = 100) -> list[torch.Tensor]:
    """For each stack (n x C x C), the mIoU of ``resamples`` image resamples, the same draws for every stack."""
    n = stacks[0].shape[0]
    gen = torch.Generator().manual_seed(seed)
    flat = [s.reshape(n, -1).double() for s in stacks]
    out: list[list[torch.Tensor]] = [[] for _ in stacks]
    done = 0
    while done < resamples:
        b = min(chunk, resamples - done)
        draws = torch.randint(0, n, (b, n), generator=gen)
        counts = torch.zeros(b, n, dtype=torch.float64).scatter_add_(1, draws, torch.ones(b, n, dtype=torch.float64))
        for k, f in enumerate(flat):
            sums = (counts @ f).reshape(b, *stacks[k].shape[1:])  # exact: integer-valued doubles < 2^53
            out[k].append(miou_of_sums(sums))
        done += b
    return [torch.cat(parts) for parts in out]


def _interval(estimate: float, values: torch.Tensor, confidence: float, resamples: int, images: int,
              seed: int) -> BootstrapInterval:
    values = values[~values.isnan()]
    alpha = (1.0 - confidence) / 2
    q = torch.quantile(values, torch.tensor([alpha, 1.0 - alpha], dtype=torch.float64)) if values.numel() else \
        torch.tensor([float("nan")] * 2)
    return BootstrapInterval(estimate, float(q[0]), float(q[1]), confidence, resamples, images, seed)


def _check_args(resamples: int, confidence: float) -> None:
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, not {resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence}")


def bootstrap_miou(per_image: torch.Tensor, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                   confidence: float = DEFAULT_CONFIDENCE) -> BootstrapInterval:
    """mIoU of the summed ``per_image`` confusion matrices (n x C x C) and its image-bootstrap interval."""
    _check(per_image, "per_image")
    _check_args(resamples, confidence)
    (values,) = _resampled_mious([per_image], resamples, seed)
    return _interval(mean_iou(per_image.sum(0)), values, confidence, resamples, per_image.shape[0], seed)


def bootstrap_miou_difference(a: torch.Tensor, b: torch.Tensor, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                              confidence: float = DEFAULT_CONFIDENCE) -> BootstrapInterval:
    """mIoU(a) - mIoU(b) for two models' per-image confusion matrices on the same images (same order), with the
    paired image-bootstrap percentile interval (fractions: 0.01 is one mIoU point)."""
    _check(a, "a")
    _check(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must cover the same images and classes: {tuple(a.shape)} vs {tuple(b.shape)}")
    _check_args(resamples, confidence)
    va, vb = _resampled_mious([a, b], resamples, seed)
    return _interval(mean_iou(a.sum(0)) - mean_iou(b.sum(0)), va - vb, confidence, resamples, a.shape[0], seed)
