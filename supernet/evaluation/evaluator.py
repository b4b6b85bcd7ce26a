"""Subnet evaluation: mIoU, per-class IoU and pixel accuracy of one subnet of a trained supernet after BN
recalibration (the library behind ``etf-eval``), and :class:`SubnetEvaluator`, the fast cached evaluation the
search calls thousands of times.

Validation follows mmseg: whole-image inference on the image resized to short side ``--size``, logits
resized back to the original label size, a confusion matrix accumulated over the set.

Under torchrun (a live ``torch.distributed`` process group) both :class:`SubnetEvaluator` and
:func:`evaluate_dataset` shard the validation images over the ranks and all-reduce the integer confusion
matrices, so every rank gets exactly the single-process result: the evaluator deals out whole batches (batch b to
rank b mod world size, the same batches as one process forms), :func:`evaluate_dataset` single images.
BN recalibration runs on every rank on the same calibration batches.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from supernet.recalibration import elastic_bn_layers
from supernet.evaluation.split import DEFAULT_REPORT_FRACTION, ValSplit, ids_digest, split_ids
from supernet.training.checkpoint import load_supernet
from supernet.data.datasets import build_dataset
from etf.common import EtfError
from supernet.training.losses import upsample_to
from supernet.evaluation.metrics import SegmentationMetrics, all_reduce_counts, confusion_matrix, summarize
from supernet.model import TopFormerSupernet
from supernet.space import TABLE1, ArchConfig, load_config
from supernet.topformer import TopFormer

__all__ = ["resolve_arch", "CalibrationSpec", "calibration_batches", "validation_batches", "validation_split", "predict",
           "SubnetEvaluator", "evaluate_dataset", "palette_for", "rank_and_world", "all_reduce_counts"]


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the live ``torch.distributed`` process group, (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


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


@dataclass(frozen=True)
class CalibrationSpec:
    """Where BN recalibration batches come from: the same arguments as :func:`calibration_batches`, so an
    exported subnet can carry exactly the statistics :class:`SubnetEvaluator` scored it with."""

    data: str | Path
    dataset: str
    size: int
    n_batches: int
    batch: int
    seed: int = 0

    def batches(self) -> tuple[list[torch.Tensor], int]:
        """The calibration batches and the data set's number of classes (bad input: one-line EtfError)."""
        if not Path(self.data).exists():
            raise EtfError(f"calibration data folder not found: {self.data}")
        if self.n_batches < 1 or self.batch < 1 or self.size < 1:
            raise EtfError("calibration needs at least 1 batch of at least 1 image of side >= 1")
        ds = build_dataset(self.dataset, self.data, "train", self.size, train=True, seed=self.seed)
        return calibration_batches(self.data, self.dataset, self.size, self.n_batches, self.batch, self.seed), \
            ds.num_classes

    def to_dict(self) -> dict[str, Any]:
        return {"data": str(self.data), "dataset": self.dataset, "size": self.size, "n_batches": self.n_batches,
                "batch": self.batch, "seed": self.seed}


def validation_split(ds: Any, fraction: float = DEFAULT_REPORT_FRACTION, seed: int = 0) -> ValSplit:
    """The fixed search/report partition of dataset ``ds`` by image id (:mod:`supernet.evaluation.split`)."""
    return split_ids([s.name for s in ds.samples], fraction, seed)


