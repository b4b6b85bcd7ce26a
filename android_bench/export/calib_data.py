"""Images for int8 calibration and for the agreement report of a quantized export, read from the user's dataset.

Both come from the *training* split (never the validation split the file is scored on later), through the
deployed model's own input pipeline: the whole image resized to the model's SxS input and normalised with the
ImageNet mean/std (:class:`supernet.data.datasets.SquareTransform`), in a seeded random order. The first
``held_out`` images of that order are kept for the agreement report and the next ``count`` calibrate, so the
report is measured on images the quantizer's ranges were not fitted to.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from etf.common import EtfError
from supernet.data.datasets import DATASET_NAMES, SquareTransform, build_dataset, detect_dataset

#: Default number of calibration images (a few hundred is what post-training quantization needs).
DEFAULT_COUNT = 200
#: Default number of held-out images for the agreement report.
DEFAULT_HELD_OUT = 8


@dataclass
class CalibrationSet:
    """Calibration inputs (NHWC float32, one image each, for the quantizer), held-out NCHW images for the
    agreement report, and where they came from (recorded in export.json)."""

    inputs: list[np.ndarray]
    held_out: list[torch.Tensor]
    source: dict[str, Any] = field(default_factory=dict)


def resolve_dataset(data: str | Path, dataset: str | None) -> str:
    """``--dataset``, or the kind detected from the folder's layout; one-line EtfError when neither works."""
    if dataset is not None:
        if dataset not in DATASET_NAMES:
            raise EtfError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASET_NAMES)}")
        return dataset
    if not Path(data).is_dir():
        raise EtfError(f"dataset path {data} does not exist" if not Path(data).exists()
                       else f"dataset path {data} is not a directory")
    found = detect_dataset(data)
    if found is None:
        raise EtfError(f"cannot tell which dataset {data} holds; pass --dataset ({', '.join(DATASET_NAMES)})")
    return found


def dataset_calibration(data: str | Path, dataset: str | None, size: int, count: int = DEFAULT_COUNT,
                        held_out: int = DEFAULT_HELD_OUT, seed: int = 0, split: str = "train") -> CalibrationSet:
    """``held_out`` + ``count`` images of ``split`` in a seeded order, resized to ``size`` x ``size``; with
    fewer images in the split, the held-out share shrinks first to a fifth (at least one) and calibration
    takes the rest."""
    if count < 1 or held_out < 0:
        raise EtfError(f"calibration needs --calib-count >= 1 (got {count}) and held-out images >= 0 (got {held_out})")
    kind = resolve_dataset(data, dataset)
    ds = build_dataset(kind, data, split, size, train=False, transform=SquareTransform(size))
    n = len(ds)
    keep = min(held_out, max(1, n // 5)) if n > 1 and held_out else 0
    use = min(count, n - keep)
    if use < 1:
        raise EtfError(f"{kind} at {data} has {n} {split} image(s); calibration needs at least one")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    held = [ds[i]["image"] for i in order[:keep]]
    calib = [ds[i]["image"].permute(1, 2, 0)[None].contiguous().numpy() for i in order[keep:keep + use]]
    source = {"kind": "dataset", "data": str(data), "dataset": kind, "split": split, "seed": seed,
              "calibration_images": use, "held_out_images": keep, "num_classes": ds.num_classes,
              "transform": f"whole image resized to {size}x{size} (bilinear), ImageNet mean/std"}
    return CalibrationSet(calib, held, source)


def noise_calibration(size: int, count: int, held_out: int = DEFAULT_HELD_OUT, seed: int = 0) -> CalibrationSet:
    """Seeded standard-normal inputs instead of images: only for latency benchmarks and tests of the
    machinery (activation ranges fitted to noise say nothing about accuracy on images)."""
    gen = torch.Generator().manual_seed(seed)
    held = [torch.randn(3, size, size, generator=gen) for _ in range(held_out)]
    calib = [torch.randn(1, size, size, 3, generator=gen).numpy() for _ in range(count)]
    return CalibrationSet(calib, held, {"kind": "noise", "seed": seed, "calibration_images": count,
                                        "held_out_images": held_out,
                                        "transform": "seeded standard-normal, no images"})
