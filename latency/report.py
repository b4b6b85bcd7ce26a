"""How well the latency predictor does on subnets it never saw, against two baselines.

Held-out subnets are always fresh: drawn from seeds never used before in the setting's folder (a ledger of the
seeds drawn per operator-table fingerprint; a new table skips every earlier table's seeds too), measured with
the paired protocol (beside TopFormer-Tiny, latency/measure.py) in the report's window, never used for fitting,
and expired (kept in the file, not used) with the table, after ``HELDOUT_WINDOW_H`` hours and when the protocol
changes (``latency.measure.PROTOCOL``). The
predictor (in ratio mode: predicted ratio x the reference timed beside each subnet) is compared with (a) a linear
fit on FLOPs and (b) the plain operator sum, both fitted on the same data as the correction.
"""
from __future__ import annotations

import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from etf.common import EtfError, atomic_open
from latency import table as tbl
from latency.export_op import ignore_sigint
from latency.measure import MAX_ROUNDS, MIN_ROUNDS, PROTOCOL, REFERENCE_PRESET, measure_paired
from latency.networks import cache_dir, convert_networks, network_path, reference_network_path
from latency.predictor import accuracy
from latency.profile import e2e_row, get_device
from latency.setting import Setting
from supernet.presets import PRESETS
from supernet.size import model_size
from supernet.space import TABLE1, ArchConfig

#: Held-out subnets are drawn from seeds above this, disjoint from the correction subnets'.
REPORT_SEED_BASE = 50_000
#: etf-predictor-report warns when the reference operator moved more than this since profiling.
DRIFT_WARN_PCT = 10.0
#: Held-out rows expire this many hours after they were measured (the device's state they describe is gone).
HELDOUT_WINDOW_H = 6.0
#: Columns of the held-out file: an end-to-end row tied to the operator table it was drawn for.
HELDOUT_COLUMNS = tbl.E2E_COLUMNS + ["table_fingerprint", "protocol"]


def heldout_path(tables_dir: str, setting: Setting) -> Path:
    """Where the held-out measurements of ``setting`` are kept (next to its table)."""
    return tbl.table_stem(tables_dir, setting).with_suffix(".heldout.csv")


def seeds_path(tables_dir: str, setting: Setting) -> Path:
    """The ledger of held-out seeds already drawn, per table fingerprint (``{fingerprint: [seed, ...]}``)."""
    return tbl.table_stem(tables_dir, setting).with_suffix(".heldout_seeds.json")


def read_seed_ledger(path: Path) -> dict[str, list[int]]:
    if not path.exists():
        return {}
    data = tbl.read_json(path)
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise EtfError(f"{path} is not a held-out seed ledger ({{fingerprint: [seeds]}}); delete it")
    return {str(k): [int(x) for x in v] for k, v in data.items()}


def seeds_drawn(ledger: dict[str, list[int]]) -> set[int]:
    """Every seed a setting's ledger records, under any table fingerprint: a new table of the setting never draws
    them again, since an earlier table's held-out subnets may have been looked at when a rule was chosen."""
    return set().union(*ledger.values()) if ledger else set()


def fresh_heldout_configs(n: int, exclude: set[str], used: set[int]) -> list[tuple[int, ArchConfig]]:
    """``n`` held-out subnets from seeds never drawn before (``used``) whose configs are not in ``exclude``
    (the fitting data): a held-out subnet is never seen twice for the same table, so nobody can select on it."""
    out, seed = [], REPORT_SEED_BASE
    while len(out) < n:
        if seed not in used:
            cfg = TABLE1.sample(seed)
            if cfg.key() not in exclude and cfg.key() not in {c.key() for _, c in out}:
                out.append((seed, cfg))
        seed += 1
    return out


def heldout_configs(n: int, exclude: set[str]) -> list[tuple[int, ArchConfig]]:
    """The first ``n`` report subnets (seeded) whose keys are not in ``exclude`` (no freshness ledger)."""
    return fresh_heldout_configs(n, exclude, set())


