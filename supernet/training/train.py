"""``etf-train``: weight-sharing training of the TopFormer supernet with the sandwich rule.

Each step: the max subnet learns from the labels (cross-entropy, 255 ignored); the min subnet and
``--num-random`` sampled subnets learn from the max subnet's detached prediction (pixel-wise KL); the
gradients of all passes are summed, clipped, and applied in one AdamW step under TopFormer's schedule
(linear warm-up, then poly decay). Checkpoints hold everything needed to continue bit-for-bit:
model, optimiser, schedule, every RNG state, and the data stream position (a pure function of the
iteration). The same script runs on one CPU or under ``torchrun`` on many processes.
"""
from __future__ import annotations

import contextlib
import csv
import math
import os
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from supernet.training.checkpoint import load_supernet, read_checkpoint, save_checkpoint, warm_start
from supernet.data.datasets import build_dataset, collate_segmentation
from supernet.training.distributed import (DistInfo, barrier, convert_sync_elastic_bn, gather_objects, init_from_env,
                                  revert_sync_elastic_bn, shutdown, wrap_ddp)
from etf.common import EtfError, atomic_open
from supernet.training.losses import distillation_loss, segmentation_loss
from supernet.model import TopFormerSupernet

#: TopFormer's learning rate for a total batch of 16 (AdamW, 160k iterations).
BASE_LR, BASE_BATCH = 1.2e-4, 16
CHECKPOINT_NAME = "last.pt"
LOG_NAME = "log.csv"
LOG_COLUMNS = ("iter", "loss_max", "loss_min", "loss_rand", "lr", "time")
#: Arguments that may differ when resuming (where the data lives, how far to go, how often to save).
RESUMABLE_OVERRIDES = ("data", "workers", "iters", "ckpt_every", "device", "progress")

__all__ = ["TrainConfig", "train", "load_supernet", "lr_factor"]


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved in every checkpoint under ``args``)."""

    data: str
    dataset: str
    out: str
    iters: int = 1000
    batch: int = 8  # per process
    size: int = 512
    lr: float | None = None  # None: BASE_LR * total batch / 16
    weight_decay: float = 0.01
    warmup_iters: int | None = None  # None: min(1500, iters // 10)
    warmup_ratio: float = 1e-6
    poly_power: float = 1.0
    head_lr_mult: float = 10.0
    num_random: int = 2
    clip: float = 1.0
    workers: int = 2
    seed: int = 0
    ckpt_every: int = 500
    warm_start: str | None = None
    device: str = "auto"
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved_lr(self, world_size: int) -> float:
        return self.lr if self.lr is not None else BASE_LR * self.batch * world_size / BASE_BATCH

    def resolved_warmup(self) -> int:
        return self.warmup_iters if self.warmup_iters is not None else min(1500, self.iters // 10)


def lr_factor(iteration: int, max_iters: int, warmup_iters: int, warmup_ratio: float, power: float) -> float:
    """mmcv's poly schedule with linear warm-up, as a multiplier of the base learning rate.

    Poly: ``(1 - it / max_iters) ** power``; during warm-up multiplied by
    ``1 - (1 - it / warmup_iters) * (1 - warmup_ratio)``."""
    progress = min(iteration, max_iters) / max(max_iters, 1)
    factor = (1.0 - progress) ** power
    if iteration < warmup_iters:
        factor *= 1.0 - (1.0 - iteration / warmup_iters) * (1.0 - warmup_ratio)
    return factor


def parameter_groups(model: TopFormerSupernet, lr: float, weight_decay: float, head_lr_mult: float) -> list[dict]:
    """AdamW groups as TopFormer's config: no decay on BN affine parameters and biases, ``head_lr_mult``
    on the segmentation head (fuse conv + classifier)."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        no_decay = name.endswith(("bn_weight", "bn_bias", ".bias"))
        head = name.startswith(("fuse_full", "fuse_depthwise", "classifier"))
        groups.setdefault((no_decay, head), []).append(p)
    return [{"params": ps, "lr": lr * (head_lr_mult if head else 1.0),
             "weight_decay": 0.0 if no_decay else weight_decay, "name": f"{'head' if head else 'body'}"
             f"{'_no_decay' if no_decay else ''}"} for (no_decay, head), ps in sorted(groups.items())]


