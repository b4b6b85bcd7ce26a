"""BN recalibration: exact cumulative statistics of the active channels, others untouched, state restored.

What recalibration is worth is measured where a supernet is trained (the demo; README: the shared statistics cost
~15 mIoU points on the synthetic set), not here: the session's supernet has 6 training steps, most of its subnets
predict one class, and recalibration *raises* their validation loss (1.4-1.5 -> 1.6-2.9 nats on 8 sampled subnets,
2026-11-29), so an mIoU comparison on it passed or failed by the argmax's luck (a fresh-clone CI run failed it
with the same checkpoint and the same stale scores). That test was removed."""
from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from supernet.recalibration import elastic_bn_layers, recalibrate_bn
from supernet.model import TopFormerSupernet
from supernet.space import TABLE1


def test_recalibration_gives_the_exact_mean_of_batch_statistics_on_active_channels() -> None:
    torch.manual_seed(0)
    net = TopFormerSupernet(num_classes=4).eval()
    with torch.no_grad():
        for m in elastic_bn_layers(net):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2.0)
    cfg = TABLE1.min_config()
    stem = net.stem
    before_mean, before_var = stem.running_mean.clone(), stem.running_var.clone()
    momenta = [m.momentum for m in elastic_bn_layers(net)]
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(2, 3, 32, 32, generator=gen) for _ in range(3)]
    assert recalibrate_bn(net, batches, cfg) == 3

    w = cfg.stem_width
    conv = [F.conv2d(x, stem.weight[:w], None, stem.stride, stem.weight.shape[-1] // 2) for x in batches]
    want_mean = torch.stack([y.mean(dim=(0, 2, 3)) for y in conv]).mean(0)
    want_var = torch.stack([y.var(dim=(0, 2, 3), unbiased=True) for y in conv]).mean(0)
    assert torch.allclose(stem.running_mean[:w], want_mean, atol=1e-5)
    assert torch.allclose(stem.running_var[:w], want_var, atol=1e-4)
    assert not torch.allclose(stem.running_mean[:w], before_mean[:w])
    # channels the subnet does not use keep the statistics other subnets stored
    assert torch.equal(stem.running_mean[w:], before_mean[w:]) and torch.equal(stem.running_var[w:], before_var[w:])
    # a block beyond the min subnet's depth is never run: it keeps everything
    deep = net.stages[1][1].dw
    assert cfg.stages[1].depth == 1
    assert int(deep.num_batches_tracked) == 0
    # momentum and mode restored
    assert [m.momentum for m in elastic_bn_layers(net)] == momenta
    assert not net.training


def test_recalibration_with_no_batches_restores_everything() -> None:
    net = TopFormerSupernet(num_classes=4)
    means = [m.running_mean.clone() for m in elastic_bn_layers(net)]
    with pytest.raises(ValueError):
        recalibrate_bn(net, [], TABLE1.min_config())
    assert all(torch.equal(a, m.running_mean) for a, m in zip(means, elastic_bn_layers(net)))
    assert all(m.momentum == 0.1 for m in elastic_bn_layers(net))


def test_supernet_set_running_statistics_is_recalibration_of_the_active_subnet() -> None:
    gen = torch.Generator().manual_seed(3)
    batches = [torch.randn(2, 3, 32, 32, generator=gen) for _ in range(2)]
    cfg = TABLE1.min_config()
    a, b = TopFormerSupernet(num_classes=4), TopFormerSupernet(num_classes=4)
    b.load_state_dict(a.state_dict())
    a.set_active_subnet(cfg)
    assert a.set_running_statistics(batches) == 2
    assert recalibrate_bn(b, batches, cfg) == 2
    assert all(torch.equal(x.running_mean, y.running_mean) and torch.equal(x.running_var, y.running_var)
               for x, y in zip(elastic_bn_layers(a), elastic_bn_layers(b)))
