"""The shape trace and its four readers agree: model_size, decompose, the predictor's part cache, plan.

``supernet.trace.trace`` is the one place the network's shapes are worked out; these tests prove that every
user of it gives the same network (same operators, same FLOPs, same sides) and that the trace's shapes are
those of a real forward pass of ``supernet.topformer.TopFormer``.
"""
from __future__ import annotations

from collections import Counter

import pytest
import torch

from latency.operators import decompose, from_part
from latency.plan import candidates, stage_sides
from latency.predictor import Correction, LatencyPredictor
from latency.setting import Setting
from supernet import size as size_mod
from supernet import trace as trace_mod
from supernet.presets import PRESETS
from supernet.size import model_size
from supernet.space import INJECTION_LEVELS, PYRAMID_STAGES, TABLE1
from supernet.heads import HEADS, Deployed
from supernet.topformer import TopFormer
from supernet.trace import grid, side, trace

CONFIGS = ([TABLE1.sample(s) for s in range(100)] + [TABLE1.min_config(), TABLE1.max_config()]
           + list(PRESETS.values()))
SIZES = (512, 256)
GROUPS = (["stem"] + [f"stage{i + 1}" for i in range(len(TABLE1.stages))]
          + [f"vit{j + 1}" for j in range(len(TABLE1.vits))] + [f"injection{lv}" for lv in INJECTION_LEVELS] + ["head"])


@pytest.mark.parametrize("size", SIZES)
def test_operator_flops_equal_model_size_per_part(size):
    """Sum of decompose's FLOPs == model_size's FLOPs, in total and for every model_size breakdown group."""
    for cfg in CONFIGS:
        rep = model_size(cfg, size)
        assert list(rep.parts) == GROUPS
        per_group: Counter[str] = Counter()
        for part in trace(cfg, size):
            per_group[part.group] += from_part(part).flops()
        assert sum(op.flops() for op in decompose(cfg, size)) == rep.flops
        assert {g: f for g, f in per_group.items() if f} == {g: v[1] for g, v in rep.parts.items()}


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("size", SIZES)
def test_predictor_part_expansion_equals_decompose(size, head):
    """The operators the predictor of a head's setting would sum per config (part keys -> ``_part_ops`` x
    multiplicity) are exactly decompose's operators for that head, as multisets of keys."""
    pred = LatencyPredictor("dev", size, "", {}, Correction(), 0.0, setting=Setting("dev", size, 1, head=head))
    for cfg in CONFIGS:
        via_parts = Counter({})
        for key, mult in pred._parts(cfg):
            for op in pred._part_ops(key):
                via_parts[op.key] += mult
        assert via_parts == Counter(op.key for op in decompose(cfg, size, head=head))


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("size", SIZES)
def test_every_operator_is_a_plan_candidate(size, head):
    cands = {kind: {op.key for op in ops} for kind, ops in candidates(size, head=head).items()}
    for cfg in CONFIGS:
        for op in decompose(cfg, size, head=head):
            if op.kind in ("stem", "mbconv", "injection", "head", "resize", "labels"):
                assert op.key in cands[op.kind], op.key


