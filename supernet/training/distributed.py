"""Multi-process training helpers: process-group set-up from torchrun's environment, the
DistributedDataParallel wrapper for sandwich steps, and synchronised batch statistics for the supernet's own
BN layers (``ElasticConvBN``).

One sandwich step runs several forward/backward passes through *different* subnets (different parameter
slices, some blocks unused) before one optimiser step. DDP handles that with ``find_unused_parameters`` and
``no_sync()`` on every pass but the last: gradients accumulate locally and are all-reduced once, during the
last backward (parameters used only by earlier passes are included; DDP tracks use across ``no_sync``).
``nn.SyncBatchNorm.convert_sync_batchnorm`` only converts ``nn.BatchNorm*``, so the elastic BN gets its own
synchronised variant (:class:`SyncElasticConvBN`).
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


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.parallel.DistributedDataParallel:
    """``DistributedDataParallel`` over the supernet for sandwich steps (see the module docstring).

    Construction broadcasts rank 0's parameters and buffers. ``find_unused_parameters``: a subnet leaves
    blocks unused. ``broadcast_buffers=False``: the synchronised BN already gives every rank the same running
    statistics, and the subnets of one step change which channels they touch."""
    import warnings

    with warnings.catch_warnings():  # torch 2.13 deprecates broadcast_buffers but advises keeping False for now
        warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
        return nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True, broadcast_buffers=False)


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

    The per-channel sum (and the pixel count), then the per-channel sum of squared deviations from the global
    mean, are all-reduced with the differentiable :func:`all_reduce_sum`, so gradients flow through the global
    statistics as
    in ``nn.SyncBatchNorm``. Evaluation mode and the state-dict layout are unchanged."""

    def _bn(self, y: torch.Tensor, out: Sel) -> torch.Tensor:
        if not self.training or not (dist.is_available() and dist.is_initialized()):
            return super()._bn(y, out)
        weight, bias = take(self.bn_weight, 0, out), take(self.bn_bias, 0, out)
        c = y.shape[1]
        count = torch.tensor([float(y.numel() // c)], device=y.device, dtype=y.dtype)
        # two passes (mean, then squared deviations), as precise as one process's batch_norm; one pass with
        # E[y^2] - mean^2 loses digits on channels whose mean dwarfs their spread
        stats = all_reduce_sum(torch.cat([y.sum(dim=(0, 2, 3)), count]))
        n = stats[-1]
        mean = stats[:c] / n
        var = all_reduce_sum((y - mean.view(1, c, 1, 1)).pow(2).sum(dim=(0, 2, 3))) / n
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


def broadcast_object(obj: object, info: DistInfo, src: int = 0) -> object:
    """Rank ``src``'s ``obj`` on every rank (``obj`` itself for one process): how rank 0 shares what only it
    did (a measurement, a refitted predictor) so every rank takes the same next step."""
    if not info.enabled:
        return obj
    box = [obj if info.rank == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


__all__ = ["DistInfo", "init_from_env", "shutdown",
           "SyncElasticConvBN", "convert_sync_elastic_bn", "revert_sync_elastic_bn", "gather_objects",
           "barrier", "broadcast_object"]
