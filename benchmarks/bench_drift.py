"""Does the reference-relative predictor survive a drifting device? Held-out accuracy, raw vs ratio, quiet vs loaded.

Usage (a quiet machine; the numbers of a shared machine are contaminated):
  PYTHONPATH=. python benchmarks/bench_drift.py --device local --size 512 --tables tables --n-fit 12 --n-held 24
Smoke run (proves the script works; its numbers mean nothing):
  PYTHONPATH=. python benchmarks/bench_drift.py --size 64 --n-fit 4 --n-held 4 --rounds 2 --runs 2 --smoke

Random subnets are converted once, then measured with the paired protocol (latency/measure.py, each beside
TopFormer-Tiny) in two windows: QUIET, and LOADED while a subprocess loops LiteRT inference of TopFormer-Tiny pinned
to the other core. With a table, the headline rows are the setting's own predictor, fitted once on its table (as
it is used) and never on these subnets:
  predictor raw    = its correction of the operator sum              (latency as measured when profiled)
  predictor ratio  = its predicted ratio x the reference timed beside each subnet in that window
Then the same two schemes refitted on the fit subnets of the QUIET window (``--n-fit``; 0 skips them), evaluated on
the disjoint held-out subnets of each window:
  raw   = correction(operator sum)                         (latency as measured)
  ratio = ratio_correction(sum / reference sum) x the reference's median in the same window (timed beside them)
The base sum is the latency predictor's operator sum when ``--tables`` holds a table for the setting, else FLOPs
(``--smoke`` allows that: it compares the two correction schemes on the same base, not the predictor).
Prints one table: within +-5 % / +-10 % and MAPE per (window, scheme).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from latency import table as tbl
from latency.measure import REFERENCE_PRESET, measure_paired
from latency.networks import convert_networks, reference_network_path
from latency.predictor import Correction, accuracy, load_for_device
from latency.profile import get_device
from latency.setting import make_setting
from supernet.presets import PRESETS
from supernet.size import model_size
from supernet.space import TABLE1

COMPETITOR = """
import sys, numpy as np
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1], num_threads=1)
it.allocate_tensors()
d = it.get_input_details()[0]
it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
while True:
    it.invoke()
"""


def start_competitor(model: Path) -> subprocess.Popen:
    """A process looping LiteRT inference of ``model``, pinned to the last core when there are several."""
    def pin() -> None:
        n = os.cpu_count() or 1
        if n > 1 and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {n - 1})

    return subprocess.Popen([sys.executable, "-c", COMPETITOR, str(model)], preexec_fn=pin,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="local")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--tables", default="tables")
    ap.add_argument("--head", default="logits8", help="output head of the deployed networks (the setting's)")
    ap.add_argument("--threads", type=int, default=None, help="inference threads (default: the device's)")
    ap.add_argument("--n-fit", type=int, default=12)
    ap.add_argument("--n-held", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=90_000, help="first seed of the random subnets")
    ap.add_argument("--cache", default=None, help="network cache (default: a temporary folder)")
    ap.add_argument("--smoke", action="store_true", help="allow a FLOPs base when no table exists")
    args = ap.parse_args()

    setting = make_setting(args.device, args.size, args.threads, "fp32", args.head)
    have_table = tbl.ops_path(args.tables, setting).exists()
    if not have_table and not args.smoke:
        print(f"bench_drift: {tbl.missing_table_hint(args.tables, setting)} (or pass --smoke)", file=sys.stderr)
        return 2
    cfgs = [TABLE1.sample(args.seed + i) for i in range(args.n_fit + args.n_held)]
    ref_cfg = PRESETS[REFERENCE_PRESET]
    if have_table:
        pred = load_for_device(setting, args.tables)
        base, base_ref, base_name = pred.operator_sum_many(cfgs), pred.operator_sum(ref_cfg), "operator sum"
    else:
        base = np.array([model_size(c, args.size).flops for c in cfgs], float) / 1e9
        base_ref, base_name = model_size(ref_cfg, args.size).flops / 1e9, "GFLOPs (smoke: no table)"
    cache = args.cache or tempfile.mkdtemp(prefix="bench_drift_")
    t0 = time.monotonic()
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
        paths, _ = convert_networks(cfgs, args.size, cache, pool, head=args.head)
        ref = reference_network_path(cache, args.size, pool, head=args.head)
    conv_s = time.monotonic() - t0
    dev = get_device(args.device)
    windows = {}
    for window in ("quiet", "loaded"):
        comp = start_competitor(ref) if window == "loaded" else None
        try:
            if comp is not None:
                time.sleep(2.0)  # let the competitor reach its loop
            t0 = time.monotonic()
            windows[window] = (measure_paired(dev, paths, ref, rounds=args.rounds, runs=args.runs,
                                              warmup=args.warmup, threads=setting.threads), time.monotonic() - t0)
        finally:
            if comp is not None:
                comp.terminate()
                comp.wait(timeout=30)
    fit = slice(0, args.n_fit)
    held = slice(args.n_fit, None)
    quiet = windows["quiet"][0]
    refit = args.n_fit >= 2
    if refit:
        raw_corr = Correction.fit(base[fit], [r.raw_ms for r in quiet[fit]])
        ratio_corr = Correction.fit(base[fit] / base_ref, [r.ratio for r in quiet[fit]])
    print(f"bench_drift: {setting.describe()}, base = {base_name}, reference {REFERENCE_PRESET}; "
          f"fit on {args.n_fit} subnets of the quiet window, held-out {args.n_held} (seeds {args.seed}+); "
          f"{args.rounds} rounds x {args.runs} runs; conversion {conv_s:.0f} s")
    print(f"command: {' '.join(sys.argv)}")
    print(f"{'window':<8}{'ref ms':>8}{'scheme':>11}{'±5 %':>7}{'±10 %':>7}{'MAPE %':>8}{'wall s':>8}")
    for window, (res, wall) in windows.items():
        measured = np.array([r.raw_ms for r in res[held]])
        ref_beside = np.array([r.ref_ms for r in res[held]])
        preds = {}
        if have_table:
            preds["pred raw"] = np.asarray(pred.correction(base[held]), float)
            if pred.ratio_correction is not None:
                preds["pred ratio"] = pred.predict_ratio_many(cfgs[args.n_fit:]) * ref_beside
        if refit:
            preds["raw"] = np.asarray(raw_corr(base[held]), float)
            preds["ratio"] = np.asarray(ratio_corr(base[held] / base_ref), float) * ref_beside
        for scheme, p in preds.items():
            m = accuracy(p, measured)
            print(f"{window:<8}{np.median(ref_beside):>8.2f}{scheme:>11}{m['within_5_pct']:>7.0f}"
                  f"{m['within_10_pct']:>7.0f}{m['mape_pct']:>8.1f}{wall:>8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
