"""Subnet evaluation: mIoU, per-class IoU and pixel accuracy of one subnet of a trained supernet after BN
recalibration (the library behind ``etf-eval``), and :class:`SubnetEvaluator`, the fast cached evaluation the
search calls thousands of times.

Validation follows mmseg: whole-image inference on the image resized to short side ``--size``, logits
resized back to the original label size, a confusion matrix accumulated over the set.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from supernet.evaluation.calibration import elastic_bn_layers
from supernet.training.checkpoint import load_supernet
from supernet.data.datasets import build_dataset
from etf.common import EtfError
from supernet.training.losses import upsample_to
from supernet.evaluation.metrics import SegmentationMetrics
from supernet.model import TopFormerSupernet
from supernet.space import TABLE1, ArchConfig, load_config
from supernet.topformer import TopFormer

__all__ = ["resolve_arch", "calibration_batches", "validation_batches", "predict", "SubnetEvaluator",
           "evaluate_dataset", "palette_for"]


def resolve_arch(ref: str) -> ArchConfig:
    """``--arch``: a preset name, a JSON config path, or ``max`` / ``min`` (the supernet's extremes)."""
    if ref == "max":
        return TABLE1.max_config()
    if ref == "min":
        return TABLE1.min_config()
    return load_config(ref)


def calibration_batches(data: str | Path, dataset: str, size: int, n_batches: int, batch: int,
                        seed: int = 0) -> list[torch.Tensor]:
    """``n_batches`` fixed batches of training images through the *training* pipeline (random crops of
    ``size``), drawn from a seeded permutation so every call gives the same tensors."""
    if n_batches <= 0:
        return []
    ds = build_dataset(dataset, data, "train", size, train=True, seed=seed)
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed)).tolist()
    need = n_batches * batch
    order = (order * (need // len(order) + 1))[:need]  # small sets: wrap around (new epoch = new crop)
    out = []
    for b in range(n_batches):
        items = []
        for j, index in enumerate(order[b * batch:(b + 1) * batch]):
            ds.set_epoch((b * batch + j) // len(ds))
            items.append(ds[index]["image"])
        out.append(torch.stack(items))
    return out


def validation_batches(data: str | Path, dataset: str, size: int, limit: int | None, batch: int,
                       split: str = "val") -> tuple[list[tuple[torch.Tensor, torch.Tensor]], Any]:
    """The first ``limit`` validation images (all when None) through the validation pipeline, grouped into
    batches of up to ``batch`` images of equal size (labels keep the original size). Returns (batches, dataset)."""
    ds = build_dataset(dataset, data, split, size, train=False)
    count = len(ds) if limit is None else min(limit, len(ds))
    batches: list[tuple[torch.Tensor, torch.Tensor]] = []
    images: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    for i in range(count):
        item = ds[i]
        if images and (item["image"].shape != images[0].shape or item["label"].shape != labels[0].shape
                       or len(images) == batch):
            batches.append((torch.stack(images), torch.stack(labels)))
            images, labels = [], []
        images.append(item["image"])
        labels.append(item["label"])
    if images:
        batches.append((torch.stack(images), torch.stack(labels)))
    return batches, ds


@torch.no_grad()
def predict(model: TopFormerSupernet, images: torch.Tensor, label_size: Sequence[int]) -> torch.Tensor:
    """Class ids (N x H x W at ``label_size``) of the active subnet in eval mode."""
    return upsample_to(model(images), tuple(label_size)).argmax(1)


class SubnetEvaluator:
    """mIoU of any subnet on fixed in-memory calibration and validation subsets, with a cache.

    ``evaluate(cfg)`` recalibrates BN on ``calib_batches``, scores ``val_batches`` and returns mIoU in
    percent; results are cached by ``cfg.key()``. ``recalibrated_subnet(cfg)`` is the static model that was
    scored (for export). The supernet's BN buffers are restored after each call, so results do not depend on
    the order of calls. ``num_classes`` is the class count of the supernet's head."""

    def __init__(self, supernet: TopFormerSupernet, calib_batches: list[torch.Tensor],
                 val_batches: list[tuple[torch.Tensor, torch.Tensor]], num_classes: int,
                 device: torch.device | str = "cpu"):
        if not val_batches:
            raise EtfError("SubnetEvaluator needs at least one validation batch")
        self.supernet = supernet.to(device).eval()
        self.calib_batches, self.val_batches = calib_batches, val_batches
        self.num_classes, self.device = num_classes, torch.device(device)
        self.cache: dict[str, float] = {}
        self._bn_snapshot = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
                             for m in elastic_bn_layers(supernet)]

    @classmethod
    def from_checkpoint(cls, ckpt: str | Path, data_root: str | Path, dataset: str, size: int, n_calib: int,
                        n_val: int, batch: int, device: torch.device | str = "cpu", seed: int = 0) -> "SubnetEvaluator":
        """Load the supernet of ``ckpt`` and build ``n_calib`` calibration batches of ``batch`` training crops
        (side ``size``) and the first ``n_val`` validation images (short side ``size``), once, in memory."""
        net = load_supernet(ckpt)
        calib = calibration_batches(data_root, dataset, size, n_calib, batch, seed)
        val, ds = validation_batches(data_root, dataset, size, n_val, batch)
        if ds.num_classes != net.num_classes:
            raise EtfError(f"{ckpt} was trained for {net.num_classes} classes, {dataset} at {data_root} has "
                           f"{ds.num_classes}")
        return cls(net, calib, val, net.num_classes, device)

    def restore_bn(self) -> None:
        """Put back the supernet's BN statistics as they were when the evaluator was made."""
        with torch.no_grad():
            for m, (mean, var, n) in zip(elastic_bn_layers(self.supernet), self._bn_snapshot):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(n)

    @contextlib.contextmanager
    def _active(self, cfg: ArchConfig, calibrate: bool = True) -> Iterator[TopFormerSupernet]:
        """The supernet with ``cfg`` active and (``calibrate``) its BN recalibrated on the calibration batches;
        the stored BN statistics are put back on exit."""
        self.supernet.set_active_subnet(cfg)
        try:
            if calibrate and self.calib_batches:
                self.supernet.set_running_statistics(self.calib_batches, device=self.device)
            yield self.supernet
        finally:
            self.restore_bn()

    def metrics(self, cfg: ArchConfig, calibrate: bool = True) -> dict[str, Any]:
        """Full metrics dict (mIoU, aAcc, mAcc as fractions, per-class) of ``cfg``, uncached."""
        with self._active(cfg, calibrate) as net:
            net.eval()
            meter = SegmentationMetrics(self.num_classes)
            for images, labels in self.val_batches:
                meter.update(predict(net, images.to(self.device), labels.shape[-2:]), labels)
            return meter.summary()

    def recalibrated_subnet(self, cfg: ArchConfig) -> TopFormer:
        """The static subnet ``cfg`` (:class:`~supernet.topformer.TopFormer`, eval mode) with the weights and the
        recalibrated BN statistics that :meth:`evaluate` scores; the supernet itself is left unchanged."""
        with self._active(cfg) as net:
            return net.get_active_subnet(cfg).eval()

    def evaluate(self, cfg: ArchConfig) -> float:
        """mIoU in percent of subnet ``cfg`` after BN recalibration (cached by ``cfg.key()``)."""
        key = cfg.key()
        if key not in self.cache:
            miou = self.metrics(cfg, calibrate=True)["mIoU"]
            self.cache[key] = 100.0 * miou if miou is not None else math.nan
        return self.cache[key]


def evaluate_dataset(model: TopFormerSupernet, ds: Any, device: torch.device, limit: int | None = None,
                     show: int = 0, show_dir: Path | None = None, palette: Any = None,
                     progress: bool = True) -> dict[str, Any]:
    """Score the active subnet image by image over ``ds`` (validation pipeline); optionally write the first
    ``show`` image | ground truth | prediction PNGs to ``show_dir``."""
    from tqdm import tqdm

    from supernet.data.visualize import save_side_by_side

    model.eval()
    meter = SegmentationMetrics(ds.num_classes, class_names=ds.class_names)
    count = len(ds) if limit is None else min(limit, len(ds))
    written = []
    for i in tqdm(range(count), desc="etf-eval", unit="img", disable=not progress or None):
        item = ds[i]
        label = item["label"]
        pred = predict(model, item["image"][None].to(device), label.shape)[0].cpu()
        meter.update(pred, label)
        if i < show and show_dir is not None:
            written.append(str(save_side_by_side(show_dir / f"{item['name']}.png", item["image"], label, pred,
                                                 palette)))
    summary = meter.summary()
    summary["images"] = count
    summary["shown"] = written
    return summary


def palette_for(ds: Any):
    """The colour palette for --show pictures of ``ds`` (the synthetic set has its own)."""
    from supernet.data.visualize import default_palette

    if ds.layout.name == "synthetic":
        from supernet.data.synthetic import MAX_CLASSES, class_palette

        if ds.num_classes <= MAX_CLASSES:
            return class_palette(ds.num_classes)
    return default_palette(ds.num_classes)