def validation_batches(data: str | Path, dataset: str, size: int, limit: int | None, batch: int,
                       split: str = "val", indices: Sequence[int] | None = None,
                       ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], Any]:
    """The first ``limit`` validation images (all when None) through the validation pipeline, grouped into
    batches of up to ``batch`` images of equal size (labels keep the original size). Returns (batches, dataset).
    With ``indices`` only those dataset images are used (the first ``limit`` of them, in the given order)."""
    ds = build_dataset(dataset, data, split, size, train=False)
    chosen = list(range(len(ds))) if indices is None else list(indices)
    chosen = chosen if limit is None else chosen[:limit]
    batches: list[tuple[torch.Tensor, torch.Tensor]] = []
    images: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    for i in chosen:
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
    the order of calls. ``num_classes`` is the class count of the supernet's head. ``per_image(cfg)`` gives the
    per-image confusion matrices (for bootstrap intervals). Under torchrun the batches are dealt out over the
    ranks (module docstring)."""

    def __init__(self, supernet: TopFormerSupernet, calib_batches: list[torch.Tensor],
                 val_batches: list[tuple[torch.Tensor, torch.Tensor]], num_classes: int,
                 device: torch.device | str = "cpu", split: str | None = None, image_ids: Sequence[str] = (),
                 split_record: dict[str, Any] | None = None):
        if not val_batches:
            raise EtfError("SubnetEvaluator needs at least one validation batch")
        self.supernet = supernet.to(device).eval()
        self.calib_batches, self.val_batches = calib_batches, val_batches
        self.num_classes, self.device = num_classes, torch.device(device)
        self.split, self.image_ids, self.split_record = split, tuple(image_ids), split_record
        self.cache: dict[str, float] = {}
        self._bn_snapshot = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
                             for m in elastic_bn_layers(supernet)]

    @property
    def images(self) -> int:
        """How many validation images this evaluator scores (over all ranks)."""
        return sum(int(labels.shape[0]) for _, labels in self.val_batches)

    @classmethod
    def from_checkpoint(cls, ckpt: str | Path, data_root: str | Path, dataset: str, size: int, n_calib: int,
                        n_val: int | None, batch: int, device: torch.device | str = "cpu", seed: int = 0,
                        split: str | None = None, report_fraction: float = DEFAULT_REPORT_FRACTION,
                        split_seed: int = 0) -> "SubnetEvaluator":
        """Load the supernet of ``ckpt`` and build ``n_calib`` calibration batches of ``batch`` training crops
        (side ``size``) and the first ``n_val`` validation images (short side ``size``; all when None), once,
        in memory. With ``split`` (``search`` or ``report``) the images come from that part of the fixed
        search/report partition (:func:`validation_split` with ``report_fraction``, ``split_seed``)."""
        net = load_supernet(ckpt)
        calib = calibration_batches(data_root, dataset, size, n_calib, batch, seed)
        return cls.on_split(net, calib, data_root, dataset, size, n_val, batch, device, split, report_fraction,
                            split_seed, ckpt=ckpt)

    @classmethod
    def on_split(cls, net: TopFormerSupernet, calib: list[torch.Tensor], data_root: str | Path, dataset: str,
                 size: int, n_val: int | None, batch: int, device: torch.device | str = "cpu",
                 split: str | None = None, report_fraction: float = DEFAULT_REPORT_FRACTION, split_seed: int = 0,
                 ckpt: str | Path | None = None) -> "SubnetEvaluator":
        """An evaluator over ``net`` and ``calib`` (shared, not copied: build a search and a report evaluator
        on one supernet) scoring the first ``n_val`` images of ``split`` (None: the whole validation set)."""
        ds = build_dataset(dataset, data_root, "val", size, train=False)
        if ds.num_classes != net.num_classes:
            raise EtfError(f"{ckpt or 'the supernet'} was trained for {net.num_classes} classes, {dataset} at "
                           f"{data_root} has {ds.num_classes}")
        record, indices = None, None
        if split is not None:
            parts = validation_split(ds, report_fraction, split_seed)
            indices = parts.indices(split)
            record = parts.record()
        val, ds = validation_batches(data_root, dataset, size, n_val, batch, indices=indices)
        chosen = list(range(len(ds))) if indices is None else list(indices)
        ids = [ds.samples[i].name for i in (chosen if n_val is None else chosen[:n_val])]
        if record is not None:
            record["used"] = {"split": split, "images": len(ids), "ids_sha256": ids_digest(ids)}
        return cls(net, calib, val, net.num_classes, device, split=split, image_ids=ids, split_record=record)

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

    def per_image(self, cfg: ArchConfig, calibrate: bool = True) -> torch.Tensor:
        """Per-image confusion matrices (images x C x C, int64, in ``image_ids`` order) of subnet ``cfg``
        after BN recalibration; identical on every rank and to a single process under torchrun."""
        rank, world = rank_and_world()
        out = torch.zeros(self.images, self.num_classes, self.num_classes, dtype=torch.int64)
        with self._active(cfg, calibrate) as net:
            net.eval()
            start = 0
            for b, (images, labels) in enumerate(self.val_batches):
                if b % world == rank:
                    pred = predict(net, images.to(self.device), labels.shape[-2:]).cpu()
                    for j in range(labels.shape[0]):
                        out[start + j] = confusion_matrix(pred[j], labels[j], self.num_classes)
                start += labels.shape[0]
        return all_reduce_counts(out)

    def metrics(self, cfg: ArchConfig, calibrate: bool = True) -> dict[str, Any]:
        """Full metrics dict (mIoU, aAcc, mAcc as fractions, per-class) of ``cfg``, uncached."""
        return summarize(self.per_image(cfg, calibrate).sum(0))

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
    rank, world = rank_and_world()
    written = []
    mine = range(rank, count, world)  # under torchrun: image i on rank i mod world size
    for i in tqdm(mine, desc="etf-eval", unit="img", disable=not progress or rank != 0 or None):
        item = ds[i]
        label = item["label"]
        pred = predict(model, item["image"][None].to(device), label.shape)[0].cpu()
        meter.update(pred, label)
        if i < show and show_dir is not None:
            written.append(str(save_side_by_side(show_dir / f"{item['name']}.png", item["image"], label, pred,
                                                 palette)))
    all_reduce_counts(meter.matrix)
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
