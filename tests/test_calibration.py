"""BN recalibration: exact cumulative statistics of the active channels, others untouched, state restored,
and a better mIoU for a sampled subnet of a trained supernet than its stale shared statistics give."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from supernet.recalibration import elastic_bn_layers, recalibrate_bn
from supernet.training.checkpoint import load_supernet
from supernet.evaluation.evaluator import SubnetEvaluator, calibration_batches, validation_batches
from supernet.model import TopFormerSupernet
from supernet.space import TABLE1
from tests.train_helpers import SIZE


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


def test_recalibration_improves_a_sampled_subnet_of_a_trained_supernet(tiny_ckpt: Path, tiny_data: Path) -> None:
    net = load_supernet(tiny_ckpt)
    calib = calibration_batches(tiny_data, "synthetic", SIZE, n_batches=4, batch=4, seed=0)
    val, _ = validation_batches(tiny_data, "synthetic", SIZE, limit=None, batch=8)
    evaluator = SubnetEvaluator(net, calib, val, num_classes=5)
    # eight sampled subnets, judged on their mean: the tiny supernet trained in the test session can collapse to one
    # class for a given subnet (seen once in CI: 2.69% with and without recalibration), which proves nothing
    stale, fresh = [], []
    for seed in range(7, 15):
        cfg = TABLE1.sample(random.Random(seed))
        stale.append(evaluator.metrics(cfg, calibrate=False)["mIoU"])
        fresh.append(evaluator.metrics(cfg, calibrate=True)["mIoU"])
    print(f"sampled subnets' mIoU: stale BN {[round(100 * v, 2) for v in stale]}, "
          f"recalibrated {[round(100 * v, 2) for v in fresh]}")
    assert sum(fresh) > sum(stale)


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
