"""Which operators to measure: every operator config the search space can produce, and the designed sample.

``candidates(size)`` lists, per operator kind, the configs a subnet of TABLE1 can contain at that input size
(exhaustive for stem, MBConv, injection, head and the output head's resize or labels op; a seeded random pool for the transformer block and
the pyramid pool, whose exact sets are too large). ``designed_sample`` picks what to measure first: all of
the small kinds, a grid over the MBConv dimensions that matter (every kernel x expansion x stride position at
the extreme widths), and a space-filling sample of transformer blocks. ``most_uncertain`` then adds
the candidates where a random forest fitted on what is measured disagrees most with itself (nn-Meter's
adaptive sampling).
"""
from __future__ import annotations

import random
from typing import Sequence

import numpy as np

from etf.common import EtfError
from latency.operators import (HEAD_KINDS, NUM_CLASSES, HeadOp, InjectionOp, Labels, MBConv, Operator, PyramidPool,
                               Resize, Stem, Transformer, log_features)
from supernet.heads import DEFAULT_HEAD, check_head
from supernet.space import INJECTION_LEVELS, PYRAMID_STAGES, TABLE1, SearchSpace, scaled_floor
from supernet.trace import grid, side

KIND_ORDER = ("stem", "mbconv", "pool", "transformer", "injection", "head", "resize", "labels")


def stage_sides(size: int, space: SearchSpace = TABLE1) -> tuple[int, list[int], list[int]]:
    """(stem output side, input side of each stage, output side of each stage) at ``size``, read off the shape
    trace (``supernet.trace.grid``)."""
    g = grid(size, space)
    return side(g.stem), [side(hw) for hw in g.stage_in], [side(hw) for hw in g.stage_out]


def token_grid_side(size: int, space: SearchSpace = TABLE1) -> int:
    """Side of the token grid at ``size`` (``supernet.trace.grid``)."""
    return side(grid(size, space).tokens)


