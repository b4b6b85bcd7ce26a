"""Side-by-side PNG panels: exact colours for labels, ignore in black, image resized to the label."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from supernet.data.datasets import normalize
from supernet.data.synthetic import class_palette
from supernet.data.visualize import colorize, default_palette, denormalize, save_side_by_side


def test_colorize_uses_palette_and_black_for_ignore() -> None:
    palette = class_palette(4)
    out = colorize(np.array([[0, 3], [255, 1]]), palette)
    assert out[0, 0].tolist() == palette[0].tolist() and out[0, 1].tolist() == palette[3].tolist()
    assert out[1, 0].tolist() == [0, 0, 0]
    with pytest.raises(ValueError):
        colorize(np.array([[7]]), palette)


def test_denormalize_inverts_normalize() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(denormalize(normalize(pixels)), pixels)


def test_panel_layout(tmp_path: Path) -> None:
    palette = default_palette(171)
    assert len({tuple(c) for c in palette}) > 160
    label = torch.zeros(40, 60, dtype=torch.long)
    label[:, 30:] = 170
    pred = label.clone()
    pred[:5] = 255
    image = normalize(np.full((20, 30, 3), 200, np.uint8))  # half size: resized up to the label's
    path = save_side_by_side(tmp_path / "show" / "0.png", image, label, pred, palette)
    with Image.open(path) as png:
        panel = np.asarray(png.convert("RGB"))
    gap = 2
    assert panel.shape == (40, 3 * 60 + 2 * gap, 3)
    assert panel[30, 10].tolist() == [200, 200, 200]  # image, below the title strip
    assert panel[30, 60 + gap + 45].tolist() == palette[170].tolist()  # ground truth, right half
    assert panel[2, 2 * (60 + gap) + 50].tolist() == [0, 0, 0]  # ignored prediction rows
    assert not list((tmp_path / "show").glob(".*tmp"))
