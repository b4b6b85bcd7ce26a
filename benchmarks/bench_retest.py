"""Test-retest of the paired protocol's per-visit estimator: each visit's median vs its fastest run.

Usage (a profiled 512 px table with its held-out rows; a quiet machine):
  PYTHONPATH=. python benchmarks/bench_retest.py TABLES THREADS PRECISION ROUNDS RUNS_PER_VISIT
The table's correction subnets and held-out subnets (already converted in TABLES/cache) are measured twice in a
row with the paired protocol; prints, per estimator, how much a subnet's two ratios differ (median and 90th
percentile) and, for information, a ratio correction fitted on the first pass's correction subnets scored on
the held-out subnets of each pass. The first number is the criterion (it involves no predictor).
"""
import json
import statistics
import sys
import time

import numpy as np
import pandas as pd

from latency import table as tbl
from latency.measure import round_sequence
from latency.networks import network_path, reference_network_path
from latency.predictor import Correction, accuracy, load_for_device
from latency.profile import get_device
from latency.setting import Setting
from supernet.space import ArchConfig

tables, threads, precision = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rounds, runs = int(sys.argv[4]), int(sys.argv[5])
st = Setting("local", 512, threads, precision, "logits8")
pred = load_for_device(st, tables)
e2e = tbl.read_e2e(tables, st); e2e = e2e[e2e.purpose == "correction"]
held = pd.read_csv(tbl.table_stem(tables, st).with_suffix(".heldout.csv"))
cfgs = [ArchConfig.from_json(j) for j in list(e2e.arch_json) + list(held.arch_json)]
cache = f"{tables}/cache"
paths = [network_path(cache, c, 512, "logits8", precision) for c in cfgs]
assert all(p.exists() for p in paths)
ref = reference_network_path(cache, 512, head="logits8", precision=precision)
dev = get_device("local")
n = len(paths)
def measure():
    per = {"median": [[] for _ in range(n)], "min": [[] for _ in range(n)]}
    refs = {"median": [], "min": []}
    allp = [ref] + paths
    for r in range(rounds):
        seq = round_sequence(n, r)
        stats = dev.benchmark_many([allp[i] for i in seq], runs=runs, warmup=2, threads=threads, cooldown_s=0.0)
        for est in ("median", "min"):
            t = [getattr(s, f"{est}_ms") for s in stats]
            refs[est] += [x for i, x in zip(seq, t) if i == 0]
            for pos in range(1, len(seq), 2):
                per[est][seq[pos] - 1].append(t[pos] / ((t[pos - 1] + t[pos + 1]) / 2))
    return {est: np.array([statistics.median(v) for v in per[est]]) for est in per}, {e: float(np.median(v)) for e, v in refs.items()}
t0 = time.time(); A, refA = measure(); B, refB = measure(); wall = time.time() - t0
ne = len(e2e)
sums = pred.operator_sum_many(cfgs) / pred.ref_sum
out = {"setting": st.describe(), "rounds": rounds, "runs": runs, "wall_s": round(wall), "n_e2e": ne, "n_held": n - ne, "ref": [refA, refB]}
for est in ("median", "min"):
    rt = np.abs(A[est] / B[est] - 1)
    row = {"retest_median_pct": 100 * float(np.median(rt)), "retest_p90_pct": 100 * float(np.quantile(rt, 0.9))}
    for fit_on, test_on in (("A", "B"), ("A", "A")):
        F, T = (A if fit_on == "A" else B)[est], (A if test_on == "A" else B)[est]
        corr = Correction.fit(sums[:ne], F[:ne])
        m = accuracy(corr(sums[ne:]), T[ne:])
        row[f"fit{fit_on}_test{test_on}"] = {k: round(m[k], 2) for k in ("mape_pct", "within_5_pct", "within_10_pct", "kendall_tau")}
    out[est] = row
print(json.dumps(out, indent=1))
