"""Searched winner vs preset after fine-tuning both the same way, scored on the held-out report split.

The seed study trains its searched networks and TopFormer before comparing them; weights inherited from the
supernet alone favour whichever subnet the sandwich rule happened to train best. Here both subnets are
fine-tuned with identical settings (``supernet.training.finetune``), then scored on the report split with
the same BN recalibration batches as the search's report evaluator, and compared with a paired bootstrap
interval over the report images.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supernet.evaluation.metrics import mean_iou
from supernet.space import ArchConfig
from supernet.training.checkpoint import load_supernet, read_checkpoint
from supernet.training.finetune import FinetuneConfig, finetune
from search.report import paired_difference

__all__ = ["FinetuneSettings", "finetune_and_compare"]


@dataclass(frozen=True)
class FinetuneSettings:
    """The one recipe both subnets get."""

    iters: int
    lr: float
    batch: int
    size: int
    distill: float = 0.0
    seed: int = 0
    workers: int = 0
    device: str = "cpu"


def _finetuned(supernet: Path, cfg: ArchConfig, data: Path, dataset: str, out: Path, s: FinetuneSettings,
               progress: bool) -> Path:
    """Fine-tune ``cfg`` into ``out`` (resuming a run left there; a finished run is reused)."""
    ckpt = out / "last.pt"
    if ckpt.exists():
        done = read_checkpoint(ckpt)
        if done.get("finetune", {}).get("arch_key") == cfg.key() and int(done.get("iteration", 0)) >= s.iters:
            return ckpt
    finetune(FinetuneConfig(supernet=str(supernet), arch=cfg.to_dict(), data=str(data), dataset=dataset, out=str(out),
                            iters=s.iters, batch=s.batch, size=s.size, lr=s.lr, distill=s.distill, seed=s.seed,
                            workers=s.workers, ckpt_every=max(1, s.iters // 3), device=s.device, progress=progress),
             resume=ckpt.exists(), given={"iters", "data", "workers", "device", "progress", "ckpt_every"})
    return ckpt


def _report_per_image(ckpt: Path, cfg: ArchConfig, reporter: Any, data: Path, dataset: str, eval_size: int,
                      batch: int) -> Any:
    """Per-image confusion matrices of ``cfg`` with the weights of ``ckpt`` on the reporter's images, BN
    recalibrated on the reporter's own calibration batches."""
    from supernet.evaluation.evaluator import SubnetEvaluator

    record = reporter.split_record or {}
    evaluator = SubnetEvaluator.on_split(load_supernet(ckpt), reporter.calib_batches, data, dataset, eval_size,
                                         reporter.images, batch, reporter.device, split="report",
                                         report_fraction=record.get("report_fraction", 0.5),
                                         split_seed=record.get("seed", 0), ckpt=ckpt)
    if evaluator.image_ids != reporter.image_ids:
        raise RuntimeError("the fine-tuned scorer and the report evaluator disagree on the report images")
    return evaluator.per_image(cfg)


def finetune_and_compare(supernet: Path, searched: ArchConfig, preset: ArchConfig, preset_name: str, data: Path,
                         dataset: str, out: Path, reporter: Any, eval_size: int, settings: FinetuneSettings,
                         batch: int = 8, progress: bool = True) -> dict[str, Any]:
    """Fine-tune ``searched`` and ``preset`` with ``settings`` into ``out/searched`` and ``out/<preset_name>`` and
    compare them on the report split: each one's mIoU and searched - preset with its 95% paired interval."""
    result: dict[str, Any] = {"settings": settings.__dict__, "report_images": reporter.images}
    per_image = {}
    for role, cfg, folder in (("searched", searched, out / "searched"), ("preset", preset, out / preset_name)):
        ckpt = _finetuned(supernet, cfg, data, dataset, folder, settings, progress)
        per_image[role] = _report_per_image(ckpt, cfg, reporter, data, dataset, eval_size, batch)
        result[role] = {"key": cfg.key(), "checkpoint": str(ckpt), "miou": 100.0 * mean_iou(per_image[role].sum(0))}
    result["preset"]["name"] = preset_name
    result["searched_minus_preset"] = paired_difference(per_image["searched"], per_image["preset"])
    return result
