"""Latency-predictor numbers for the notes: table/profiling cost (from the table's meta) and predictor speed.

Usage: PYTHONPATH=. python benchmarks/bench_latency.py --device local --size 512 --tables runs/tables [--n 200000]
Prints a table: rows and kinds in the table, conversion vs measurement wall time, the drift of the reference
operator, and configs/second of ``predict_many`` on cold (first call, regressors run) and warm caches.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from latency import table as tbl
from latency.predictor import load_for_device
from supernet.space import TABLE1


def cross_validate(tables: str, device: str, size: int) -> None:
    """Operator-level accuracy: 5-fold cross-validated MAPE of the per-kind regressor, drift-normalised and raw."""
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.model_selection import cross_val_predict

    from latency.operators import log_features, parse_key

    ops = tbl.read_ops(tables, device, size)
    ref_nominal = ops["ref_ms"].median()
    print(f"{'kind':<12}{'rows':>5}{'CV MAPE norm %':>16}{'CV MAPE raw %':>15}")
    for kind, g in ops.groupby("kind"):
        if len(g) < 12:
            continue
        x = np.array([log_features(parse_key(k)) for k in g["key"]])
        row = []
        for y in ((g["median_ms"] * ref_nominal / g["ref_ms"]).to_numpy(), g["median_ms"].to_numpy()):
            model = GradientBoostingRegressor(n_estimators=400, max_depth=3, learning_rate=0.05, subsample=0.9,
                                              random_state=0)
            p = np.exp(cross_val_predict(model, x, np.log(y), cv=5))
            row.append(100 * np.mean(np.abs(p - y) / y))
        print(f"{kind:<12}{len(g):>5}{row[0]:>16.1f}{row[1]:>15.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="local")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--tables", default="tables")
    ap.add_argument("--n", type=int, default=100_000, help="configs per predict_many call")
    args = ap.parse_args()

    meta = tbl.read_json(tbl.meta_path(args.tables, args.device, args.size))
    t = meta["timing"]
    drift = [d["ref_ms"] for d in meta["drift"]]
    print(f"table {args.device} @ {args.size}: {meta['rows']} operator rows {meta['rows_by_kind']}, "
          f"{meta['e2e_rows']} end-to-end subnets; reduced={meta['reduced']} {meta.get('reduced_reasons', [])}")
    print(f"{'conversion wall s':<28}{t['convert_wall_s']:>10.0f}   ({t['conversions']} models, "
          f"{t['convert_cpu_s']:.0f} s summed over workers)")
    print(f"{'measurement wall s':<28}{t['measure_wall_s']:>10.0f}   ({t['measurements']} measurements incl. reference)")
    print(f"{'end-to-end convert/measure s':<28}{t['e2e_convert_wall_s']:>10.0f} / {t['e2e_measure_wall_s']:.0f}")
    if drift:
        print(f"{'reference op ms min/med/max':<28}{min(drift):>10.3f} / {np.median(drift):.3f} / {max(drift):.3f}"
              f"   ({len(drift)} batches, spread {100 * (max(drift) / min(drift) - 1):.0f}%)")

    cross_validate(args.tables, args.device, args.size)
    pred = load_for_device(args.device, args.size, args.tables)
    cfgs = [TABLE1.sample(s) for s in range(args.n)]
    start = time.perf_counter()
    pred.predict_many(cfgs)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    out = pred.predict_many(cfgs)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for c in cfgs[:2000]:
        pred.predict(c)
    single = (time.perf_counter() - start) / 2000
    print(f"{'predict_many cold cfg/s':<28}{args.n / cold:>10.0f}   ({args.n} random configs, first call)")
    print(f"{'predict_many warm cfg/s':<28}{args.n / warm:>10.0f}")
    print(f"{'predict (one cfg) cfg/s':<28}{1 / single:>10.0f}")
    print(f"predicted ms over the sample: min {out.min():.2f}, median {np.median(out):.2f}, max {out.max():.2f}")
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
