"""mIoU of an exported ``.tflite`` file, run in LiteRT on a dataset's validation images (``etf-eval --tflite``).

The number a user reads here is the number their phone produces: the file itself is run (any precision,
XNNPACK as on phones), not the PyTorch model it came from. Conventions, read from the file, not assumed:

* **Input.** A ``.tflite`` has a fixed ``S x S`` input (its shape says S and whether it is NHWC or NCHW), so
  every image is resized whole to ``S x S`` (bilinear, aspect not kept) and ImageNet-normalised
  (:class:`supernet.data.datasets.SquareTransform`). PyTorch ``etf-eval`` instead resizes the short side to
  ``--size`` keeping the aspect; the two agree on square images (the synthetic set) and differ on others.
* **Output.** Float logits (or quantized logits, dequantized) at any resolution (1/8 or full) are resized
  bilinearly to the label's size, then argmax, as the PyTorch evaluator does; an integer label map (an integer
  output without quantization parameters) is resized to the label's size by nearest neighbour.
* **Score.** A confusion matrix over the split (:mod:`supernet.evaluation.metrics`), labels at their original
  size, ignore index skipped.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from android_bench.litert_runner import TensorInfo, TfliteRunner
from etf.common import EtfError
from supernet.data.datasets import DATASET_NAMES, SquareTransform, build_dataset, detect_dataset
from supernet.evaluation.metrics import SegmentationMetrics


def input_size(info: TensorInfo) -> tuple[int, bool]:
    """(S, nhwc) of a ``1 x S x S x 3`` (NHWC) or ``1 x 3 x S x S`` (NCHW) image input."""
    shape = info.shape
    if len(shape) == 4 and shape[0] == 1 and shape[3] == 3 and shape[1] == shape[2]:
        return shape[1], True
    if len(shape) == 4 and shape[0] == 1 and shape[1] == 3 and shape[2] == shape[3]:
        return shape[2], False
    raise EtfError(f"the model input {list(shape)} is not one square RGB image (1xSxSx3 or 1x3xSxS)")


def to_label_map(output: np.ndarray, info: TensorInfo, num_classes: int,
                 label_size: Sequence[int]) -> torch.Tensor:
    """Class ids (H x W at ``label_size``, int64) from one model output: float logits NHWC ``1xhxwxC`` or
    NCHW ``1xCxhxw`` -> bilinear resize (align_corners False) then argmax; an integer map ``1xhxw`` or
    ``1xhxwx1`` -> nearest resize."""
    size = tuple(int(s) for s in label_size)
    if info.is_label_map:
        labels = output[..., 0] if output.ndim == 4 and output.shape[-1] == 1 else output
        if labels.ndim != 3 or labels.shape[0] != 1:
            raise EtfError(f"integer model output of shape {list(output.shape)} is not a 1xHxW label map")
        lab = torch.from_numpy(labels.astype(np.int64))[None].float()
        return F.interpolate(lab, size=size, mode="nearest")[0, 0].long()
    if output.ndim != 4 or output.shape[0] != 1:
        raise EtfError(f"model output of shape {list(output.shape)} is not 1xHxWxC logits")
    if output.shape[-1] == num_classes:
        logits = torch.from_numpy(np.ascontiguousarray(output, np.float32)).permute(0, 3, 1, 2)
    elif output.shape[1] == num_classes:
        logits = torch.from_numpy(np.ascontiguousarray(output, np.float32))
    else:
        raise EtfError(f"model output {list(output.shape)} has no axis of {num_classes} classes (the dataset's)")
    if tuple(logits.shape[-2:]) != size:
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    return logits.argmax(1)[0]


def export_metadata(path: Path) -> dict[str, Any]:
    """precision / arch_key / weights from the export.json next to ``path`` when it describes this file."""
    report = path.parent / "export.json"
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or Path(str(data.get("files", {}).get("tflite", ""))).name != path.name:
        return {}
    return {k: data[k] for k in ("precision", "arch_key", "weights", "size") if k in data}


def evaluate_tflite(path: str | Path, data: str | Path, dataset: str | None = None, split: str = "val",
                    limit: int | None = None, threads: int = 1, progress: bool = False,
                    image_ids: Sequence[str] | None = None) -> dict[str, Any]:
    """Score the .tflite at ``path`` on ``split`` of the dataset at ``data`` (kind ``dataset``, detected from
    the folder when None): mIoU, aAcc, mAcc, per-class IoU/Acc (fractions), ``miou`` (= mIoU), image count,
    the input size and output shape/dtype the file declares, and its export.json precision when present.
    With ``image_ids`` only those images (by id, e.g. a search/report split's) are scored."""
    path = Path(path)
    if limit is not None and limit < 1:
        raise EtfError("--limit must be at least 1")
    runner = TfliteRunner(path, threads)
    size, nhwc = input_size(runner.input)
    if dataset is None:
        if not Path(data).exists():
            raise EtfError(f"dataset path {data} does not exist")
        dataset = detect_dataset(data)
        if dataset is None:
            raise EtfError(f"cannot tell which dataset {data} holds; pass --dataset ({', '.join(DATASET_NAMES)})")
    ds = build_dataset(dataset, data, split, size, train=False, transform=SquareTransform(size))
    out = runner.output
    if not out.is_label_map:
        channels = out.shape[-1] if len(out.shape) == 4 else None
        if channels != ds.num_classes and (len(out.shape) != 4 or out.shape[1] != ds.num_classes):
            raise EtfError(f"{path} outputs {list(out.shape)} logits but {dataset} at {data} has {ds.num_classes} "
                           "classes")
    meter = SegmentationMetrics(ds.num_classes, class_names=ds.class_names)
    chosen = list(range(len(ds)))
    if image_ids is not None:
        where = {sample.name: i for i, sample in enumerate(ds.samples)}
        missing = [name for name in image_ids if name not in where]
        if missing:
            raise EtfError(f"{len(missing)} of the requested images are not in {data}/{split} (e.g. {missing[0]})")
        chosen = [where[name] for name in image_ids]
    count = len(chosen) if limit is None else min(limit, len(chosen))
    indices: Any = chosen[:count]
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="etf-eval --tflite", unit="img")
    for i in indices:
        item = ds[i]
        image = item["image"][None]
        x = (image.permute(0, 2, 3, 1) if nhwc else image).contiguous().numpy()
        label = item["label"]
        meter.update(to_label_map(runner(x), out, ds.num_classes, label.shape), label)
    summary = meter.summary()
    summary["miou"] = summary["mIoU"]
    summary.update({"images": count, "tflite": str(path), "dataset": dataset, "split": split,
                    "input": runner.input.to_dict() | {"layout": "NHWC" if nhwc else "NCHW"},
                    "output": out.to_dict(), "resize": f"whole image to {size}x{size} (bilinear)",
                    **export_metadata(path)})
    return summary
