"""Re-score search winners and reference configs on the held-out ``report`` split, with paired bootstrap
intervals on their mIoU differences (``supernet.evaluation.bootstrap``).

The search selects on the ``search`` split, so its own score of the winner is optimistic; every table that
compares a winner with a preset (``etf-search``'s summary, the demo's final table, ``benchmarks/bench_search.py``)
prints these report-split numbers instead. The search's own score stays in its log and summary.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from supernet.evaluation.bootstrap import DEFAULT_RESAMPLES, bootstrap_miou_difference
from supernet.evaluation.metrics import mean_iou
from supernet.space import ArchConfig

__all__ = ["ReportScorer", "compare_on_report", "paired_difference", "report_lines"]


class ReportScorer:
    """Per-image confusion matrices of configs on the report split, computed once per config."""

    def __init__(self, evaluator: Any, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> None:
        self.evaluator, self.resamples, self.seed = evaluator, resamples, seed
        self._per_image: dict[str, torch.Tensor] = {}

    def per_image(self, cfg: ArchConfig) -> torch.Tensor:
        key = cfg.key()
        if key not in self._per_image:
            self._per_image[key] = self.evaluator.per_image(cfg)
        return self._per_image[key]

    def miou(self, cfg: ArchConfig) -> float:
        """Report-split mIoU in percent."""
        return 100.0 * mean_iou(self.per_image(cfg).sum(0))

    def difference(self, a: ArchConfig, b: ArchConfig) -> dict[str, Any]:
        """mIoU(a) - mIoU(b) in points with its paired 95% bootstrap interval over the report images."""
        return paired_difference(self.per_image(a), self.per_image(b), self.resamples, self.seed)

    def describe(self) -> dict[str, Any]:
        ev = self.evaluator
        return {"split": getattr(ev, "split", None), "images": ev.images, "resamples": self.resamples,
                "bootstrap_seed": self.seed}


def paired_difference(a: torch.Tensor, b: torch.Tensor, resamples: int = DEFAULT_RESAMPLES,
                      seed: int = 0) -> dict[str, Any]:
    """mIoU(a) - mIoU(b) in points with its paired 95% bootstrap interval, from per-image confusion matrices of
    the same images in the same order (two configs, or two fine-tuned checkpoints)."""
    r = bootstrap_miou_difference(a, b, resamples, seed)
    return {"diff": 100 * r.estimate, "low": 100 * r.low, "high": 100 * r.high, "confidence": r.confidence,
            "resamples": r.resamples, "images": r.images, "seed": r.seed, "significant": r.excludes_zero()}


def compare_on_report(scorer: ReportScorer, winner: ArchConfig, refs: Mapping[str, ArchConfig],
                      search_accuracy: float | None = None) -> dict[str, Any]:
    """The winner's and every reference's report-split mIoU, and winner - reference with its interval."""
    out: dict[str, Any] = {**scorer.describe(), "winner": {"key": winner.key(), "miou": scorer.miou(winner),
                                                          "search_miou": search_accuracy}, "refs": {}}
    for name, cfg in refs.items():
        out["refs"][name] = {"key": cfg.key(), "miou": scorer.miou(cfg),
                             "winner_minus_ref": scorer.difference(winner, cfg)}
    return out


def fmt_diff(d: Mapping[str, Any]) -> str:
    """``+1.23 [-0.40, +2.91]`` (points, 95% interval)."""
    return f"{d['diff']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"


def report_lines(report: Mapping[str, Any], feasible: Mapping[str, bool] | None = None) -> list[str]:
    """The comparison as a small table, report-split numbers only."""
    n = report["images"]
    conf = next((r["winner_minus_ref"]["confidence"] for r in report["refs"].values()), 0.95)
    pct = round(100 * conf)
    lines = [f"held-out comparison on the report split ({n} images the search never saw; winner - preset with its "
             f"{pct}% paired bootstrap interval over images, {report['resamples']} resamples):",
             f"  {'model':18s} {'mIoU %':>7s}  {f'winner - model, points [{pct}% CI]':>32s}",
             f"  {'searched winner':18s} {report['winner']['miou']:7.2f}  {'':>32s}"]
    for name, r in report["refs"].items():
        note = "" if feasible is None else ("  (meets the target)" if feasible.get(name) else "  (over the target)")
        lines.append(f"  {name:18s} {r['miou']:7.2f}  {fmt_diff(r['winner_minus_ref']):>32s}{note}")
    return lines