def read_heldout(path: Path) -> pd.DataFrame:
    """The held-out rows at ``path`` (an empty frame when there are none): end-to-end columns checked as in any
    table, the ``table_fingerprint`` each was drawn for kept as text."""
    return tbl.read_csv_checked(path, tbl.E2E_REQUIRED, "arch_key", tbl.E2E_PAIRED, text=["table_fingerprint"])


def valid_heldout(rows: pd.DataFrame, fingerprint: str, now: float | None = None,
                  window_h: float = HELDOUT_WINDOW_H) -> pd.DataFrame:
    """The held-out rows still valid: drawn for this operator-table ``fingerprint``, measured less than
    ``window_h`` hours ago and under the current measurement protocol (``latency.measure.PROTOCOL``; rows
    without one are from protocol 1): a row of another table, an older window or another protocol has expired."""
    if not len(rows):
        return rows
    now = time.time() if now is None else now
    stamps = pd.to_datetime(rows["timestamp"], utc=True, errors="coerce")
    age_h = (now - stamps.map(lambda t: t.timestamp() if t == t else -math.inf)) / 3600.0
    protocol = pd.to_numeric(rows["protocol"], errors="coerce") if "protocol" in rows else pd.Series(1, rows.index)
    keep = (rows["table_fingerprint"].astype(str) == fingerprint) & (age_h <= window_h) & (protocol == PROTOCOL)
    return rows[keep].reset_index(drop=True)


def measure_heldout(setting: Setting, tables_dir: str, n: int, workers: int, batch: int, runs: int,
                    warmup: int, progress: bool, rounds: int = MIN_ROUNDS,
                    window_h: float = HELDOUT_WINDOW_H) -> pd.DataFrame:
    """Make sure ``n`` valid held-out rows exist and return them: expired rows (other table, older window, older
    protocol) are not used (they stay in the file, a record of what was measured), fresh subnets are drawn from seeds
    never drawn for this setting's folder (recorded in the ledger before they are measured) and timed with the
    paired protocol beside TopFormer-Tiny. Atomic write per batch."""
    from etf.progress import progress_bar

    size = setting.size
    dev = get_device(setting.device)
    e2e = tbl.read_e2e(tables_dir, setting)
    fp = tbl.ops_fingerprint(tables_dir, setting)
    path = heldout_path(tables_dir, setting)
    every = read_heldout(path)
    rows = valid_heldout(every, fp, window_h=window_h)
    if len(rows) >= n:
        return rows.head(n)
    ledger_path = seeds_path(tables_dir, setting)
    ledger = read_seed_ledger(ledger_path)
    used = seeds_drawn(ledger)
    todo = fresh_heldout_configs(n - len(rows), set(e2e["arch_key"]) | set(every["arch_key"]), used)
    ledger[fp] = sorted(set(ledger.get(fp, [])) | {s for s, _ in todo})
    tbl.write_json_atomic(ledger, ledger_path)  # drawn = used, even if the run stops before measuring them
    cache = str(cache_dir(tables_dir))
    ref_nominal = float(tbl.read_ops(tables_dir, setting)["ref_ms"].median())
    ctx = multiprocessing.get_context("spawn")
    bar = progress_bar(len(todo), "held-out subnets", enabled=progress, unit="net")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=ignore_sigint) as pool:
        ref_net = reference_network_path(cache, size, pool, head=setting.head, precision=setting.precision)
        for i in range(0, len(todo), batch):
            chunk = todo[i:i + batch]
            paths, _ = convert_networks([c for _, c in chunk], size, cache, pool, head=setting.head,
                                        precision=setting.precision)
            results = _time_paired(dev, paths, ref_net, setting, runs, warmup, rounds, tbl.fastest_reference_ms(e2e))
            new = pd.DataFrame([{**e2e_row(setting, s, c, res, ref_nominal, "heldout"), "table_fingerprint": fp, "protocol": PROTOCOL}
                                for (s, c), res in zip(chunk, results)], columns=HELDOUT_COLUMNS)
            rows = pd.concat([rows, new], ignore_index=True) if len(rows) else new
            every = pd.concat([every, new], ignore_index=True) if len(every) else new
            tbl.write_csv_atomic(every.reindex(columns=HELDOUT_COLUMNS), path)
            bar.update(len(chunk))
    bar.close()
    return rows