# ---------------------------------------------------------------------------------------------------
# Data stream: a pure function of (seed, iteration) so resuming needs no loader state
# ---------------------------------------------------------------------------------------------------
class EpochIndexed(Dataset):
    """Wraps a dataset so an item is addressed by ``(epoch, index)``: the augmentation draw depends on the
    epoch, and every worker process sets it itself (no shared mutable epoch)."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, index = key
        self.dataset.set_epoch(epoch)
        return self.dataset[index]


class StreamSampler(Sampler):
    """Endless stream of ``(epoch, index)``: each epoch a seeded permutation, split between ranks.

    Starting at stream position ``start`` (samples this rank already consumed) continues exactly where a
    previous run stopped."""

    def __init__(self, length: int, seed: int, rank: int = 0, world_size: int = 1, start: int = 0):
        self.per_rank = length // world_size
        if self.per_rank < 1:
            raise EtfError(f"the training split has {length} images, fewer than the {world_size} processes")
        self.length, self.seed, self.rank, self.world_size, self.start = length, seed, rank, world_size, start

    def position(self, consumed: int) -> dict[str, int]:
        """Epoch and offset within it after ``consumed`` samples of this rank."""
        return {"epoch": consumed // self.per_rank, "offset": consumed % self.per_rank}

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, offset = divmod(self.start, self.per_rank)
        while True:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            perm = torch.randperm(self.length, generator=gen)[self.rank::self.world_size][: self.per_rank]
            for index in perm[offset:].tolist():
                yield epoch, index
            epoch, offset = epoch + 1, 0

    def __len__(self) -> int:  # an endless stream; DataLoader only needs this for len(loader)
        return sys.maxsize


# ---------------------------------------------------------------------------------------------------
# RNG state
# ---------------------------------------------------------------------------------------------------
def rng_state(arch_rng: random.Random) -> dict[str, Any]:
    """This process's RNG states: Python, NumPy, torch (CPU and CUDA) and the subnet sampler.

    Only types ``torch.load(weights_only=True)`` reads: Python's states are tuples of ints, torch's are
    ByteTensors, NumPy's key array becomes a list of ints (:func:`_numpy_state`).
    """
    state = {"python": random.getstate(), "numpy": _numpy_state(), "torch": torch.get_rng_state(),
             "arch": arch_rng.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state() -> dict[str, Any]:
    name, key, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {"bit_generator": str(name), "key": [int(k) for k in key], "pos": int(pos), "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached)}


def _set_numpy_state(state: Any) -> None:
    if isinstance(state, dict):  # this version's plain form
        state = (state["bit_generator"], np.asarray(state["key"], dtype=np.uint32), state["pos"],
                 state["has_gauss"], state["cached_gaussian"])
    np.random.set_state(state)  # or the tuple of etf before weights_only checkpoints


def set_rng_state(state: dict[str, Any], arch_rng: random.Random) -> None:
    random.setstate(state["python"])
    _set_numpy_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    arch_rng.setstate(state["arch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int, rank: int) -> random.Random:
    """Seed the global RNGs per rank (dropout differs between ranks); the subnet sampler is the same on
    every rank so all processes train the same subnets in a step."""
    random.seed(seed * 7919 + rank)
    np.random.seed((seed * 7919 + rank) % 2**32)
    torch.manual_seed(seed * 7919 + rank)
    return random.Random(seed)


# ---------------------------------------------------------------------------------------------------
# Metrics log
# ---------------------------------------------------------------------------------------------------
def prepare_log(path: Path, start_iteration: int, columns: tuple[str, ...] = LOG_COLUMNS) -> None:
    """Create the CSV log with a header, or on resume drop rows past the checkpoint (written by a run
    that was killed after logging but before saving)."""
    rows: list[list[str]] = []
    if start_iteration > 0 and path.exists():
        with path.open(newline="") as f:
            reader = csv.reader(f)
            next(reader, None)
            rows = [r for r in reader if r and r[0].isdigit() and int(r[0]) <= start_iteration]
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)


def read_log(path: str | Path) -> list[dict[str, float]]:
    """The metrics log as a list of dicts of floats (for tests, plots and the benchmark)."""
    with Path(path).open(newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


# ---------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------
def pick_device(name: str, info: DistInfo) -> torch.device:
    """``--device`` (auto, cpu, cuda, cuda:N) as a torch device; CUDA without a GPU is a one-line EtfError."""
    if name == "auto":
        return torch.device(f"cuda:{info.local_rank}" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise EtfError(f"--device {name} asked for, but torch sees no CUDA device")
    return torch.device(name)


class StopFlag:
    """SIGINT/SIGTERM ask the loop to stop after the current step (then it saves and exits)."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "StopFlag":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # second signal: stop now
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def resume_config(cls: type, saved: dict[str, Any], cfg: Any, given: set[str], overrides: tuple[str, ...],
                  unchecked: tuple[str, ...] = ()) -> Any:
    """On resume a run's settings come from its checkpoint (``saved``, a dataclass ``cls`` as a dict): options in
    ``overrides`` and ``-o`` may change; any other option the user typed (``given``) must equal the run's, else
    a one-line EtfError (options in ``unchecked`` are neither taken nor checked)."""
    names = {f.name for f in fields(cls)}
    merged = {k: v for k, v in saved.items() if k in names}
    for key in given:
        if key in overrides:
            merged[key] = getattr(cfg, key)
        elif key in names and key not in ("out", *unchecked) and merged.get(key) != getattr(cfg, key):
            raise EtfError(f"--resume: --{key.replace('_', '-')} differs from the run's {merged.get(key)!r} (given "
                           f"{getattr(cfg, key)!r}); drop it or start a new run with another -o")
    merged["out"] = cfg.out
    return cls(**merged)


