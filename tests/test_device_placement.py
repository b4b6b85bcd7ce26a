"""The supernet keeps every tensor an op touches on the model's device (CI has no GPU, so this is checked here).

The supernet caches channel-index tensors on the CPU; on a GPU an op that mixes such an index with CUDA
weights fails (seen on the first ``etf-train`` run under torchrun on an H100). Here the model and its inputs
live on the ``meta`` device, which accepts CPU indices silently, so a function mode records every op that
mixes a CPU tensor of more than one element with meta tensors.
"""
from __future__ import annotations

import random

import torch
from torch.overrides import TorchFunctionMode

from supernet.model import TopFormerSupernet
from supernet.space import TABLE1
from supernet.training.losses import distillation_loss, segmentation_loss


class MixedDeviceOps(TorchFunctionMode):
    """Records the name of every torch function called with both meta tensors and multi-element CPU tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.mixed: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [a for a in _flatten((args, kwargs)) if isinstance(a, torch.Tensor)]
        on_meta = any(t.device.type == "meta" for t in tensors)
        on_cpu = any(t.device.type == "cpu" and t.numel() > 1 for t in tensors)
        if on_meta and on_cpu:
            self.mixed.append(getattr(func, "__name__", str(func)))
        return func(*args, **kwargs)


def _flatten(obj):
    if isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _flatten(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _flatten(o)
    else:
        yield obj


def test_training_and_eval_passes_stay_on_the_model_device():
    net = TopFormerSupernet(num_classes=5).to("meta")
    images = torch.empty(2, 3, 64, 64, device="meta")
    labels = torch.zeros(2, 64, 64, dtype=torch.long, device="meta")
    rng = random.Random(0)
    mode = MixedDeviceOps()
    with mode:
        net.train()
        net.set_max_net()
        teacher = net(images)
        segmentation_loss(teacher, labels).backward()
        for cfg in (TABLE1.min_config(), TABLE1.sample(rng), TABLE1.sample(rng)):
            net.set_active_subnet(cfg)
            distillation_loss(net(images), teacher.detach(), labels).backward()
        net.eval()
        with torch.no_grad():
            net(images)
    assert mode.mixed == [], f"ops mixing CPU index tensors with model tensors: {sorted(set(mode.mixed))}"
