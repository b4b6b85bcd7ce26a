"""Which operators does a table need? Refit a finished table's predictor on subsets of its rows and score each
on the table's own stored held-out subnets.

Usage (finished tables whose etf-predictor-report has run; reads only, measures nothing, ~10 s a table):
  PYTHONPATH=. python benchmarks/bench_design.py --tables /work/runs/t512d /work/runs/t512e --size 512

Each variant keeps some of the table's operator rows (the MBConv design the profiler would have measured with
``--mbconv corners`` or ``grid``, with or without the adaptive picks) and refits the predictor on them and the
table's end-to-end rows, exactly as ``LatencyPredictor.fit`` does; the operators left out are then predicted by
the per-kind regressor. The score is the report's own (``latency.report.evaluate``, the median of per-round
ratios to TopFormer-Tiny) on the held-out rows stored with the table, which no variant is fitted on.

This selects a design on held-out subnets, so its numbers are a selection, not a result: confirm the chosen
design on a fresh table and held-out subnets it never saw (seeds outside those scored here). Leaving out the
adaptive picks is optimistic for a smaller design: a profile with that design would pick its adaptive operators
from fewer rows.
"""
from __future__ import annotations

import argparse
import json
import sys
from functools import lru_cache

import pandas as pd

from latency import table as tbl
from latency.plan import designed_sample
from latency.predictor import LatencyPredictor
from latency.report import evaluate, heldout_path, read_heldout
from latency.setting import add_setting_arguments, make_setting

@lru_cache(maxsize=None)
def _design_keys(size: int, design: str) -> frozenset[str]:
    return frozenset(op.key for op in designed_sample(size, mbconv=design)["mbconv"])


VARIANTS: dict[str, tuple[str, bool]] = {  # name: (MBConv design, keep the MBConv adaptive picks)
    "every row": ("all", True),
    "grid, no MBConv adaptive": ("grid", False),
    "corners + MBConv adaptive": ("corners", True),
    "corners, no MBConv adaptive": ("corners", False),
}


def keep_rows(ops: pd.DataFrame, size: int, design: str, adaptive: bool) -> pd.Series:
    """Rows a table of ``design`` would hold: every non-MBConv row, the design's MBConv rows, and (``adaptive``)
    the MBConv adaptive picks."""
    if design == "all":
        return pd.Series(True, index=ops.index)
    mb = ops["kind"] == "mbconv"
    return ~mb | ops["key"].isin(_design_keys(size, design)) | (adaptive & (ops["phase"] == "adaptive"))


def score_table(tables: str, setting) -> list[dict]:
    """Every variant of :data:`VARIANTS` refitted on ``tables`` (read once) and scored on its held-out rows."""
    ops, e2e = tbl.read_ops(tables, setting), tbl.read_e2e(tables, setting)
    held = read_heldout(heldout_path(tables, setting))
    held = held[pd.to_numeric(held["ratio"], errors="coerce").notna()]
    if held.empty:
        raise SystemExit(f"{tables}: no held-out rows with ratios (run etf-predictor-report on it first)")
    rows = []
    for name, (design, adaptive) in VARIANTS.items():
        keep = keep_rows(ops, setting.size, design, adaptive)
        pred = LatencyPredictor.fit(ops[keep].reset_index(drop=True), e2e, setting)
        metrics = evaluate(pred, e2e, held)["metrics"]["paired_ratio"]["predictor"]
        rows.append({"variant": name, "tables": tables, "ops": int(keep.sum()), "heldout": int(len(held)),
                     "seeds": [int(held["seed"].min()), int(held["seed"].max())], **metrics})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tables", nargs="+", required=True, help="finished table directories with held-out rows")
    ap.add_argument("--device", default="local")
    ap.add_argument("--size", type=int, default=512)
    add_setting_arguments(ap)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    setting = make_setting(args.device, args.size, args.threads, args.precision, args.head)
    rows = [row for t in args.tables for row in score_table(t, setting)]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'table':24s} {'variant':30s} {'ops':>4s} {'held':>4s} {'seeds':>11s}  ±5 %  ±10 %  MAPE")
    for r in rows:
        print(f"{r['tables'][-24:]:24s} {r['variant']:30s} {r['ops']:4d} {r['heldout']:4d} "
              f"{r['seeds'][0]}-{r['seeds'][1] % 1000:03d}  {r['within_5_pct']:4.0f}  {r['within_10_pct']:5.0f}  "
              f"{r['mape_pct']:4.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
