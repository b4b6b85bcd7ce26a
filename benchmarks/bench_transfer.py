"""How few measurements on a new setting reach the full table's accuracy? Transfer accuracy vs measurement count.

Usage (both settings profiled in full, the target's held-out subnets measured by etf-predictor-report):
  PYTHONPATH=. python benchmarks/bench_transfer.py --tables tables --source local_512_t1_fp32_logits8 \\
      --target local_512_t2_fp32_logits8 --ops 0,10,20,40,80 --e2e 4

For each operator budget, the transfer of latency/transfer.py is fitted exactly as ``etf-profile --transfer-from``
fits it, taking the "measurements on the new setting" from the target's full table (the same operators, measured
on the target by its full profile: a replay of the transfer on real target measurements, not a new run) and the
first ``--e2e`` of the target's correction subnets (the smallest config and the presets). Every predictor is
scored on the target's valid held-out rows (etf-predictor-report's fresh subnets, paired with TopFormer-Tiny):
none of them is ever used to fit anything here. Rows:
  source as is   the source's predictor, no target measurement: its ratios x the target's reference beside each
                 subnet (what reference-relative prediction gives for free)
  transfer N     N operators + the --e2e networks measured on the target, the rest mapped
  full table     the target's own predictor (all its operators and correction subnets)
Cost is (operators + networks measured) / (the full target table's operators + networks).
"""
from __future__ import annotations

import argparse
import json
import sys

import pandas as pd

from latency import table as tbl
from latency import transfer as xfer
from latency.predictor import LatencyPredictor, accuracy, load_for_device
from latency.report import heldout_path, read_heldout, valid_heldout
from etf.common import EtfError
from supernet.space import ArchConfig


def score(pred: LatencyPredictor, held: pd.DataFrame) -> dict[str, float]:
    """Accuracy on the held-out rows: ratio x the reference timed beside each subnet (raw when no ratios)."""
    cfgs = [ArchConfig.from_json(j) for j in held["arch_json"]]
    measured = held["median_ms"].to_numpy(float)
    if pred.ratio_correction is not None and held["ref_net_ms"].notna().all():
        p = pred.predict_ratio_many(cfgs) * held["ref_net_ms"].to_numpy(float)
    else:
        p = pred.predict_many(cfgs)
    return accuracy(p, measured)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tables", required=True)
    ap.add_argument("--source", required=True, help="stem of the source setting's table")
    ap.add_argument("--target", required=True, help="stem of the target setting's table (profiled in full)")
    ap.add_argument("--ops", default="0,10,20,40,80", help="operator budgets (comma-separated)")
    ap.add_argument("--e2e", default="4", help="whole networks measured on the target (comma-separated)")
    ap.add_argument("--window-h", type=float, default=24.0, help="held-out rows older than this are not used")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    try:  # each table read once: its measured rows (mapped rows of a transfer dropped) and its setting
        source, src_setting, _ = xfer.source_table(args.source, args.tables)
        target, tgt_setting, _ = xfer.source_table(args.target, args.tables)
        xfer.check_transfer(src_setting, tgt_setting)
    except EtfError as exc:
        sys.exit(f"bench_transfer: {exc}")
    tgt_e2e = tbl.read_e2e(args.tables, tgt_setting)
    held = read_heldout(heldout_path(args.tables, tgt_setting))
    held = valid_heldout(held, tbl.ops_fingerprint(args.tables, tgt_setting), window_h=args.window_h)
    if len(held) < 10:
        sys.exit(f"bench_transfer: only {len(held)} valid held-out rows for {args.target}; run "
                 f"etf-predictor-report --n 50 on it first")
    correction = tgt_e2e[tgt_e2e["purpose"] == "correction"]
    full_cost = len(target) + len(correction)
    results = []

    src_pred = load_for_device(src_setting, args.tables)
    results.append({"row": "source as is", "ops": 0, "e2e": 0, "cost_pct": 0.0, **score(src_pred, held)})
    template = {"device": tgt_setting.device, "threads": tgt_setting.threads, "precision": tgt_setting.precision,
                "head": tgt_setting.head}
    for n_e2e in [int(v) for v in args.e2e.split(",")]:
        e2e = correction.head(n_e2e)
        for n_ops in [int(v) for v in args.ops.split(",")]:
            if n_ops == 0:
                continue
            keys = {op.key for op in xfer.transfer_sample(source, xfer.kind_budget(source, n_ops))}
            measured = target[target["key"].isin(keys)].copy()
            measured["phase"] = xfer.MEASURED_PHASE
            table, _ = xfer.transferred_table(source, measured, {**template, "ref_ms": float(measured["ref_ms"].median())})
            pred = LatencyPredictor.fit(table, e2e, tgt_setting)
            cost = len(measured) + len(e2e)
            results.append({"row": f"transfer {len(measured)} ops + {len(e2e)} nets", "ops": int(len(measured)),
                            "e2e": int(len(e2e)), "cost_pct": 100.0 * cost / full_cost, **score(pred, held)})
    full = LatencyPredictor.fit(target, tgt_e2e, tgt_setting)
    results.append({"row": "full table", "ops": int(len(target)), "e2e": int(len(tgt_e2e[tgt_e2e["purpose"].isin(tbl.FIT_PURPOSES)])),
                    "cost_pct": 100.0, **score(full, held)})
    if args.json:
        print(json.dumps({"source": src_setting.to_dict(), "target": tgt_setting.to_dict(), "heldout": len(held),
                          "results": results}, indent=2))
        return 0
    print(f"transfer {src_setting.describe()} -> {tgt_setting.describe()}; {len(held)} held-out target subnets "
          f"(measured {held['median_ms'].min():.1f}-{held['median_ms'].max():.1f} ms)")
    print(f"{'predictor':<30}{'measured':>9}{'cost %':>8}{'MAPE %':>8}{'±5% %':>8}{'±10% %':>8}{'tau':>7}")
    for r in results:
        print(f"{r['row']:<30}{r['ops'] + r['e2e']:>9}{r['cost_pct']:>8.1f}{r['mape_pct']:>8.2f}"
              f"{r['within_5_pct']:>8.0f}{r['within_10_pct']:>8.0f}{r['kendall_tau']:>7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
