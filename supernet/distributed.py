"""Multi-process training helpers: process-group set-up from torchrun's environment, gradient averaging,
and synchronised batch statistics for the supernet's own BN layers (``ElasticConvBN``).

Why not ``nn.parallel.DistributedDataParallel``: one sandwich step runs four forward/backward passes
through *different* subnets (different parameter slices, some blocks unused) before one optimiser step.
DDP's reducer is built for one forward/backward per step; here it would need ``find_unused_parameters``
plus ``no_sync()`` on all but the last pass, and would still all-reduce on every pass of a naive loop.
Averaging the accumulated gradients once per step (:func:`average_gradients`) is what DDP computes, with
one collective per step. And ``nn.SyncBatchNorm.convert_sync_batchnorm`` only converts ``nn.BatchNorm*``,
so the elastic BN gets its own synchronised variant (:class:`SyncElasticConvBN`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from supernet.elastic import ElasticConvBN, Sel, take


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: rank, world size, local rank, and whether a process group is live."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(device: str | None = None) -> DistInfo:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1), NCCL on GPUs, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local)


def shutdown(info: DistInfo) -> None:
    """Leave the process group (no-op for a single process)."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


@torch.no_grad()
def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy parameters and buffers from rank ``src`` to all ranks (what DDP does at construction)."""
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src)


@torch.no_grad()
def average_gradients(module: nn.Module, world_size: int, bucket_numel: int = 1 << 22) -> None:
    """All-reduce every parameter's accumulated gradient and divide by the world size, in flat buckets.

    Parameters without a gradient get zeros first, so every rank reduces the same tensors in the same
    order even when a rank's subnets did not touch a parameter."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    bucket: list[torch.Tensor] = []
    size = 0

    def flush() -> None:
        flat = torch.cat([g.reshape(-1) for g in bucket])
        dist.all_reduce(flat)
        flat /= world_size
        offset = 0
        for g in bucket:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    for p in params:
        bucket.append(p.grad)
        size += p.grad.numel()
        if size >= bucket_numel:
            flush()
            bucket, size = [], 0
    if bucket:
        flush()


class _AllReduceSum(torch.autograd.Function):
    """Differentiable all-reduce (sum): the gradient of a sum over ranks is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes, keeping it in the autograd graph."""
    return _AllReduceSum.apply(tensor)


class SyncElasticConvBN(ElasticConvBN):
    """``ElasticConvBN`` whose training-mode statistics are the batch mean/var over all processes.

    Per-channel sum and sum of squares (and the pixel count) are all-reduced with the differentiable
    :func:`all_reduce_sum`, so gradients flow through the global statistics as
    in ``nn.SyncBatchNorm``. Evaluation mode and the state-dict layout are unchanged."""

    def _bn(self, y: torch.Tensor, out: Sel) -> torch.Tensor:
        if not self.training or not (dist.is_available() and dist.is_initialized()):
            return super()._bn(y, out)
        weight, bias = take(self.bn_weight, 0, out), take(self.bn_bias, 0, out)
        count = torch.tensor([float(y.numel() // y.shape[1])], device=y.device, dtype=y.dtype)
        stats = torch.cat([y.sum(dim=(0, 2, 3)), (y * y).sum(dim=(0, 2, 3)), count])
        stats = all_reduce_sum(stats)
        c = y.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0.0)
        with torch.no_grad():
            unbiased = var * (n / (n - 1)) if float(n) > 1 else var
            self.update_running_stats(out, mean.detach(), unbiased.detach())
        scale = weight * torch.rsqrt(var + self.eps)
        return (y - mean.view(1, c, 1, 1)) * scale.view(1, c, 1, 1) + bias.view(1, c, 1, 1)


def convert_sync_elastic_bn(module: nn.Module) -> int:
    """Turn every ``ElasticConvBN`` inside ``module`` into :class:`SyncElasticConvBN` in place (same
    parameters, buffers and state-dict keys); return how many layers were converted."""
    converted = 0
    for m in module.modules():
        if type(m) is ElasticConvBN:
            m.__class__ = SyncElasticConvBN
            converted += 1
    return converted


def revert_sync_elastic_bn(module: nn.Module) -> None:
    """Undo :func:`convert_sync_elastic_bn` (for evaluation or saving a plain model)."""
    for m in module.modules():
        if type(m) is SyncElasticConvBN:
            m.__class__ = ElasticConvBN


def gather_objects(obj: object, info: DistInfo) -> list[object]:
    """Every rank's ``obj`` as a list indexed by rank (just ``[obj]`` for one process)."""
    if not info.enabled:
        return [obj]
    out: list[object] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


__all__ = ["DistInfo", "init_from_env", "shutdown", "broadcast_module", "average_gradients",
           "SyncElasticConvBN", "convert_sync_elastic_bn", "revert_sync_elastic_bn", "gather_objects",
           "barrier"]
