"""``etf-finetune``: train one subnet on its own, starting from the weights it inherits from the supernet.

The seed study compares searched networks with TopFormer after training both; inherited weights alone
favour whichever subnet the sandwich rule happened to train best. This fine-tunes a single architecture
inside the supernet (``set_active_subnet`` once, then plain training: only the active slices get gradients;
blocks outside the subnet are left exactly as they were, and unused channels of a shared tensor see only
AdamW's weight decay, which does not matter to this subnet), optionally distilled from the largest subnet of the
*original* supernet (frozen, BN recalibrated on the first training batches). The result is a supernet
checkpoint like ``etf-train``'s, with a ``finetune`` record naming the architecture, so ``etf-eval``,
``etf-export`` and the search's evaluators read it unchanged. Resumable bit-for-bit like ``etf-train``;
one process (a GPU or the CPU).
"""
from __future__ import annotations

import copy
import csv
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from etf.common import EtfError
from supernet.data.datasets import build_dataset, collate_segmentation
from supernet.model import TopFormerSupernet
from supernet.space import ArchConfig, TABLE1
from supernet.training.checkpoint import load_supernet, read_checkpoint, save_checkpoint
from supernet.training.distributed import DistInfo
from supernet.training.losses import distillation_loss, segmentation_loss
from supernet.training.train import (CHECKPOINT_NAME, LOG_NAME, RESUMABLE_OVERRIDES, EpochIndexed, StopFlag,
                                     StreamSampler, lr_factor, parameter_groups, pick_device, prepare_log,
                                     resume_config, rng_state, seed_everything, set_rng_state)

__all__ = ["FinetuneConfig", "finetune", "finetuned_arch", "FINETUNE_LOG_COLUMNS"]

FINETUNE_LOG_COLUMNS = ("iter", "loss", "loss_label", "loss_distill", "lr", "time")
#: BN recalibration batches of the distillation teacher (the max subnet of the original supernet).
TEACHER_CALIB_BATCHES = 8


