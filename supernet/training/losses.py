"""Losses of the sandwich rule: cross-entropy on labels and pixel-wise distillation, both at label size."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from supernet.data.datasets import IGNORE_INDEX


def upsample_to(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize 1/8 logits to the label's ``(H, W)`` (no-op when already there)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def segmentation_loss(logits: torch.Tensor, label: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Pixel-wise cross-entropy of logits (any resolution, resized to the label) against ``label``."""
    return F.cross_entropy(upsample_to(logits, label.shape[-2:]), label, ignore_index=ignore_index)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, label: torch.Tensor,
                      ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean pixel-wise KL(teacher || student) at label size over labelled pixels (pad/ignore pixels skipped).

    ``teacher`` must already be detached (the max subnet's prediction); its gradient equals the soft
    cross-entropy's, and the value is 0 when the student matches the teacher."""
    size = label.shape[-2:]
    log_s = F.log_softmax(upsample_to(student, size), dim=1)
    log_t = F.log_softmax(upsample_to(teacher, size), dim=1)
    per_pixel = (log_t.exp() * (log_t - log_s)).sum(dim=1)
    valid = (label != ignore_index).to(per_pixel.dtype)
    return (per_pixel * valid).sum() / valid.sum().clamp_min(1.0)