@pytest.mark.parametrize("size", [512, 64, (96, 160)])
def test_the_last_part_depends_on_the_head(size):
    """logits8 ends at the network's head (logits at 1/8), labels in the argmax + label upsample, logits in the
    resize; the network before them is the same for every head."""
    h, w = (size, size) if isinstance(size, int) else size
    cfg = PRESETS["topformer-tiny"]
    by_head = {head: trace(cfg, size, head=head) for head in HEADS}
    assert [p.kind for p in by_head["logits8"]][-1] == "head"
    assert by_head["logits8"][-1].output == (150, -(-h // 8), -(-w // 8))
    assert by_head["labels"][:-1] == by_head["logits8"] == by_head["logits"][:-1]
    assert by_head["labels"][-1].kind == "labels" and by_head["labels"][-1].output == (1, h, w)
    assert by_head["logits"][-1].kind == "resize" and by_head["logits"][-1].output == (150, h, w)


@pytest.mark.parametrize("size", [512, 256, 64, (96, 160), (70, 45)])
def test_sides_do_not_depend_on_the_config_and_match_the_grid(size):
    g = grid(size)
    for cfg in CONFIGS:
        parts = trace(cfg, size)
        by_group: dict[str, list] = {}
        for p in parts:
            by_group.setdefault(p.group, []).append(p)
        stages = [by_group[f"stage{i + 1}"] for i in range(len(TABLE1.stages))]
        assert by_group["stem"][0].out_hw == g.stem
        assert tuple(st[0].in_hw for st in stages) == g.stage_in
        assert tuple(st[-1].out_hw for st in stages) == g.stage_out
        assert tuple(g.stage_out[i] for i in PYRAMID_STAGES) == g.pyramid
        assert by_group["pool"][0].out_hw == g.tokens
        assert all(p.in_hw == g.tokens for p in parts if p.kind == "transformer")
    if isinstance(size, int):
        stem, ins, outs = stage_sides(size)
        assert (stem, ins, outs) == (side(g.stem), [side(h) for h in g.stage_in], [side(h) for h in g.stage_out])


def test_parts_are_named_chained_and_carry_their_hyper_parameters():
    cfg = PRESETS["topformer-small"]
    parts = trace(cfg, 512, head="logits")
    names = [p.name for p in parts]
    assert len(set(names)) == len(names)
    assert names[:2] == ["stem", "stage1.block1"] and names[-2:] == ["head", "resize"]
    assert [p.kind for p in parts][-3:] == ["injection", "head", "resize"]
    mb = [p for p in parts if p.kind == "mbconv"]
    for prev, cur in zip(mb, mb[1:]):  # each block is fed the previous block's output
        assert cur.inputs[0] == prev.output
    for i, st in enumerate(cfg.stages):
        blocks = [p for p in mb if p.group == f"stage{i + 1}"]
        assert [b.kernel for b in blocks] == list(st.kernels)
        assert [b.expansion for b in blocks] == list(st.expansions)
        assert [b.stride for b in blocks] == [TABLE1.stages[i].stride] + [1] * (st.depth - 1)
        assert all(b.residual == (b.stride == 1 and b.cin == b.cout) for b in blocks)
    pool = next(p for p in parts if p.kind == "pool")
    assert pool.widths == cfg.pyramid_widths and pool.cout == cfg.token_dim
    vits = [p for p in parts if p.kind == "transformer"]
    assert len(vits) == sum(v.depth for v in cfg.vits)
    v0 = cfg.vits[0]
    assert (vits[0].heads, vits[0].key_dim, vits[0].value_dim, vits[0].mlp_hidden) == (
        v0.heads, v0.key_dim, v0.value_dim, v0.mlp_hidden(cfg.token_dim))
    head = next(p for p in parts if p.kind == "head")
    assert head.fuse == cfg.fuse and head.cout == 150 and head.cin == cfg.decoder_width
    assert parts[-1].output == (150, 512, 512)
    assert size_mod.conv_out is trace_mod.conv_out  # size.py re-exports it


def test_non_square_model_size_matches_the_network():
    """model_size at (H, W) over the trace: params per part equal the modules', conv MACs equal forward hooks."""
    cfg = TABLE1.sample(7)
    net = TopFormer(cfg, 150).eval()
    rep = model_size(cfg, (96, 160))
    n = lambda mods: sum(p.numel() for m in mods for p in m.parameters())  # noqa: E731
    blocks = list(net.transformer)
    expected = {"stem": n([net.stem]), "head": n([net.head])}
    expected.update({f"stage{i + 1}": n([s]) for i, s in enumerate(net.stages)})
    start = 0
    for j, v in enumerate(cfg.vits):
        expected[f"vit{j + 1}"] = n(blocks[start:start + v.depth])
        start += v.depth
    expected.update({f"injection{lv}": n([m]) for lv, m in zip(INJECTION_LEVELS, net.injections)})
    assert {g: v[0] for g, v in rep.parts.items()} == expected
    macs = 0

    def hook(mod, inp, out):
        nonlocal macs
        macs += out.numel() * mod.weight[0].numel()

    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(hook)
    with torch.no_grad():
        net(torch.randn(1, 3, 96, 160))
    assert macs == rep.conv_macs


def _forward_shapes(cfg, hw: tuple[int, int], head: str) -> list[tuple[str, list[tuple[int, ...]], tuple[int, ...]]]:
    """(kind, input shapes, output shape) of every traced module in a real forward pass, in execution order."""
    net = TopFormer(cfg, 150).eval()
    model = Deployed(net, head).eval()
    seen: list[tuple[str, list[tuple[int, ...]], tuple[int, ...]]] = []

    def shapes(xs) -> list[tuple[int, ...]]:
        out = []
        for x in xs:
            out += shapes(x) if isinstance(x, (list, tuple)) else [tuple(x.shape[1:])]
        return out

    def watch(kind: str):
        return lambda mod, args, out: seen.append((kind, shapes(args), tuple(out.shape[1:])))

    net.stem.register_forward_hook(watch("stem"))
    for st in net.stages:
        for blk in st:
            blk.register_forward_hook(watch("mbconv"))
    # the pool is functional: its output is the transformer's input (pyramid maps: the pyramid stages' outputs)
    net.transformer.register_forward_pre_hook(lambda mod, args: seen.append(("pool", [], tuple(args[0].shape[1:]))))
    for blk in net.transformer:
        blk.register_forward_hook(watch("transformer"))
    for inj in net.injections:
        inj.register_forward_hook(watch("injection"))
    net.head.register_forward_hook(watch("head"))
    final = {"labels": "labels", "logits": "resize"}.get(head)
    if final:
        model.register_forward_hook(lambda mod, args, out: seen.append((final, [], tuple(out.shape[1:]))))
    with torch.no_grad():
        model(torch.randn(1, 3, *hw))
    return seen


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("hw", [(64, 64), (64, 96), (70, 45)])
def test_trace_shapes_equal_a_real_forward_pass(hw, head):
    for cfg in (TABLE1.min_config(), TABLE1.max_config(), TABLE1.sample(3), PRESETS["topformer-tiny"]):
        parts = trace(cfg, hw, head=head)
        seen = _forward_shapes(cfg, hw, head)
        assert [k for k, _, _ in seen] == [p.kind for p in parts]
        last = {p.group: p.output for p in parts if p.kind == "mbconv"}  # each stage's output
        pyramid = [last[f"stage{i + 1}"] for i in PYRAMID_STAGES]
        for (kind, ins, out), part in zip(seen, parts):
            assert out == part.output, part.name
            if kind == "pool":
                assert list(part.inputs) == pyramid
            elif kind not in ("resize", "labels"):
                assert ins == list(part.inputs), part.name