@dataclass
class FinetuneConfig:
    """Everything a fine-tuning run depends on (saved in every checkpoint under ``args``)."""

    supernet: str  # etf-train checkpoint the weights are inherited from
    arch: dict[str, Any]  # ArchConfig.to_dict() of the subnet
    data: str
    dataset: str
    out: str
    iters: int = 300
    batch: int = 8
    size: int = 512
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_iters: int | None = None  # None: min(100, iters // 10)
    warmup_ratio: float = 1e-6
    poly_power: float = 1.0
    head_lr_mult: float = 1.0
    distill: float = 0.0  # weight of KL(max subnet || subnet); 1 - distill weights the labels' cross-entropy
    clip: float = 1.0
    workers: int = 2
    seed: int = 0
    ckpt_every: int = 100
    device: str = "auto"
    progress: bool = True

    def resolved_warmup(self) -> int:
        return self.warmup_iters if self.warmup_iters is not None else min(100, self.iters // 10)

    def architecture(self) -> ArchConfig:
        return TABLE1.validate(ArchConfig.from_dict(self.arch))


def finetuned_arch(path: str | Path) -> ArchConfig | None:
    """The architecture an ``etf-finetune`` checkpoint was trained for (None for a plain supernet checkpoint)."""
    record = read_checkpoint(path).get("finetune")
    return ArchConfig.from_dict(record["arch"]) if isinstance(record, dict) and "arch" in record else None


def _check_config(cfg: FinetuneConfig) -> None:
    if cfg.iters < 1 or cfg.batch < 1 or cfg.ckpt_every < 1 or cfg.workers < 0:
        raise EtfError("--iters, --batch and --ckpt-every must be >= 1; --workers >= 0")
    if not 0.0 <= cfg.distill <= 1.0:
        raise EtfError(f"--distill {cfg.distill}: a weight between 0 and 1")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise EtfError(f"--lr {cfg.lr}: a positive learning rate")


def finetune(cfg: FinetuneConfig, resume: bool = False, given: set[str] | None = None) -> dict[str, Any]:
    """Run (or continue) a fine-tuning run; returns a summary. Writes ``out/last.pt`` and ``out/log.csv``."""
    out = Path(cfg.out)
    ckpt_path, log_path = out / CHECKPOINT_NAME, out / LOG_NAME
    saved: dict[str, Any] | None = None
    if resume:
        if not ckpt_path.exists():
            raise EtfError(f"--resume: {ckpt_path} does not exist; start without --resume")
        saved = read_checkpoint(ckpt_path)
        if not isinstance(saved.get("finetune"), dict) or not isinstance(saved.get("args"), dict):
            raise EtfError(f"{ckpt_path} is not an etf-finetune checkpoint")
        cfg = resume_config(FinetuneConfig, saved["args"], cfg, given or set(), RESUMABLE_OVERRIDES)
    elif ckpt_path.exists():
        raise EtfError(f"{ckpt_path} already exists; pass --resume to continue it or choose another -o")
    _check_config(cfg)
    arch = cfg.architecture()
    device = pick_device(cfg.device, DistInfo())
    dataset = build_dataset(cfg.dataset, cfg.data, "train", cfg.size, train=True, seed=cfg.seed)
    model = load_supernet(cfg.supernet)
    if model.num_classes != dataset.num_classes:
        raise EtfError(f"{cfg.supernet} was trained for {model.num_classes} classes, {cfg.dataset} at {cfg.data} "
                       f"has {dataset.num_classes}")
    arch_rng = seed_everything(cfg.seed, 0)
    loader = lambda start: DataLoader(  # noqa: E731 - the stream position is all a resumed run needs
        EpochIndexed(dataset), batch_size=cfg.batch,
        sampler=StreamSampler(len(dataset), cfg.seed, start=start * cfg.batch), num_workers=cfg.workers,
        collate_fn=collate_segmentation, generator=torch.Generator(), pin_memory=device.type == "cuda")
    teacher = _teacher(model, loader(0), device) if cfg.distill > 0 else None
    model.to(device).train()
    model.set_active_subnet(arch)

    warmup = cfg.resolved_warmup()
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg.lr, cfg.weight_decay, cfg.head_lr_mult), lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    schedule = lambda it: lr_factor(it, cfg.iters, warmup, cfg.warmup_ratio, cfg.poly_power)  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    start = 0
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        start = int(saved["iteration"])
        for group, base in zip(optimizer.param_groups, scheduler.base_lrs):  # a new --iters: the new schedule
            group["lr"] = base * schedule(start)
        set_rng_state(saved["rng"], arch_rng)
        print(f"etf-finetune: resumed {ckpt_path} at iteration {start}", file=sys.stderr)
    if start >= cfg.iters:
        print(f"etf-finetune: {ckpt_path} is already at iteration {start} >= --iters {cfg.iters}; nothing to do",
              file=sys.stderr)
        return {"iteration": start, "checkpoint": str(ckpt_path), "log": str(log_path), "arch": arch.key()}

    out.mkdir(parents=True, exist_ok=True)
    prepare_log(log_path, start, FINETUNE_LOG_COLUMNS)
    record = {"arch": arch.to_dict(), "arch_key": arch.key(), "supernet": str(cfg.supernet)}

    def checkpoint(iteration: int) -> None:
        save_checkpoint({"model": model.state_dict(), "num_classes": model.num_classes, "iteration": iteration,
                         "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                         "rng": rng_state(arch_rng), "args": asdict(cfg), "finetune": record}, ckpt_path)

    from etf.progress import progress_bar

    bar = progress_bar(cfg.iters, "etf-finetune", enabled=cfg.progress, initial=start, unit="it")
    iteration, last = start, {}
    batches = iter(loader(start))
    with StopFlag() as stop, log_path.open("a", newline="") as logf:
        writer = csv.writer(logf)
        while iteration < cfg.iters:
            t0 = time.perf_counter()
            try:
                batch = next(batches)
            except RuntimeError:
                if not stop.requested:
                    raise
                checkpoint(iteration)
                break
            images = batch["image"].to(device, non_blocking=True)
            labels = batch["label"].to(device, non_blocking=True)
            last = _step(model, teacher, images, labels, cfg.distill)
            if cfg.clip > 0:
                nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], cfg.clip)
            current_lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            iteration += 1
            if not all(math.isfinite(v) for v in last.values()):
                raise EtfError(f"loss became {last} at iteration {iteration}; lower --lr or check the labels")
            writer.writerow([iteration, *(f"{last[k]:.8g}" for k in ("loss", "loss_label", "loss_distill")),
                             f"{current_lr:.8g}", f"{time.perf_counter() - t0:.3f}"])
            logf.flush()
            bar.update(1)
            bar.set_postfix(loss=f"{last['loss']:.3f}", lr=f"{current_lr:.2e}")
            if iteration % cfg.ckpt_every == 0 or iteration == cfg.iters or stop.requested:
                checkpoint(iteration)
            if stop.requested:
                break
    bar.close()
    if iteration < cfg.iters:
        raise KeyboardInterrupt  # cli_entry prints the resume hint and exits 130
    return {"iteration": iteration, "checkpoint": str(ckpt_path), "log": str(log_path), "arch": arch.key(),
            **{k: round(v, 6) for k, v in last.items()}}


def _teacher(model: TopFormerSupernet, loader: DataLoader, device: torch.device) -> TopFormerSupernet:
    """A frozen copy of the supernet's max subnet with BN recalibrated on the first training batches."""
    teacher = copy.deepcopy(model).to(device)
    teacher.set_max_net()
    stream = iter(loader)
    teacher.set_running_statistics([next(stream)["image"] for _ in range(TEACHER_CALIB_BATCHES)], device=device)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


def _step(model: TopFormerSupernet, teacher: TopFormerSupernet | None, images: torch.Tensor, labels: torch.Tensor,
          distill: float) -> dict[str, float]:
    """One forward/backward of the active subnet: (1 - distill) x cross-entropy + distill x KL to the teacher."""
    out = model(images)
    label_loss = segmentation_loss(out, labels)
    distill_loss = torch.zeros((), device=out.device)
    if teacher is not None:
        with torch.no_grad():
            target = teacher(images)
        distill_loss = distillation_loss(out, target, labels)
    loss = (1.0 - distill) * label_loss + distill * distill_loss
    loss.backward()
    return {"loss": float(loss.detach()), "loss_label": float(label_loss.detach()),
            "loss_distill": float(distill_loss.detach())}