def train(cfg: TrainConfig, resume: bool = False, given: set[str] | None = None) -> dict[str, Any]:
    """Run (or continue) a training run; return a summary dict. Writes ``out/last.pt`` and ``out/log.csv``."""
    out = Path(cfg.out)
    ckpt_path, log_path = out / CHECKPOINT_NAME, out / LOG_NAME
    saved: dict[str, Any] | None = None
    if resume:
        if not ckpt_path.exists():
            raise EtfError(f"--resume: {ckpt_path} does not exist; start without --resume")
        saved = read_checkpoint(ckpt_path)
        if not isinstance(saved.get("args"), dict) or "iteration" not in saved:
            raise EtfError(f"{ckpt_path} is not an etf-train checkpoint")
        cfg = resume_config(TrainConfig, saved["args"], cfg, given or set(), RESUMABLE_OVERRIDES, ("warm_start",))
    elif ckpt_path.exists():
        raise EtfError(f"{ckpt_path} already exists; pass --resume to continue it or choose another -o")
    if cfg.iters < 1 or cfg.batch < 1 or cfg.num_random < 0 or cfg.ckpt_every < 1 or cfg.workers < 0:
        raise EtfError("--iters, --batch and --ckpt-every must be >= 1; --num-random and --workers >= 0")

    info = init_from_env(cfg.device)
    try:
        return _train(cfg, info, saved, ckpt_path, log_path)
    finally:
        shutdown(info)