def _mid(values: Sequence[int]) -> int:
    return values[len(values) // 2]


def mbconv_candidates(size: int, space: SearchSpace = TABLE1,
                      cin_set=None, cout_set=None) -> list[MBConv]:
    """Every MBConv block the space can build at ``size`` (first block of a stage: any previous width in,
    stride of the stage; later blocks: width in = width out, stride 1), optionally restricted in widths."""
    _, ins, outs = stage_sides(size, space)
    out: list[MBConv] = []
    prev_widths = space.stem_widths
    for i, spec in enumerate(space.stages):
        cins = cin_set(prev_widths) if cin_set else prev_widths
        couts = cout_set(spec.widths) if cout_set else spec.widths
        for cin in cins:
            for cout in couts:
                for k in spec.kernels:
                    for e in spec.expansions:
                        s = spec.stride
                        out.append(MBConv(cin, cout, k, e, s, ins[i], s == 1 and cin == cout))
        if max(spec.depths) > 1:
            for w in couts:
                for k in spec.kernels:
                    for e in spec.expansions:
                        out.append(MBConv(w, w, k, e, 1, outs[i], True))
        prev_widths = spec.widths
    return list(dict.fromkeys(out))


def token_dims(space: SearchSpace = TABLE1) -> list[int]:
    """Every token dim (sum of the four pyramid widths) the space can produce."""
    dims = {0}
    for i in PYRAMID_STAGES:
        dims = {d + w for d in dims for w in space.stages[i].widths}
    return sorted(dims)


def transformer_from(dim: int, heads: int, key_dim: int, attn: float, mlp: float, t: int) -> Transformer:
    return Transformer(dim, heads, key_dim, scaled_floor(key_dim, attn), scaled_floor(dim, mlp), t)


def transformer_pool(size: int, n: int = 4000, seed: int = 0, space: SearchSpace = TABLE1) -> list[Transformer]:
    """A seeded random pool of ``n`` transformer blocks the space can produce (the full set is ~23,000)."""
    t = token_grid_side(size, space)
    spec, dims = space.vits[0], token_dims(space)
    rng = random.Random(seed)
    pool = {transformer_from(rng.choice(dims), rng.choice(spec.heads), rng.choice(spec.key_dims),
                             rng.choice(spec.attn_ratios), rng.choice(spec.mlp_ratios), t) for _ in range(n)}
    return sorted(pool, key=lambda o: o.key)


def pool_candidates(size: int, n: int = 500, seed: int = 0, space: SearchSpace = TABLE1) -> list[PyramidPool]:
    """Pyramid-pool configs: the smallest, the largest and a seeded random sample of width combinations."""
    hws = tuple(side(hw) for hw in grid(size, space).pyramid)
    specs = [space.stages[i].widths for i in PYRAMID_STAGES]
    rng = random.Random(seed)
    combos = {tuple(min(w) for w in specs), tuple(max(w) for w in specs)}
    combos |= {tuple(rng.choice(w) for w in specs) for _ in range(n)}
    return [PyramidPool(c, hws) for c in sorted(combos)]


def candidates(size: int, space: SearchSpace = TABLE1, head: str = DEFAULT_HEAD) -> dict[str, list[Operator]]:
    """Per kind, the operator configs a subnet with output ``head`` can contain at ``size`` (see module
    docstring): the output head's own operator only for the head that has it (``resize`` for ``logits``,
    ``labels`` for ``labels``, none for ``logits8``)."""
    check_head(head)
    g = grid(size, space)
    t = side(g.tokens)
    pyr = [side(hw) for hw in g.pyramid]
    inj = [InjectionOp(w, d, pyr[lv], t) for lv in INJECTION_LEVELS
           for w in space.stages[PYRAMID_STAGES[lv]].widths for d in space.decoder_widths]
    heads = [HeadOp(d, NUM_CLASSES, fuse == "depthwise", tuple(pyr[lv] for lv in INJECTION_LEVELS))
             for d in space.decoder_widths for fuse in space.fuses]
    final = {"resize": Resize, "labels": Labels}
    return {
        "stem": [Stem(w, space.stem_kernel, space.stem_stride, size) for w in space.stem_widths],
        "mbconv": mbconv_candidates(size, space),
        "pool": pool_candidates(size, space=space),
        "transformer": transformer_pool(size, space=space),
        "injection": inj,
        "head": heads,
        **{kind: [final[kind](NUM_CLASSES, pyr[INJECTION_LEVELS[0]], size)] for kind in HEAD_KINDS[head]},
    }


#: MBConv designs: ``corners`` (default: every stage position x kernel x expansion at the smallest and largest
#: input and output widths), ``grid`` (adds the middle output width: +90 blocks at 512 px), ``exhaustive`` (all).
#: On two 512 px tables re-fitted with only their ``corners`` rows, 50 stored held-out subnets each came out at
#: 80 / 100 and 82 / 100 (within +-5 / +-10 %) against 76 / 96 and 78 / 100 with the grid: a measured middle width
#: is a lookup carrying its batch's noise, the regressor interpolates it as well (latency/RESULTS.md).
MBCONV_DESIGNS = ("corners", "grid", "exhaustive")
DEFAULT_MBCONV = "corners"


def check_mbconv_design(name: str) -> str:
    """``name`` if it is one of :data:`MBCONV_DESIGNS`, else a one-line EtfError."""
    if name not in MBCONV_DESIGNS:
        raise EtfError(f"unknown MBConv design {name!r}: choose one of {', '.join(MBCONV_DESIGNS)}")
    return name


def designed_sample(size: int, space: SearchSpace = TABLE1, mbconv: str = DEFAULT_MBCONV, n_transformer: int = 40,
                    n_pool: int = 6, seed: int = 0, head: str = DEFAULT_HEAD) -> dict[str, list[Operator]]:
    """The first operators to measure for output ``head``, per kind (deterministic for a given seed)."""
    cands = candidates(size, space, head)
    rng = random.Random(seed)
    check_mbconv_design(mbconv)
    ends = lambda ws: sorted({ws[0], ws[-1]})  # noqa: E731
    three = lambda ws: sorted({ws[0], _mid(ws), ws[-1]})  # noqa: E731
    if mbconv == "exhaustive":
        mb = cands["mbconv"]
    else:
        mb = mbconv_candidates(size, space, cin_set=ends, cout_set=ends if mbconv == "corners" else three)
    spec = space.vits[0]
    dims = token_dims(space)
    t = cands["transformer"][0].t
    corners = [transformer_from(d, h, k, a, m, t) for d, h, k, a, m in (
        (dims[0], spec.heads[0], spec.key_dims[0], spec.attn_ratios[0], spec.mlp_ratios[0]),
        (dims[-1], spec.heads[-1], spec.key_dims[-1], spec.attn_ratios[-1], spec.mlp_ratios[-1]))]
    tf = corners + _spread(cands["transformer"], n_transformer - len(corners), rng)
    inj = [op for op in cands["injection"]
           if op.cin in _three_of(space, op)]
    pools = cands["pool"][:1] + cands["pool"][-1:] + _spread(cands["pool"][1:-1], n_pool - 2, rng)
    return {
        "stem": cands["stem"],
        "mbconv": mb,
        "pool": pools,
        "transformer": list(dict.fromkeys(tf)),
        "injection": inj,
        "head": cands["head"],
        **{kind: cands[kind] for kind in HEAD_KINDS[head]},
    }


def _three_of(space: SearchSpace, op: InjectionOp) -> set[int]:
    for lv in INJECTION_LEVELS:
        ws = space.stages[PYRAMID_STAGES[lv]].widths
        if op.cin in ws:
            return {ws[0], _mid(ws), ws[-1]}
    return set()


def _spread(items: Sequence[Operator], n: int, rng: random.Random) -> list[Operator]:
    """``n`` items spread over the feature space: greedy farthest-point sampling on normalised log features."""
    if n <= 0 or not items:
        return []
    x = np.array([log_features(o)[len(log_features(o)) // 2:] for o in items])
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    chosen = [rng.randrange(len(items))]
    dist = np.linalg.norm(x - x[chosen[0]], axis=1)
    while len(chosen) < min(n, len(items)):
        i = int(dist.argmax())
        chosen.append(i)
        dist = np.minimum(dist, np.linalg.norm(x - x[i], axis=1))
    return [items[i] for i in chosen]


def most_uncertain(measured: Sequence[Operator], latencies: Sequence[float], pool: Sequence[Operator],
                   k: int, seed: int = 0) -> list[Operator]:
    """The ``k`` unmeasured candidates with the largest spread of a random forest's trees (log latency)."""
    from sklearn.ensemble import RandomForestRegressor

    seen = {o.key for o in measured}
    rest = [o for o in pool if o.key not in seen]
    if k <= 0 or not rest or len(measured) < 3:
        return []
    x = np.array([log_features(o) for o in measured])
    y = np.log(np.asarray(latencies, dtype=float))
    forest = RandomForestRegressor(n_estimators=60, min_samples_leaf=1, random_state=seed).fit(x, y)
    xr = np.array([log_features(o) for o in rest])
    spread = np.stack([tree.predict(xr) for tree in forest.estimators_]).std(axis=0)
    return [rest[i] for i in np.argsort(-spread, kind="stable")[:k]]


def interleave(groups: dict[str, Sequence[Operator]]) -> list[Operator]:
    """Round-robin over kinds (so a short run or ``--limit`` still covers every kind)."""
    lists = [list(groups.get(k, [])) for k in KIND_ORDER]
    out: list[Operator] = []
    while any(lists):
        for lst in lists:
            if lst:
                out.append(lst.pop(0))
    return out
