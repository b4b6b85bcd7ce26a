"""BN recalibration of a subnet (the idea of Once-for-All's ``set_running_statistics``, own code).

Running statistics of a shared BN layer are an average over all subnets trained through it, which is
wrong for any single subnet. Before evaluating a subnet: reset the running mean/var of the channels it
uses, forward K training batches in train mode without gradients with ``momentum=None`` (a cumulative,
equally weighted average over the K batches), then restore momentum and the previous train/eval mode.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import torch
from torch import nn

from supernet.elastic import ElasticConvBN
from supernet.space import ArchConfig

if TYPE_CHECKING:  # the supernet calls this module, not the other way round
    from supernet.model import TopFormerSupernet


def elastic_bn_layers(model: nn.Module) -> list[ElasticConvBN]:
    """Every elastic BN layer of ``model`` (the supernet's only normalisation)."""
    return [m for m in model.modules() if isinstance(m, ElasticConvBN)]


@torch.no_grad()
def recalibrate_bn(model: "TopFormerSupernet", batches: Iterable[torch.Tensor], cfg: ArchConfig | None = None,
                   device: torch.device | str | None = None) -> int:
    """Re-estimate the running BN statistics of subnet ``cfg`` (default: the active one) from ``batches``
    (image tensors N x 3 x H x W, already normalised); return the number of batches used.

    Channels the subnet uses end with the exact mean of the per-batch statistics; channels it does not use
    keep their values (they are reset to 0/1 and then rewritten only where the subnet is active, so a
    sliced layer keeps the other subnets' channels as they were)."""
    if cfg is not None:
        model.set_active_subnet(cfg)
    layers = elastic_bn_layers(model)
    saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for m in layers]
    was_training = model.training
    dropout_modes = [(m, m.training) for m in model.modules() if isinstance(m, nn.Dropout2d)]
    count = 0
    try:
        for m in layers:
            m.momentum = None
            m.running_mean.zero_()
            m.running_var.fill_(1.0)
            m.num_batches_tracked.zero_()
        model.train()
        for m, _ in dropout_modes:  # dropout changes nothing upstream of BN, but keep the forward clean
            m.eval()
        for images in batches:
            if device is not None:
                images = images.to(device)
            model(images)
            count += 1
        if count == 0:
            raise ValueError("recalibrate_bn needs at least one batch")
        for m, (_, old_mean, old_var, _) in zip(layers, saved):
            # restore channels this subnet did not touch: a layer absent from the subnet (depth) was never
            # called, so num_batches_tracked is still 0 -> restore it whole
            if int(m.num_batches_tracked) == 0:
                m.running_mean.copy_(old_mean)
                m.running_var.copy_(old_var)
    except BaseException:
        for m, (_, old_mean, old_var, old_n) in zip(layers, saved):
            m.running_mean.copy_(old_mean)
            m.running_var.copy_(old_var)
            m.num_batches_tracked.copy_(old_n)
        raise
    finally:
        for m, (momentum, _, _, _) in zip(layers, saved):
            m.momentum = momentum
        model.train(was_training)
        for m, mode in dropout_modes:
            m.train(mode)
    _restore_untouched_channels(layers, saved)
    return count


def _restore_untouched_channels(layers: list[ElasticConvBN], saved: list[tuple]) -> None:
    """Channels still at the reset value 0/1 exactly were not written by the subnet: give them back their
    old statistics, so recalibrating one subnet does not wipe the stored statistics of the others."""
    for m, (_, old_mean, old_var, _) in zip(layers, saved):
        untouched = (m.running_mean == 0) & (m.running_var == 1)
        if untouched.any():
            m.running_mean[untouched] = old_mean[untouched]
            m.running_var[untouched] = old_var[untouched]
