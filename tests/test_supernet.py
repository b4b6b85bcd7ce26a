"""The weight-sharing supernet: extraction equals the active supernet, sizes match the size tool."""
import random

import pytest
import torch

from supernet.model import TopFormerSupernet
from supernet.presets import PRESETS
from supernet.size import model_size
from supernet.space import TABLE1
from supernet.topformer import TopFormer

NUM_CLASSES = 11


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    n = TopFormerSupernet(num_classes=NUM_CLASSES)
    # random BN statistics and affine params so every slice is exercised (fresh BN is an identity)
    with torch.no_grad():
        for m in n.modules():
            if hasattr(m, "running_mean"):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.bn_weight.uniform_(0.5, 1.5)
                m.bn_bias.uniform_(-0.2, 0.2)
    return n.eval()


def _configs():
    rng = random.Random(2024)
    cfgs = [TABLE1.sample(rng) for _ in range(20)]
    return cfgs + [TABLE1.min_config(), TABLE1.max_config(), *PRESETS.values()]


@pytest.mark.parametrize("idx", range(25))
def test_extracted_static_model_matches_supernet(net, idx):
    cfg = _configs()[idx]
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(idx))
    net.set_active_subnet(cfg)
    with torch.no_grad():
        y_super = net(x)
        static = net.get_active_subnet()
        y_static = static(x)
    assert y_super.shape == (2, NUM_CLASSES, 8, 8)
    assert torch.allclose(y_super, y_static, atol=1e-5, rtol=0)
    assert y_super.abs().max() > 1e-3  # a non-trivial output
    assert sum(p.numel() for p in static.parameters()) == model_size(cfg, 64, NUM_CLASSES).params
    # the static model carries no elastic machinery
    assert not any("Elastic" in type(m).__name__ for m in static.modules())


def test_subnets_share_weights_and_training_updates_only_active_bn_channels():
    torch.manual_seed(0)
    n = TopFormerSupernet(num_classes=NUM_CLASSES).train()
    cfg = PRESETS["topformer-tiny"]
    n.set_active_subnet(cfg)
    before = n.stages[4][0].project.running_mean.clone()
    tok_before = n.vit_stages[0][0].to_q.running_mean.clone()
    n(torch.randn(2, 3, 64, 64))
    after = n.stages[4][0].project.running_mean
    assert not torch.equal(before[:96], after[:96])
    assert torch.equal(before[96:], after[96:])
    # q is sliced per head: 4 heads x 16 of 20 stored channels each
    changed = (tok_before != n.vit_stages[0][0].to_q.running_mean).nonzero().flatten().tolist()
    assert set(changed) <= {h * 20 + j for h in range(4) for j in range(16)}
    # train-mode extraction keeps the updated statistics
    n.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(n(x), n.get_active_subnet()(x), atol=1e-5)


def test_gradients_flow_to_shared_weights():
    torch.manual_seed(0)
    n = TopFormerSupernet(num_classes=NUM_CLASSES).train()
    n.set_active_subnet(TABLE1.min_config())
    n(torch.randn(2, 3, 64, 64)).mean().backward()
    g = n.stages[2][0].dw.weight.grad
    # min config: stage 3 width 24, expansion 2 from 16 input -> 32 hidden, kernel 3 = centre of 5x5
    assert g[:32, :, 1:4, 1:4].abs().sum() > 0
    assert g[32:].abs().sum() == 0 and g[:, :, 0].abs().sum() == 0


@pytest.mark.parametrize("name, params_m, gflops", [
    ("topformer-tiny", 1.4, 0.6), ("topformer-small", 3.1, 1.2), ("topformer-base", 5.1, 1.8)])
def test_presets_reproduce_published_sizes_within_5_percent(name, params_m, gflops):
    rep = model_size(PRESETS[name], 512, 150)
    assert abs(rep.params / 1e6 - params_m) / params_m <= 0.05
    assert abs(rep.flops / 1e9 - gflops) / gflops <= 0.05
    assert rep.params == sum(p.numel() for p in TopFormer(PRESETS[name], 150).parameters())


def test_conv_macs_match_the_reference_notes():
    # shared/reference notes: conv multiply-adds alone are about 0.53G / 1.11G / 1.75G
    macs = [model_size(PRESETS[n], 512).conv_macs / 1e9 for n in ("topformer-tiny", "topformer-small", "topformer-base")]
    assert [round(m, 2) for m in macs] == [0.53, 1.11, 1.75]


def test_flops_counted_by_hooks_agree_with_the_analytic_count():
    """Count conv MACs with forward hooks on the real static model: the analytic size tool must agree."""
    cfg = TABLE1.sample(11)
    model = TopFormer(cfg, NUM_CLASSES).eval()
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        total += out.numel() * mod.weight[0].numel()

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.randn(1, 3, 96, 128))
    assert total == model_size(cfg, (96, 128), NUM_CLASSES).conv_macs


def test_active_subnet_api_follows_once_for_all_names():
    n = TopFormerSupernet(num_classes=NUM_CLASSES)
    assert n.set_max_net() == TABLE1.max_config() == n.get_active_net_config()
    assert n.set_min_net() == TABLE1.min_config() == n.get_active_net_config()
    cfg = n.sample_active_subnet(5)
    assert cfg == TABLE1.sample(5) == n.get_active_net_config()
    assert n.set_active_subnet(PRESETS["topformer-tiny"]) == n.get_active_net_config() == PRESETS["topformer-tiny"]
    for old in ("set_active", "sample_active", "set_max", "set_min"):  # one naming, no aliases
        assert not hasattr(n, old)
