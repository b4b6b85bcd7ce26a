"""Operator keys, features and decomposition (pure and fast: no conversion)."""
from __future__ import annotations

import pytest
import torch

from latency.operators import KINDS, MBConv, Transformer, decompose, log_features, parse_key
from latency.plan import candidates, designed_sample
from supernet.presets import PRESETS
from supernet.size import model_size
from supernet.space import TABLE1
from supernet.heads import HEADS, Deployed
from supernet.topformer import TopFormer

CONFIGS = [PRESETS[n] for n in PRESETS] + [TABLE1.sample(s) for s in range(8)] + [TABLE1.min_config(),
                                                                                     TABLE1.max_config()]


def test_key_format_is_stable():
    op = MBConv(16, 24, 3, 4, 2, 128, False)
    assert op.key == "mbconv:cin=16,cout=24,k=3,e=4,s=2,hw=128,res=0"
    t = Transformer(208, 4, 16, 32, 416, 8)
    assert t.key == "transformer:dim=208,heads=4,key_dim=16,value_dim=32,mlp_hidden=416,t=8"


@pytest.mark.parametrize("size", [64, 512])
def test_keys_round_trip_and_are_unique_per_config(size):
    for cfg in CONFIGS:
        for op in decompose(cfg, size):
            assert parse_key(op.key) == op
            assert op.key.split(":")[0] == op.kind and op.kind in KINDS


def test_malformed_keys_are_rejected():
    for bad in ("", "conv:cin=1", "mbconv:cin=16", "mbconv:cin=16,cout=24,k=3,e=4,s=2,hw=128,res=0,zz=1x"):
        with pytest.raises((ValueError, KeyError)):
            parse_key(bad)


@pytest.mark.parametrize("size", [64, 256, 512])
def test_operator_flops_add_up_to_model_size(size):
    for cfg in CONFIGS:
        assert sum(op.flops() for op in decompose(cfg, size)) == model_size(cfg, size).flops


def _param_shapes(module: torch.nn.Module) -> list[tuple[int, ...]]:
    return [tuple(p.shape) for p in module.parameters()]


def test_operators_cover_every_module_of_the_network():
    """Each operator builds the same layers (same classes, same shapes, same order) as the network's module,
    and those modules hold every parameter of the static TopFormer."""
    for cfg in CONFIGS[:6]:
        net = TopFormer(cfg)
        modules = {"stem": [net.stem], "mbconv": [b for st in net.stages for b in st],
                   "transformer": list(net.transformer), "injection": list(net.injections), "head": [net.head]}
        ops = decompose(cfg, 64)
        for kind, mods in modules.items():
            kops = [op for op in ops if op.kind == kind]
            assert len(kops) == len(mods), kind
            for op, mod in zip(kops, mods):
                built = op.build()
                assert _param_shapes(built) == _param_shapes(mod), op.key
                inner = [type(m).__name__ for m in built.modules()]
                assert type(mod).__name__ in inner, op.key
        covered = sum(p.numel() for mods in modules.values() for m in mods for p in m.parameters())
        assert covered == sum(p.numel() for p in net.parameters())
        assert [op.kind for op in ops][-2:] == ["injection", "head"]  # default head logits8: nothing after it
        assert [op.kind for op in decompose(cfg, 64, head="labels")][-2:] == ["head", "labels"]
        assert [op.kind for op in decompose(cfg, 64, head="logits")][-2:] == ["head", "resize"]
        assert sum(1 for op in ops if op.kind == "pool") == 1


@pytest.mark.parametrize("head", HEADS)
def test_operator_modules_run_on_their_input_shapes(head):
    cfg = PRESETS["topformer-tiny"]
    for op in decompose(cfg, 64, head=head):
        with torch.no_grad():
            out = op.build().eval()(*[torch.randn(*s) for s in op.input_shapes()])
        assert out.shape[0] == 1 and out.ndim == 4
        if op.kind == "labels":  # argmax at 8x8, then every label copied to its 8x8 block at 64x64
            assert out.dtype == torch.int32 and out.shape == (1, 1, 64, 64)


def test_head_operators_compute_what_the_deployed_model_computes():
    """The head's operator built alone gives the deployed model's output from the network's logits."""
    torch.manual_seed(0)
    net = TopFormer(PRESETS["topformer-tiny"], 150).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        logits = net(x)
        for head in ("labels", "logits"):
            op = decompose(PRESETS["topformer-tiny"], 64, head=head)[-1]
            torch.testing.assert_close(op.build()(logits), Deployed(net, head)(x), rtol=0, atol=0)


def test_residual_flag_follows_the_network_rule():
    ops = [op for op in decompose(PRESETS["topformer-small"], 512) if op.kind == "mbconv"]
    assert all(op.res == (op.s == 1 and op.cin == op.cout) for op in ops)
    assert any(op.res for op in ops) and any(not op.res for op in ops)


def test_features_are_fixed_length_per_kind_and_pure():
    lengths: dict[str, set[int]] = {}
    for cfg in CONFIGS:
        for op in decompose(cfg, 512):
            f = log_features(op)
            assert f == log_features(parse_key(op.key))
            lengths.setdefault(op.kind, set()).add(len(f))
    assert all(len(v) == 1 for v in lengths.values())


def test_candidates_contain_every_operator_a_subnet_can_have():
    cands = candidates(512)
    keys = {k: {op.key for op in v} for k, v in cands.items()}
    assert 2000 < len(cands["mbconv"]) < 2400
    for seed in range(200):
        for op in decompose(TABLE1.sample(seed), 512):
            if op.kind in ("stem", "mbconv", "injection", "head"):
                assert op.key in keys[op.kind], op.key
    assert "resize" not in cands and "labels" not in cands  # the default head logits8 ends at the head
    for head, kind in (("labels", "labels"), ("logits", "resize")):
        final = decompose(TABLE1.sample(0), 512, head=head)[-1]
        assert final.kind == kind and [op.key for op in candidates(512, head=head)[kind]] == [final.key]
        assert designed_sample(512, head=head)[kind] == [final]
    design = designed_sample(512)
    for kind, ops in design.items():
        assert ops and len({o.key for o in ops}) == len(ops)
        if kind != "transformer" and kind != "pool":
            assert {o.key for o in ops} <= keys[kind]
    assert design == designed_sample(512)  # deterministic
