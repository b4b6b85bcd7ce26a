"""How well the latency predictor does on subnets it never saw, against two baselines.

Measures N random subnets end to end on the device (seeds disjoint from the correction subnets; any config
used in fitting is skipped), with the reference operator timed between every two subnets (drift), and compares the
predictor with (a) a linear fit on FLOPs and (b) the plain operator sum without correction, both fitted on
the same data as the predictor's correction. Measurements are kept in ``<device>_<size>.heldout.csv``
(resumable, never used for fitting); the scatter plot goes to ``<device>_<size>.report.png``.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from etf.common import EtfError, atomic_open
from latency import table as tbl
from latency.export_op import cache_path, convert_cached, ignore_sigint, sigint_ignored
from latency.predictor import accuracy
from latency.profile import convert_networks, e2e_row, get_device, measure_with_reference, reference_op
from latency.setting import Setting
from supernet.size import model_size
from supernet.space import TABLE1, ArchConfig

#: Held-out subnets are drawn from seeds above this, disjoint from the correction subnets'.
REPORT_SEED_BASE = 50_000
#: etf-predictor-report warns when the reference operator moved more than this since profiling.
DRIFT_WARN_PCT = 10.0


def heldout_path(tables_dir: str, setting: Setting) -> Path:
    """Where the held-out measurements of ``setting`` are kept (next to its table)."""
    return tbl.table_stem(tables_dir, setting).with_suffix(".heldout.csv")


def heldout_configs(n: int, exclude: set[str]) -> list[tuple[int, ArchConfig]]:
    """The first ``n`` report subnets (seeded) whose keys are not in ``exclude`` (the fitting data)."""
    out, seed = [], REPORT_SEED_BASE
    while len(out) < n:
        cfg = TABLE1.sample(seed)
        if cfg.key() not in exclude and cfg.key() not in {c.key() for _, c in out}:
            out.append((seed, cfg))
        seed += 1
    return out


def measure_heldout(setting: Setting, tables_dir: str, n: int, workers: int, batch: int, runs: int,
                    warmup: int, progress: bool) -> pd.DataFrame:
    """Measure the held-out subnets of ``setting`` not measured yet (deployed with its head, timed with its
    threads); returns all held-out rows (atomic write per batch)."""
    from tqdm import tqdm

    size = setting.size
    dev = get_device(setting.device)
    e2e = tbl.read_e2e(tables_dir, setting)
    path = heldout_path(tables_dir, setting)
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
            paths, _ = convert_networks([c for _, c in chunk], size, cache, pool, head=setting.head)
            stats, refs = measure_with_reference(dev, ref_path, paths, runs=runs, warmup=warmup,
                                                 threads=setting.threads, interleave=True)
            new = pd.DataFrame([e2e_row(setting, s, c, st, ref, "heldout")
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
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120)
    plt.close(fig)
    return path
