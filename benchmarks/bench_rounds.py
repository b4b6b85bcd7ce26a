"""How many paired rounds does a held-out latency need? Accuracy of a setting's predictor vs rounds measured.

Usage (a table for the setting in --tables; nothing else running):
  PYTHONPATH=. python benchmarks/bench_rounds.py --tables tables --size 512 --n 30 --rounds 15
Smoke run (proves the script works; its numbers mean nothing):
  PYTHONPATH=. python benchmarks/bench_rounds.py --tables T --size 64 --n 2 --rounds 4 --runs 2

``--n`` random subnets (seeds ``--seed`` on: 80000 by default, a range neither the table's correction subnets
(1000+) nor the report's held-out subnets (50000+) draw from, so none of them was ever fitted on) are converted
once and timed with the report's paired protocol (latency/measure.py: each beside TopFormer-Tiny, rotated order,
each visit's fastest of ``--runs``) for a fixed ``--rounds`` rounds, in batches of 6. The setting's predictor,
fitted once on its table and never on these subnets, is then scored against the median ratio of each subnet's
first r rounds, for every r: one row per r (within ±5 % / ±10 %, MAPE), and the median standard error of the
measured ratios (latency.measure.ratio_se). The same subnets at every r: only the measurement changes. The rows
show where more rounds stop paying, which is what latency.measure.MAX_ROUNDS is set from. ``--json`` prints
everything, per-round ratios included.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from latency import table as tbl
from latency.measure import ratio_se, round_sequence, round_values
from latency.networks import cache_dir, convert_networks, reference_network_path
from latency.predictor import load_for_device
from latency.profile import get_device
from latency.setting import add_setting_arguments, make_setting
from supernet.space import TABLE1

BATCH = 6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="local")
    ap.add_argument("--tables", default="tables")
    ap.add_argument("--size", type=int, default=512)
    add_setting_arguments(ap)
    ap.add_argument("--n", type=int, default=30, help="subnets (default 30)")
    ap.add_argument("--seed", type=int, default=80000, help="first subnet seed (default 80000)")
    ap.add_argument("--rounds", type=int, default=15, help="rounds measured (default 15)")
    ap.add_argument("--runs", type=int, default=10, help="timed runs per visit (default 10, as the report)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="conversion processes")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    setting = make_setting(args.device, args.size, args.threads, args.precision, args.head)
    if not tbl.ops_path(args.tables, setting).exists():
        print(f"bench_rounds: no table for {setting.describe()} in {args.tables}", file=sys.stderr)
        return 2
    pred = load_for_device(setting, args.tables)
    cfgs = [TABLE1.sample(args.seed + i) for i in range(args.n)]
    cache = cache_dir(args.tables)
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        ref = reference_network_path(cache, setting.size, pool, setting.head, setting.precision)
        subs, conv_s = convert_networks(cfgs, setting.size, cache, pool, setting.head, setting.precision)
    print(f"{args.n} subnets converted ({conv_s:.0f} s; cached ones are free)", file=sys.stderr)

    dev = get_device(args.device)
    per_round: list[list[float]] = [[] for _ in cfgs]
    refs: list[float] = []
    start = time.monotonic()
    for b0 in range(0, args.n, BATCH):
        idx = list(range(b0, min(args.n, b0 + BATCH)))
        paths = [ref] + [subs[i] for i in idx]
        medians, fastest = [], []
        for r in range(args.rounds):
            seq = round_sequence(len(idx), r)
            stats = dev.benchmark_many([paths[i] for i in seq], runs=args.runs, warmup=args.warmup,
                                       threads=setting.threads, cooldown_s=0.0)
            medians.append([float(s.median_ms) for s in stats])
            fastest.append([float(getattr(s, "min_ms", None) or s.median_ms) for s in stats])
            refs.append(statistics.median(fastest[-1][0::2]))
        ratios, _, _ = round_values(len(idx), medians, fastest)  # the protocol's own per-round ratios
        for i, net_ratios in zip(idx, ratios):
            per_round[i] = net_ratios
        print(f"batch {b0 // BATCH + 1}/{-(-args.n // BATCH)}: {time.monotonic() - start:.0f} s", file=sys.stderr)

    predicted = pred.predict_ratio_many(cfgs)
    rows = []
    for r in range(1, args.rounds + 1):
        measured = np.array([statistics.median(x[:r]) for x in per_round])
        err = predicted / measured - 1
        ses = [ratio_se(x[:r]) for x in per_round]
        rows.append({"rounds": r, "within5": float(np.mean(abs(err) <= 0.05)),
                     "within10": float(np.mean(abs(err) <= 0.10)), "mape": float(np.mean(abs(err))),
                     "median_se": float(statistics.median(ses))})
    out = {"setting": setting.to_dict(), "n": args.n, "seeds": [args.seed, args.seed + args.n - 1],
           "runs": args.runs, "reference_ms": [min(refs), statistics.median(refs), max(refs)],
           "measure_s": time.monotonic() - start, "rows": rows, "predicted_ratio": predicted.tolist(),
           "per_round_ratio": per_round}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{setting.describe()}: {args.n} subnets (seeds {args.seed}-{args.seed + args.n - 1}) beside TopFormer-Tiny "
          f"({min(refs):.2f}-{max(refs):.2f} ms), {args.rounds} rounds of {args.runs} runs; predictor from "
          f"{args.tables}, not refitted")
    print(f"{'rounds':>6} {'±5 %':>6} {'±10 %':>6} {'MAPE %':>7} {'median SE %':>12}")
    for row in rows:
        print(f"{row['rounds']:6d} {100 * row['within5']:6.0f} {100 * row['within10']:6.0f} "
              f"{100 * row['mape']:7.2f} {100 * row['median_se']:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