def _time_paired(dev: Any, paths: list[Path], ref: Path, setting: Setting, runs: int, warmup: int, rounds: int,
                 baseline_ms: float | None) -> list:
    """The report's protocol, one definition for the first measurement and the retest: ``runs`` split over
    ``rounds`` rounds beside the reference, more rounds up to ``MAX_ROUNDS`` while a ratio is uncertain."""
    return measure_paired(dev, paths, ref, rounds=rounds, runs=max(1, runs // rounds), warmup=warmup,
                          max_rounds=max(rounds, MAX_ROUNDS), threads=setting.threads, baseline_ms=baseline_ms)


def retime_heldout(setting: Setting, tables_dir: str, held: pd.DataFrame, runs: int, warmup: int, batch: int,
                   rounds: int = MIN_ROUNDS) -> np.ndarray:
    """Time already measured held-out subnets again, with the protocol they were measured with, and return their
    new paired ratios (nothing is written): how often a second measurement agrees with the first is the
    device's own ceiling for any predictor scored against one measurement (:func:`agreement`)."""
    cache = cache_dir(tables_dir)
    cfgs = [ArchConfig.from_json(j) for j in held["arch_json"]]
    paths = [network_path(cache, c, setting.size, setting.head, setting.precision) for c in cfgs]
    ref = reference_network_path(cache, setting.size, head=setting.head, precision=setting.precision)
    missing = sum(not p.exists() for p in paths + [ref])
    if missing:
        raise EtfError(f"{missing} converted held-out file(s) missing under {cache}: run etf-predictor-report first")
    dev = get_device(setting.device)
    baseline = tbl.fastest_reference_ms(tbl.read_e2e(tables_dir, setting))
    ratios: list[float] = []
    for i in range(0, len(paths), batch):
        ratios += [r.ratio for r in _time_paired(dev, paths[i:i + batch], ref, setting, runs, warmup, rounds, baseline)]
    return np.asarray(ratios, float)


def agreement(first: np.ndarray, second: np.ndarray) -> dict[str, float]:
    """How two measurements of the same networks agree: the share of second ratios within +-5% / +-10% of the
    first (the accuracy targets' own terms), the median and 90th percentile of the absolute difference and the
    median shift. With independent noise of equal size in each, one measurement's own noise is the difference
    over sqrt(2): ``ceiling_within_5_pct`` / ``_10_`` is the share of ``|difference| / sqrt(2)`` within 5% / 10%, an
    estimate of what a predictor that knew each network's true latency would score against one measurement."""
    first, second = np.asarray(first, float), np.asarray(second, float)
    rel = second / first - 1
    diff = np.abs(rel) * 100
    own = diff / math.sqrt(2)
    return {"n": int(len(diff)), "within_5_pct": float(np.mean(diff <= 5) * 100),
            "within_10_pct": float(np.mean(diff <= 10) * 100), "abs_diff_median_pct": float(np.median(diff)),
            "abs_diff_p90_pct": float(np.quantile(diff, 0.9)), "median_shift_pct": float(np.median(rel) * 100),
            "ceiling_within_5_pct": float(np.mean(own <= 5) * 100),
            "ceiling_within_10_pct": float(np.mean(own <= 10) * 100)}


def evaluate(pred, e2e: pd.DataFrame, held: pd.DataFrame, others: dict[str, Any] | None = None,
             plain: Any = None) -> dict[str, Any]:
    """Accuracy of the predictor and of the two baselines (and of ``others``: name -> another predictor of the
    same setting, e.g. one fitted on the setting's own operators) on the held-out rows. The plain-sum baseline
    sums ``plain``'s operators (default ``pred``'s; the setting's own when ``pred`` sums another setting's).

    ``raw`` compares with the latency as measured (the headline: the predictor is fitted on raw latencies);
    ``reference_normalised`` scales each measurement by (the reference when the table was fitted / the reference
    timed next to it): TopFormer-Tiny for paired rows, the reference operator for old tables; ``drift`` says how
    far that reference moved between the table's window and the report's; ``paired_ratio`` (ratio-mode predictors
    and held-out rows with ratios) compares predicted with measured ratios to the reference (each subnet's median of
    per-round ratios, the drift-robust measure the search's verdicts use), in ms of the table's frame, and the
    baselines as ratios to the reference's own FLOPs-line / operator-sum estimate.
    """
    fit = e2e[e2e["purpose"].isin(tbl.FIT_PURPOSES)]
    if len(fit) < 2:
        raise EtfError("the table has fewer than 2 end-to-end subnets to fit the correction and the FLOPs baseline; "
                       "run etf-profile with --e2e 8")
    a, b = np.polyfit(fit["flops"].to_numpy(float), fit["median_ms"].to_numpy(float), 1)
    cfgs = [ArchConfig.from_json(j) for j in held["arch_json"]]
    flops = np.array([model_size(c, pred.size).flops for c in cfgs], float)
    series = {"predictor": pred.predict_many(cfgs), "flops_linear": a * flops + b,
              "operator_sum": (plain or pred).operator_sum_many(cfgs)}
    ref_net = pd.to_numeric(held["ref_net_ms"], errors="coerce").to_numpy(float) if "ref_net_ms" in held else None
    if pred.mode == "ratio" and ref_net is not None and np.isfinite(ref_net).all():
        # reference-relative: each held-out subnet's predicted ratio x the reference timed beside it (its window)
        series["predictor"] = pred.predict_ratio_many(cfgs) * ref_net
        series["predictor_raw"] = np.asarray(pred.correction(pred.operator_sum_many(cfgs)), float)
    # predictions that followed the reference timed beside each subnet (scaled back below with the measurement)
    followed = {"predictor"} if "predictor_raw" in series else set()
    others = others or {}
    for name, other in others.items():
        if other.mode == "ratio" and ref_net is not None and np.isfinite(ref_net).all():
            series[name] = other.predict_ratio_many(cfgs) * ref_net
            followed.add(name)
        else:
            series[name] = other.predict_many(cfgs)
    raw = held["median_ms"].to_numpy(float)
    paired = pred.ref_current_ms is not None and ref_net is not None and np.isfinite(ref_net).all()
    if paired:  # the reference network timed beside each subnet vs its latency when the table was fitted
        table_ref, beside, reference = float(pred.ref_current_ms), ref_net, f"{REFERENCE_PRESET} (whole network)"
    else:  # old tables: the reference operator of the profile's batches
        table_ref, beside, reference = pred.ref_nominal, held["ref_ms"].to_numpy(float), "reference operator"
    measured = {"raw": raw, "reference_normalised": raw * table_ref / beside}
    # scaled to the table's window, a prediction that followed the reference beside it is scaled back as well
    normalised = {name: p * table_ref / beside if name in followed else p for name, p in series.items()}
    drift = {"reference": reference, "table_ref_ms": table_ref, "report_ref_ms": float(np.median(beside)),
             "change_pct": 100 * (float(np.median(beside)) / table_ref - 1)}
    per_basis = {"raw": series, "reference_normalised": normalised}
    ratio = pd.to_numeric(held["ratio"], errors="coerce").to_numpy(float) if "ratio" in held else None
    if pred.mode == "ratio" and paired and ratio is not None and np.isfinite(ratio).all():
        # the protocol's own measure: the median of per-round ratios to the reference, in the table's frame
        ref_cfg = PRESETS[REFERENCE_PRESET]
        ref_flops_ms = a * model_size(ref_cfg, pred.size).flops + b
        measured["paired_ratio"] = ratio * table_ref
        per_basis["paired_ratio"] = {"predictor": pred.predict_ratio_many(cfgs) * table_ref,
                                     "flops_linear": series["flops_linear"] / ref_flops_ms * table_ref,
                                     "operator_sum": series["operator_sum"] / (plain or pred).reference_sum()
                                     * table_ref}
        per_basis["paired_ratio"].update({name: other.predict_ratio_many(cfgs) * table_ref
                                          for name, other in others.items() if other.mode == "ratio"})
    return {"series": series, "measured": measured, "drift": drift,
            "metrics": {m: {name: accuracy(p, y) for name, p in per_basis[m].items()} for m, y in measured.items()},
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
