"""How far can any predictor go on this device? Re-measure a report's held-out subnets and compare with themselves.

Usage (after ``etf-predictor-report`` has measured the held-out rows; their files are in TABLES/cache/nets):
  PYTHONPATH=. python benchmarks/bench_heldout_retest.py TABLES --threads 1 --precision fp32 [--size 512] [--json]

Every stored, still valid held-out subnet of the setting is timed again with the report's own protocol
(``latency.report.retime_heldout``: beside TopFormer-Tiny, the report's default rounds, runs, warm-up
and batch) in this window,
and the script prints, side by side:

* measurement vs measurement: how often a subnet's paired ratio now lies within +-5% / +-10% of the ratio the
  report stored, and from the differences over sqrt(2) what a predictor that knew every true latency would
  score against one measurement (``latency.report.agreement``): the device's ceiling for the accuracy targets;
* the table's predictor (as saved, fitted on the table alone) against the stored ratios and against the new ones.

Nothing is fitted on held-out rows and nothing is written to the tables: the new measurements go to stdout only.
"""
from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from etf.common import EtfError
from latency import table as tbl
from latency.cli.report import build_parser
from latency.predictor import accuracy, load_for_device
from latency.report import HELDOUT_WINDOW_H, agreement, heldout_path, read_heldout, retime_heldout, valid_heldout
from latency.setting import Setting
from supernet.space import ArchConfig

#: The report's own defaults (timed runs per subnet over its first rounds, warm-up, batch), read from its parser.
_DEFAULTS = build_parser()
REPORT_RUNS, REPORT_WARMUP, REPORT_BATCH = (_DEFAULTS.get_default(k) for k in ("runs", "warmup", "batch"))


def retest(tables: str, setting: Setting, window_h: float) -> dict:
    """Time the setting's valid held-out subnets again; return both ratios per subnet and the comparisons."""
    pred = load_for_device(setting, tables)
    rows = valid_heldout(read_heldout(heldout_path(tables, setting)), tbl.ops_fingerprint(tables, setting),
                         window_h=window_h)
    if rows.empty:
        raise SystemExit(f"no valid held-out rows for {setting.describe()} in {tables}: run etf-predictor-report first")
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.time()
    again = retime_heldout(setting, tables, rows, REPORT_RUNS, REPORT_WARMUP, REPORT_BATCH)
    stored = rows["ratio"].to_numpy(float)
    predicted = pred.predict_ratio_many(ArchConfig.from_json(j) for j in rows["arch_json"])
    stamps = pd.to_datetime(rows["timestamp"], utc=True, errors="coerce")

    def score(y: np.ndarray) -> dict:
        m = accuracy(predicted, y)
        return {k: round(m[k], 2) for k in ("within_5_pct", "within_10_pct", "mape_pct", "kendall_tau")}

    return {
        "setting": setting.describe(), "n": int(len(rows)),
        "stored_window": [str(stamps.min()), str(stamps.max())], "retest_started": started,
        "retest_wall_s": round(time.time() - t0),
        "measurement_vs_measurement": {k: round(v, 2) for k, v in agreement(stored, again).items()},
        "predictor_vs_stored": score(stored), "predictor_vs_retest": score(again),
        "predictor_vs_mean_of_both": score((stored + again) / 2),
        "rows": [{"seed": int(s), "stored": round(float(a), 4), "retest": round(float(b), 4),
                  "predicted": round(float(p), 4)} for s, a, b, p in zip(rows["seed"], stored, again, predicted)],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tables")
    ap.add_argument("--device", default="local")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--head", default="logits8")
    ap.add_argument("--window-h", type=float, default=HELDOUT_WINDOW_H)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    try:
        out = retest(a.tables, Setting(a.device, a.size, a.threads, a.precision, a.head), a.window_h)
    except EtfError as exc:  # a missing table or converted file: one line, not a traceback
        raise SystemExit(f"bench_heldout_retest: {exc}") from None
    if a.json:
        print(json.dumps(out, indent=1))
        return
    mm = out["measurement_vs_measurement"]
    print(f"{out['setting']}: {out['n']} held-out subnets stored {out['stored_window'][0]} .. "
          f"{out['stored_window'][1]}, re-timed from {out['retest_started']} ({out['retest_wall_s']} s)")
    print("| compared | within +-5% | within +-10% | note |")
    print("|---|---|---|---|")
    print(f"| re-timed vs stored ratio | {mm['within_5_pct']:.0f} | {mm['within_10_pct']:.0f} | |diff| median "
          f"{mm['abs_diff_median_pct']:.1f}%, p90 {mm['abs_diff_p90_pct']:.1f}%, median shift {mm['median_shift_pct']:+.1f}% |")
    print(f"| a perfect predictor vs one measurement (estimate) | {mm['ceiling_within_5_pct']:.0f} | "
          f"{mm['ceiling_within_10_pct']:.0f} | |diff| / sqrt(2) |")
    for name in ("predictor_vs_stored", "predictor_vs_retest", "predictor_vs_mean_of_both"):
        s = out[name]
        print(f"| {name.replace('_', ' ')} | {s['within_5_pct']:.0f} | {s['within_10_pct']:.0f} | MAPE "
              f"{s['mape_pct']:.1f}%, tau {s['kendall_tau']:.2f} |")


if __name__ == "__main__":
    main()
