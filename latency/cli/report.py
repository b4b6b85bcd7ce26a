"""``etf-predictor-report``: how well the latency predictor does on subnets it never saw, against two baselines.

Measures N random subnets end to end on the device, each timed beside TopFormer-Tiny (the paired protocol of
latency/measure.py), and compares the predictor with (a) a linear fit on FLOPs and (b) the plain operator sum
without correction, both fitted on the same data as the predictor's correction, all in one setting (device, size,
threads, precision, output head). With several threads the predictor sums the folder's 1-thread operator table
when there is one; the report then also scores the same fit on the setting's own operators (own_operators).
Held-out subnets are always fresh: drawn from seeds never used before for the setting in this folder, under this
or an earlier operator table (ledger ``<setting>.heldout_seeds.json``), never used for fitting, and they expire
with the table, after --window-h hours and with a new measurement protocol (then new ones are drawn and
measured; the expired rows stay in the file). Rows are kept in ``<setting>.heldout.csv`` (resumable within the
window); the scatter plot goes to ``<setting>.report.png``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from android_bench.device_config import resolve_device
from etf.args import Parser, add_verbose, device_name, existing_dir, int_range, nonneg_int, output_file, positive_float, positive_int, rule
from etf.common import cli_entry
from etf.quiet import set_verbose
from supernet.space import ArchConfig
from supernet.trace import check_deploy_size
from latency import table as tbl
from latency.measure import MAX_ROUNDS, TARGET_SE
from latency.predictor import accuracy, fit_from_tables, load_for_device
from latency.profile import _now
from latency.report import (DRIFT_WARN_PCT, HELDOUT_WINDOW_H, agreement, evaluate, measure_heldout,
                            retime_heldout, scatter)
from latency.setting import add_setting_arguments, make_setting


def build_parser() -> argparse.ArgumentParser:
    p = Parser(allow_abbrev=False, prog="etf-predictor-report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Examples:\n  etf-predictor-report --device local --n 50 --size 512\n"
                                       "  etf-predictor-report --device local --n 20 --size 256 --window-h 1 --json\n"
                                       "  etf-predictor-report --device local --n 50 --retest 50   # how far the device lets any predictor go")
    p.add_argument("--device", required=True, type=device_name, help="device to measure on (its table must exist)")
    p.add_argument("--n", type=int_range(2, 10_000), default=50, help="held-out random subnets (default 50)")
    p.add_argument("--size", type=rule(check_deploy_size), default=512, help="input side (default 512)")
    p.add_argument("--tables", default="tables", type=existing_dir, help="directory of the latency tables (default tables/)")
    add_setting_arguments(p)
    p.add_argument("--workers", type=positive_int, default=2, help="conversion processes (default 2)")
    p.add_argument("--batch", type=positive_int, default=6, help="subnets per measurement round trip (default 6)")
    p.add_argument("--runs", type=positive_int, default=30, help="timed runs per subnet, split over its first 3 "
                   "rounds (default 30: each visit's fastest of 10 is what the ratio uses); more rounds follow, up to "
                   f"{MAX_ROUNDS}, while a subnet's ratio has a standard error above {100 * TARGET_SE:g}%%")
    p.add_argument("--warmup", type=nonneg_int, default=2, help="warm-up runs per subnet (default 2)")
    p.add_argument("--window-h", type=positive_float, default=HELDOUT_WINDOW_H,
                   help=f"held-out rows older than this many hours expire (default {HELDOUT_WINDOW_H:g})")
    p.add_argument("--retest", type=nonneg_int, default=0, metavar="K",
                   help="then time the first K held-out subnets again, same protocol, and print how often the second "
                        "measurement agrees with the first within +-5%%/+-10%% and what that leaves a perfect "
                        "predictor: the device's own ceiling (default 0: off; nothing is refitted or stored)")
    p.add_argument("--png", default=None, type=output_file,
                   help="scatter plot path (default tables/<device>_<size>.report.png)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_verbose(p)
    return p


@cli_entry("etf-predictor-report")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_verbose(args.verbose)
    setting = make_setting(args.device, args.size, args.threads, args.precision, args.head)
    pred = load_for_device(setting, args.tables)
    resolve_device(args.device)  # an unknown device fails before any subnet is converted
    start = time.monotonic()
    held = measure_heldout(setting, args.tables, args.n, args.workers, args.batch, args.runs,
                           args.warmup, not args.no_progress, window_h=args.window_h)
    wall = time.monotonic() - start
    others = {}
    if "operators_from" in pred.info:  # the rule's baseline: the same fit on the setting's own operator table
        others["own_operators"] = fit_from_tables(setting, args.tables, own_operators=True)
    result = evaluate(pred, tbl.read_e2e(args.tables, setting), held, others, plain=others.get("own_operators"))
    png = Path(args.png) if args.png else tbl.table_stem(args.tables, setting).with_suffix(".report.png")
    scatter(result, png, f"{setting.describe()}, {len(held)} held-out subnets")
    out = {"device": args.device, "size": args.size, "setting": setting.to_dict(), "heldout": int(len(held)),
           "fit_subnets": result["fit_subnets"],
           "measure_wall_s": round(wall, 1), "metrics": result["metrics"], "flops_fit": result["flops_fit"],
           "drift": result["drift"],
           "table_reduced": pred.info.get("table_reduced"), "predictor_info": pred.info, "png": str(png),
           "timestamp": _now()}
    if args.retest:
        first = held.head(args.retest)
        again = retime_heldout(setting, args.tables, first, args.runs, args.warmup, args.batch)
        out["retest"] = {"agreement": agreement(first["ratio"].to_numpy(float), again)}
        if pred.mode == "ratio":  # the predictor on the same subnets, against each measurement
            predicted = pred.predict_ratio_many(ArchConfig.from_json(j) for j in first["arch_json"])
            out["retest"].update(predictor_vs_first=accuracy(predicted, first["ratio"].to_numpy(float)),
                                 predictor_vs_second=accuracy(predicted, again))
    tbl.write_json_atomic(out, tbl.table_stem(args.tables, setting).with_suffix(".report.json"))
    if args.json:
        print(json.dumps(out, indent=2, default=float))
        return 0
    source = pred.info.get("operators_from")
    print(f"{setting.describe()}: {len(held)} held-out subnets, fitted on "
          f"{result['fit_subnets']} end-to-end subnets + {pred.info['rows']} operator rows"
          + (f" of {source} (own_operators: the same fit on this setting's own operator table)" if source else ""))
    d0 = result["drift"]
    for basis, label in (("raw", "latency as measured"),
                         ("reference_normalised", f"scaled by the {d0['reference']} timed next to it"),
                         ("paired_ratio", f"median of per-round ratios to the {d0['reference']} x its latency when "
                                          "the table was fitted (what the search's verdicts use)")):
        if basis not in result["metrics"]:
            continue
        print(f"\nmeasured = {label}")
        print(f"{'model':<14}{'RMSE ms':>9}{'MAPE %':>8}{'±5% %':>8}{'±10% %':>8}{'tau':>7}")
        for name, m in result["metrics"][basis].items():
            print(f"{name:<14}{m['rmse_ms']:>9.2f}{m['mape_pct']:>8.1f}{m['within_5_pct']:>8.0f}"
                  f"{m['within_10_pct']:>8.0f}{m['kendall_tau']:>7.3f}")
    d = result["drift"]
    print(f"\n{d['reference']}: {d['table_ref_ms']:.3f} ms when the table was fitted, {d['report_ref_ms']:.3f} ms now "
          f"({d['change_pct']:+.1f}%)")
    if abs(d["change_pct"]) > DRIFT_WARN_PCT:
        print(f"warning: the device runs {abs(d['change_pct']):.0f}% {'slower' if d['change_pct'] > 0 else 'faster'} "
              f"than when its table was profiled; rerun etf-profile or compare in one window", file=sys.stderr)
    if args.retest:
        r = out["retest"]
        ag = r["agreement"]
        print(f"\nthe first {ag['n']} held-out subnets timed again: the second paired ratio is within +-5% of the "
              f"first for {ag['within_5_pct']:.0f}%, within +-10% for {ag['within_10_pct']:.0f}% (|difference| median "
              f"{ag['abs_diff_median_pct']:.1f}%, 90th pct {ag['abs_diff_p90_pct']:.1f}%); a predictor that knew "
              f"every true latency would score about {ag['ceiling_within_5_pct']:.0f}% within +-5% against one measurement")
        if "predictor_vs_first" in r:
            print(f"the predictor on them: {r['predictor_vs_first']['within_5_pct']:.0f}% within +-5% of the first "
                  f"measurement, {r['predictor_vs_second']['within_5_pct']:.0f}% of the second")
    print(f"\nscatter plot: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
