"""PNG panels of image | ground truth | prediction with a class palette, for ``etf-eval --show N``."""
from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from etf.common import atomic_open
from supernet.data.datasets import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD

IGNORE_COLOUR = (0, 0, 0)


def default_palette(num_classes: int) -> np.ndarray:
    """Distinct deterministic colours (uint8, num_classes x 3) for any class count (ADE20K, COCO-Stuff)."""
    colours = []
    for i in range(num_classes):
        hue = (i * 0.618033988749895) % 1.0  # golden-ratio steps spread hues evenly
        sat, val = (0.85, 0.95) if i % 3 == 0 else (0.6, 0.8) if i % 3 == 1 else (0.95, 0.6)
        colours.append([int(255 * c) for c in colorsys.hsv_to_rgb(hue, sat, val)])
    return np.asarray(colours, np.uint8).reshape(num_classes, 3)


def colorize(label: np.ndarray | torch.Tensor, palette: np.ndarray, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Class-id map HxW -> RGB uint8 HxWx3; ignored pixels are black."""
    label = label.cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
    label = label.astype(np.int64)
    table = np.zeros((max(len(palette), ignore_index + 1), 3), np.uint8)
    table[: len(palette)] = palette
    table[ignore_index] = IGNORE_COLOUR
    bad = (label < 0) | ((label >= len(palette)) & (label != ignore_index))
    if bad.any():
        raise ValueError(f"label values must be in 0..{len(palette) - 1} or {ignore_index}")
    return table[label]


def denormalize(image: torch.Tensor) -> np.ndarray:
    """Undo ImageNet normalisation: float 3xHxW tensor -> RGB uint8 HxWx3."""
    array = image.detach().cpu().float().numpy().transpose(1, 2, 0)
    array = array * np.asarray(IMAGENET_STD, np.float32) + np.asarray(IMAGENET_MEAN, np.float32)
    return np.clip(array + 0.5, 0, 255).astype(np.uint8)


def side_by_side(image: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor, pred: np.ndarray | torch.Tensor,
                 palette: np.ndarray, ignore_index: int = IGNORE_INDEX, titles: bool = True) -> Image.Image:
    """One RGB panel: image | ground truth | prediction, all at the label's size.

    ``image`` is uint8 HxWx3 or a normalised 3xHxW tensor (any size; resized to the label's)."""
    rgb = denormalize(image) if isinstance(image, torch.Tensor) else np.asarray(image, np.uint8)
    gt, pr = colorize(label, palette, ignore_index), colorize(pred, palette, ignore_index)
    if gt.shape != pr.shape:
        raise ValueError(f"label {gt.shape[:2]} and prediction {pr.shape[:2]} differ in size")
    height, width = gt.shape[:2]
    if rgb.shape[:2] != (height, width):
        rgb = np.asarray(Image.fromarray(rgb).resize((width, height), Image.BILINEAR))
    gap = np.full((height, max(2, width // 64), 3), 255, np.uint8)
    panel = Image.fromarray(np.concatenate([rgb, gap, gt, gap, pr], axis=1))
    if titles:
        draw = ImageDraw.Draw(panel)
        for k, text in enumerate(("image", "ground truth", "prediction")):
            x = k * (width + gap.shape[1]) + 2
            draw.rectangle((x - 1, 1, x + 6 * len(text) + 1, 12), fill=(0, 0, 0))
            draw.text((x, 1), text, fill=(255, 255, 255))
    return panel


def save_side_by_side(path: str | Path, image: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor,
                      pred: np.ndarray | torch.Tensor, palette: np.ndarray, ignore_index: int = IGNORE_INDEX) -> Path:
    """Write :func:`side_by_side` as a PNG atomically (:func:`etf.common.atomic_open`); return the path."""
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        side_by_side(image, label, pred, palette, ignore_index).save(fh, format="PNG")
    return path
