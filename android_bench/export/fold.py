"""Fold every eval-mode BatchNorm into the convolution before it, before the graph goes to the converter.

The converter folds them itself, so the ``.tflite`` has the same operators either way; what folding first saves
is conversion time: every BatchNorm costs torch.export's decomposition passes a handful of graph nodes
(``benchmarks/bench_convert_cost.py``, alternating pairs: 0.79x the time for table operators, 0.67x for
TopFormer-Tiny and -Small at 512 px; latency/RESULTS.md).
"""
from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorms_(module: nn.Module) -> int:
    """Replace, in place, every ``Conv2d`` directly followed by a ``BatchNorm2d`` inside an ``nn.Sequential``
    (TopFormer's ``ConvBN``) by one ``Conv2d`` with the BatchNorm's affine map in its weights and bias, and the
    BatchNorm by ``Identity``; the number folded. The module must be in eval mode: training-mode BatchNorm
    normalises by the batch, which no convolution can reproduce."""
    if module.training:
        raise ValueError("fold_batchnorms_ needs an eval-mode module (call .eval() first)")
    folded = 0
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = seq._modules[first], seq._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                seq._modules[first] = fuse_conv_bn_eval(conv, bn)
                seq._modules[second] = nn.Identity()
                folded += 1
    return folded


__all__ = ["fold_batchnorms_"]