def _train(cfg: TrainConfig, info: DistInfo, saved: dict[str, Any] | None, ckpt_path: Path,
           log_path: Path) -> dict[str, Any]:
    device = pick_device(cfg.device, info)
    dataset = build_dataset(cfg.dataset, cfg.data, "train", cfg.size, train=True, seed=cfg.seed)
    num_classes = dataset.num_classes
    arch_rng = seed_everything(cfg.seed, info.rank)  # before model init: same init on every rank
    torch.manual_seed(cfg.seed)
    model = TopFormerSupernet(num_classes=num_classes)
    torch.manual_seed(cfg.seed * 7919 + info.rank)
    log = print if info.is_main else (lambda *a, **k: None)
    if saved is None and cfg.warm_start:
        loaded, skipped = warm_start(model, cfg.warm_start)
        log(f"etf-train: warm start from {cfg.warm_start}: loaded {len(loaded)} of "
            f"{len(model.state_dict())} supernet tensors; {len(skipped)} checkpoint tensors skipped"
            + (f" (e.g. {', '.join(skipped[:3])})" if skipped else ""), file=sys.stderr)
    model.to(device).train()
    ddp = None
    if info.enabled:
        convert_sync_elastic_bn(model)
        ddp = wrap_ddp(model, device)  # broadcasts rank 0's weights

    lr = cfg.resolved_lr(info.world_size)
    warmup = cfg.resolved_warmup()
    optimizer = torch.optim.AdamW(parameter_groups(model, lr, cfg.weight_decay, cfg.head_lr_mult), lr=lr,
                                  weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: lr_factor(it, cfg.iters, warmup, cfg.warmup_ratio, cfg.poly_power))

    start = 0
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        start = int(saved["iteration"])
        # the stored lr belongs to the stored schedule; with a new --iters the next step must follow the new one
        for group, base in zip(optimizer.param_groups, scheduler.base_lrs):
            group["lr"] = base * lr_factor(start, cfg.iters, warmup, cfg.warmup_ratio, cfg.poly_power)
        ranks = saved["rng"].get("ranks", [])
        if len(ranks) == info.world_size:
            set_rng_state(ranks[info.rank], arch_rng)
        else:
            log(f"etf-train: checkpoint has RNG states of {len(ranks)} processes, this run has "
                f"{info.world_size}: continuing with fresh seeds (not bit-exact)", file=sys.stderr)
        log(f"etf-train: resumed {ckpt_path} at iteration {start}", file=sys.stderr)
    if start >= cfg.iters:
        log(f"etf-train: {ckpt_path} is already at iteration {start} >= --iters {cfg.iters}; nothing to do",
            file=sys.stderr)
        return {"iteration": start, "checkpoint": str(ckpt_path), "log": str(log_path)}

    sampler = StreamSampler(len(dataset), cfg.seed, info.rank, info.world_size, start=start * cfg.batch)
    loader = DataLoader(EpochIndexed(dataset), batch_size=cfg.batch, sampler=sampler, num_workers=cfg.workers,
                        collate_fn=collate_segmentation, generator=torch.Generator(),
                        persistent_workers=False, pin_memory=device.type == "cuda")
    if info.is_main:
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        prepare_log(log_path, start)
    barrier(info)

    def checkpoint(iteration: int) -> None:
        states = gather_objects(rng_state(arch_rng), info)
        if not info.is_main:
            return
        revert_sync_elastic_bn(model)
        state = {"model": model.state_dict(), "num_classes": num_classes, "iteration": iteration,
                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "rng": {"ranks": states, "sampler": sampler.position(iteration * cfg.batch),
                         "world_size": info.world_size},
                 "args": asdict(cfg)}
        save_checkpoint(state, ckpt_path)
        if info.enabled:
            convert_sync_elastic_bn(model)

    from etf.progress import progress_bar

    bar = progress_bar(cfg.iters, "etf-train", enabled=cfg.progress and info.is_main, initial=start, unit="it")
    iteration = start
    last: dict[str, float] = {}
    batches = iter(loader)
    with StopFlag() as stop, (log_path.open("a", newline="") if info.is_main else open(os.devnull, "w")) as logf:
        writer = csv.writer(logf)
        while iteration < cfg.iters:
            t0 = time.perf_counter()
            try:
                batch = next(batches)
            except RuntimeError:
                if not stop.requested:  # a real loader failure
                    raise
                # Ctrl-C also reached the loader's worker processes: nothing half-done, save and stop
                checkpoint(iteration)
                break
            images = batch["image"].to(device, non_blocking=True)
            labels = batch["label"].to(device, non_blocking=True)
            last = sandwich_step(model, images, labels, cfg.num_random, arch_rng, ddp)
            if cfg.clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            current_lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            iteration += 1
            if info.enabled:  # losses averaged over ranks, for the log only
                vec = torch.tensor([last["loss_max"], last["loss_min"], last["loss_rand"]], device=device)
                torch.distributed.all_reduce(vec)
                vec /= info.world_size
                last = dict(zip(("loss_max", "loss_min", "loss_rand"), vec.tolist()))
            if not all(math.isfinite(v) for v in last.values()):
                raise EtfError(f"loss became {last} at iteration {iteration}; lower --lr or check the labels")
            writer.writerow([iteration, f"{last['loss_max']:.8g}", f"{last['loss_min']:.8g}",
                             f"{last['loss_rand']:.8g}", f"{current_lr:.8g}", f"{time.perf_counter() - t0:.3f}"])
            logf.flush()
            bar.update(1)
            bar.set_postfix(max=f"{last['loss_max']:.3f}", min=f"{last['loss_min']:.3f}", lr=f"{current_lr:.2e}")
            stopping = stop.requested
            if info.enabled:
                flag = torch.tensor([float(stopping)], device=device)
                torch.distributed.all_reduce(flag)
                stopping = bool(flag.item())
            if iteration % cfg.ckpt_every == 0 or iteration == cfg.iters or stopping:
                checkpoint(iteration)
            if stopping:
                break
    bar.close()
    barrier(info)
    if iteration < cfg.iters:
        raise KeyboardInterrupt  # cli_entry prints the resume hint and exits 130
    return {"iteration": iteration, "checkpoint": str(ckpt_path), "log": str(log_path),
            "world_size": info.world_size, **{k: round(v, 6) for k, v in last.items()}}


