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
