"""Sampling plan: adaptive picks and round-robin order (pure, fast)."""
from __future__ import annotations

from latency.plan import KIND_ORDER, candidates, designed_sample, interleave, most_uncertain


def test_adaptive_sampling_picks_unmeasured_candidates_where_the_forest_disagrees():
    cands = candidates(512)["mbconv"]
    measured = designed_sample(512)["mbconv"][:60]
    latencies = [1e-7 * op.flops() + 0.05 for op in measured]
    picks = most_uncertain(measured, latencies, cands, 10, seed=0)
    assert len(picks) == 10 and len({p.key for p in picks}) == 10
    assert not {p.key for p in picks} & {m.key for m in measured}
    assert [p.key for p in picks] == [p.key for p in most_uncertain(measured, latencies, cands, 10, seed=0)]
    assert most_uncertain(measured[:2], latencies[:2], cands, 5) == []  # too few rows to fit a forest
    assert most_uncertain(measured, latencies, cands, 0) == []


def test_interleave_covers_every_kind_first():
    for head in ("logits8", "labels", "logits"):
        design = designed_sample(64, head=head)
        order = interleave(design)
        kinds = [k for k in KIND_ORDER if k in design]
        assert [op.kind for op in order[:len(kinds)]] == kinds
        assert len(order) == sum(len(v) for v in design.values())


def test_the_default_mbconv_design_is_the_corners_of_the_width_grid():
    """corners: every stage position x kernel x expansion at the smallest and largest widths in and out (a subset
    of grid, which adds the middle output width); an unknown design is one line."""
    import pytest

    from etf.common import EtfError
    from latency.plan import DEFAULT_MBCONV, check_mbconv_design
    from supernet.space import TABLE1

    corners = designed_sample(512)["mbconv"]
    grid = designed_sample(512, mbconv="grid")["mbconv"]
    assert DEFAULT_MBCONV == "corners" and corners == designed_sample(512, mbconv="corners")["mbconv"]
    assert {op.key for op in corners} < {op.key for op in grid} and len(corners) < len(grid)
    for spec in TABLE1.stages:
        outs = {op.cout for op in corners if op.cout in spec.widths and op.cin != op.cout}
        later = {(op.k, op.e) for op in corners if op.res and op.cout in spec.widths}
        assert {spec.widths[0], spec.widths[-1]} <= {op.cout for op in corners if op.cout in spec.widths}
        assert not outs - {w for s in TABLE1.stages for w in (s.widths[0], s.widths[-1])}
        if max(spec.depths) > 1:
            assert {(k, e) for k in spec.kernels for e in spec.expansions} <= later
    with pytest.raises(EtfError, match="unknown MBConv design 'dense'"):
        designed_sample(512, mbconv="dense")
    assert check_mbconv_design("grid") == "grid"