def sandwich_step(model: TopFormerSupernet, images: torch.Tensor, labels: torch.Tensor, num_random: int,
                  arch_rng: random.Random, ddp: nn.parallel.DistributedDataParallel | None = None) -> dict[str, float]:
    """Forward/backward the max subnet on labels, then the min and ``num_random`` sampled subnets on the max
    subnet's detached logits; gradients accumulate in ``.grad`` (the caller steps). Returns the losses.

    With ``ddp`` (the DistributedDataParallel wrapper of ``model``) every pass but the last runs under
    ``no_sync()``, so the accumulated gradients are averaged over processes once, in the last backward."""
    net = ddp if ddp is not None else model
    passes = 2 + num_random

    def run(i: int, loss_of) -> torch.Tensor:
        sync = ddp is None or i == passes - 1
        with contextlib.nullcontext() if sync else ddp.no_sync():
            loss = loss_of(net(images))
            loss.backward()
        return loss

    model.set_max_net()
    logits: list[torch.Tensor] = []

    def max_loss(out: torch.Tensor) -> torch.Tensor:
        logits.append(out.detach())
        return segmentation_loss(out, labels)

    loss_max = run(0, max_loss)
    teacher = logits[0]
    model.set_min_net()
    loss_min = run(1, lambda out: distillation_loss(out, teacher, labels))
    rand = []
    for i in range(num_random):
        model.sample_active_subnet(arch_rng)
        rand.append(float(run(2 + i, lambda out: distillation_loss(out, teacher, labels)).detach()))
    model.set_max_net()
    return {"loss_max": float(loss_max.detach()), "loss_min": float(loss_min.detach()),
            "loss_rand": float(np.mean(rand)) if rand else float("nan")}
