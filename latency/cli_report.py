"""``etf-predictor-report``: how well the latency predictor does on subnets it never saw, against two baselines.

Measures N random subnets end to end on the device (seeds disjoint from the correction subnets; any config
used in fitting is skipped), with the reference operator timed between every two subnets (drift), and compares the
predictor with (a) a linear fit on FLOPs and (b) the plain operator sum without correction, both fitted on
the same data as the predictor's correction. Measurements are kept in ``<device>_<size>.heldout.csv``
(resumable, never used for fitting); the scatter plot goes to ``<device>_<size>.report.png``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from latency import table as tbl
from latency.export_op import cache_path, convert_cached, ignore_sigint, sigint_ignored
from latency.predictor import accuracy, load_for_device
from latency.profile import _now, convert_networks, e2e_row, get_device, measure_with_reference, reference_op
from supernet.errors import EtfError, cli_entry
from supernet.size import model_size
from supernet.space import TABLE1, ArchConfig

REPORT_SEED_BASE = 50_000


def heldout_path(tables_dir: str, device: str, size: int) -> Path:
    return tbl.table_stem(tables_dir, device, size).with_suffix(".heldout.csv")


def heldout_configs(n: int, exclude: set[str]) -> list[tuple[int, ArchConfig]]:
    """The first ``n`` report subnets (seeded) whose keys are not in ``exclude`` (the fitting data)."""
    out, seed = [], REPORT_SEED_BASE
    while len(out) < n:
        cfg = TABLE1.sample(seed)
        if cfg.key() not in exclude and cfg.key() not in {c.key() for _, c in out}:
            out.append((seed, cfg))
        seed += 1
    return out


def measure_heldout(device_name: str, size: int, tables_dir: str, n: int, workers: int, batch: int, runs: int,
                    warmup: int, progress: bool) -> pd.DataFrame:
    """Measure the held-out subnets not measured yet; returns all held-out rows (atomic write per batch)."""
    from tqdm import tqdm

    dev = get_device(device_name)
    e2e = tbl.read_e2e(tables_dir, device_name, size)
    path = heldout_path(tables_dir, device_name, size)
    rows = tbl.read_csv_checked(path, tbl.E2E_COLUMNS, "arch_key")
    cfgs = heldout_configs(n, set(e2e["arch_key"]))
    todo = [(s, c) for s, c in cfgs if c.key() not in set(rows["arch_key"])]
    if not todo:
        return rows
    cache = str(Path(tables_dir) / "cache")
    ref = reference_op(size)
    ctx = multiprocessing.get_context("spawn")
    bar = tqdm(total=len(todo), desc="held-out subnets", unit="net", disable=not progress, dynamic_ncols=True)
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=ignore_sigint) as pool:
        ref_path = cache_path(cache, ref.key)
        if not ref_path.exists():
            with sigint_ignored():
                fut = pool.submit(convert_cached, ref.key, str(ref_path))
            fut.result()
        for i in range(0, len(todo), batch):
            chunk = todo[i:i + batch]
            paths, _ = convert_networks([c for _, c in chunk], size, cache, pool)
            stats, refs = measure_with_reference(dev, ref_path, paths, runs=runs, warmup=warmup, interleave=True)
            new = pd.DataFrame([e2e_row(dev.name, size, s, c, st, ref, "heldout")
                                for (s, c), st, ref in zip(chunk, stats, refs)], columns=tbl.E2E_COLUMNS)
            rows = pd.concat([rows, new], ignore_index=True) if len(rows) else new
            tbl.write_csv_atomic(rows, path)
            bar.update(len(chunk))
    bar.close()
    return rows


def evaluate(pred, e2e: pd.DataFrame, held: pd.DataFrame) -> dict[str, Any]:
    """Accuracy of the predictor and of the two baselines on the held-out rows.

    ``raw`` compares with the latency as measured (the headline: the predictor is fitted on raw latencies);
    ``reference_normalised`` scales each measurement by ``ref_nominal / ref_ms`` of the reference operator
    timed next to it, kept to show what normalising by the drift record would do.
    """
    fit = e2e[e2e["purpose"] == "correction"]
    if len(fit) < 2:
        raise EtfError("the table has fewer than 2 end-to-end subnets to fit the correction and the FLOPs baseline; "
                       "run etf-profile with --e2e 8")
    a, b = np.polyfit(fit["flops"].to_numpy(float), fit["median_ms"].to_numpy(float), 1)
    cfgs = [ArchConfig.from_json(j) for j in held["arch_json"]]
    flops = np.array([model_size(c, pred.size).flops for c in cfgs], float)
    series = {"predictor": pred.predict_many(cfgs), "flops_linear": a * flops + b,
              "operator_sum": pred.operator_sum_many(cfgs)}
    raw = held["median_ms"].to_numpy(float)
    measured = {"raw": raw, "reference_normalised": raw * pred.ref_nominal / held["ref_ms"].to_numpy(float)}
    drift = {"table_ref_ms": pred.ref_nominal, "report_ref_ms": float(held["ref_ms"].median()),
             "change_pct": 100 * (float(held["ref_ms"].median()) / pred.ref_nominal - 1)}
    return {"series": series, "measured": measured, "drift": drift,
            "metrics": {m: {name: accuracy(p, y) for name, p in series.items()} for m, y in measured.items()},
            "flops_fit": {"a_ms_per_gflop": a * 1e9, "b_ms": b}, "fit_subnets": int(len(fit))}


#: A report window whose reference operator runs this much slower or faster than the table's is flagged.
DRIFT_WARN_PCT = 10.0


def scatter(result: dict[str, Any], path: Path, title: str) -> Path:
    """Predicted-vs-measured scatter (raw latency), with the y = x line and a +-10% band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = result["measured"]["raw"]
    fig, ax = plt.subplots(figsize=(6, 6))
    for name, marker in (("predictor", "o"), ("operator_sum", "^"), ("flops_linear", "x")):
        m = result["metrics"]["raw"][name]
        ax.scatter(y, result["series"][name], s=18, marker=marker,
                   label=f"{name} (MAPE {m['mape_pct']:.1f}%, ±10%: {m['within_10_pct']:.0f}%)")
    lo, hi = float(min(y.min(), *(s.min() for s in result["series"].values()))), float(
        max(y.max(), *(s.max() for s in result["series"].values())))
    xs = np.linspace(lo * 0.95, hi * 1.05, 10)
    ax.plot(xs, xs, "k-", lw=1)
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="grey", alpha=0.2, label="±10%")
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="etf-predictor-report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Example: etf-predictor-report --device local --n 50 --size 512")
    p.add_argument("--device", required=True, help="device to measure on (its table must exist)")
    p.add_argument("--n", type=int, default=50, help="held-out random subnets (default 50)")
    p.add_argument("--size", type=int, default=512, help="input side (default 512)")
    p.add_argument("--tables", default="tables", help="directory of the latency tables (default tables/)")
    p.add_argument("--workers", type=int, default=2, help="conversion processes (default 2)")
    p.add_argument("--batch", type=int, default=6, help="subnets per measurement round trip (default 6)")
    p.add_argument("--runs", type=int, default=10, help="timed runs per subnet (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="warm-up runs per subnet (default 2)")
    p.add_argument("--png", default=None, help="scatter plot path (default tables/<device>_<size>.report.png)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--no-progress", action="store_true")
    return p


@cli_entry("etf-predictor-report")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.n < 2 or args.workers < 1 or args.batch < 1 or args.runs < 1:
        raise EtfError("--n must be >= 2 and --workers/--batch/--runs >= 1")
    pred = load_for_device(args.device, args.size, args.tables)
    start = time.monotonic()
    held = measure_heldout(args.device, args.size, args.tables, args.n, args.workers, args.batch, args.runs,
                           args.warmup, not args.no_progress)
    wall = time.monotonic() - start
    wanted = {c.key() for _, c in heldout_configs(args.n, set(tbl.read_e2e(args.tables, args.device, args.size)["arch_key"]))}
    held = held[held["arch_key"].isin(wanted)].reset_index(drop=True)
    result = evaluate(pred, tbl.read_e2e(args.tables, args.device, args.size), held)
    png = Path(args.png) if args.png else tbl.table_stem(args.tables, args.device, args.size).with_suffix(".report.png")
    scatter(result, png, f"{args.device}, {args.size}x{args.size}, {len(held)} held-out subnets")
    out = {"device": args.device, "size": args.size, "heldout": int(len(held)), "fit_subnets": result["fit_subnets"],
           "measure_wall_s": round(wall, 1), "metrics": result["metrics"], "flops_fit": result["flops_fit"],
           "drift": result["drift"],
           "table_reduced": pred.info.get("table_reduced"), "predictor_info": pred.info, "png": str(png),
           "timestamp": _now()}
    tbl.write_json_atomic(out, tbl.table_stem(args.tables, args.device, args.size).with_suffix(".report.json"))
    if args.json:
        print(json.dumps(out, indent=2, default=float))
        return 0
    print(f"{args.device} at {args.size}x{args.size}: {len(held)} held-out subnets, fitted on "
          f"{result['fit_subnets']} end-to-end subnets + {pred.info['rows']} operator rows")
    for basis, label in (("raw", "latency as measured"),
                         ("reference_normalised", "scaled by the reference operator timed next to it")):
        print(f"\nmeasured = {label}")
        print(f"{'model':<14}{'RMSE ms':>9}{'MAPE %':>8}{'±5% %':>8}{'±10% %':>8}{'tau':>7}")
        for name, m in result["metrics"][basis].items():
            print(f"{name:<14}{m['rmse_ms']:>9.2f}{m['mape_pct']:>8.1f}{m['within_5_pct']:>8.0f}"
                  f"{m['within_10_pct']:>8.0f}{m['kendall_tau']:>7.3f}")
    d = result["drift"]
    print(f"\nreference operator: {d['table_ref_ms']:.3f} ms when profiled, {d['report_ref_ms']:.3f} ms now "
          f"({d['change_pct']:+.1f}%)")
    if abs(d["change_pct"]) > DRIFT_WARN_PCT:
        print(f"warning: the device runs {abs(d['change_pct']):.0f}% {'slower' if d['change_pct'] > 0 else 'faster'} "
              f"than when its table was profiled; rerun etf-profile or compare in one window", file=sys.stderr)
    print(f"\nscatter plot: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
