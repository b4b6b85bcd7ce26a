"""How much of an operator conversion is the converter's fixed cost per call? (issue 15: table cost)

Run: ``PYTHONPATH=. python benchmarks/bench_convert_cost.py TABLE.csv`` (a finished operator table). Converts a
trivial module (1x1 conv, 8 channels, 8x8) and the table's smallest operator, its median MBConv and its largest
transformer block 4 times each (litert-torch, as etf-profile does) and prints the median and fastest seconds: the
trivial module's time is the converter's fixed cost per call. Then converts 24 of the table's operators (seeded) with
torch's own CompositeImplicitAutograd scan and with etf's memo of it (``android_bench/export/cia_memo.py``) in
pairs, the order alternating, and checks that each pair's files are byte-identical.
"""
import statistics
import sys
import tempfile
import time

import torch
from pathlib import Path
import pandas as pd
from latency.operators import parse_key
from latency.export_op import export_operator
from android_bench.export.convert import export_tflite

if len(sys.argv) != 2:
    sys.exit("usage: PYTHONPATH=. python benchmarks/bench_convert_cost.py TABLE.csv")
rows = pd.read_csv(sys.argv[1])
small = rows.sort_values('median_ms').iloc[0]['key']; big = rows[rows.kind=='transformer'].sort_values('median_ms').iloc[-1]['key']
mid = rows[rows.kind=='mbconv'].sort_values('median_ms').iloc[len(rows[rows.kind=='mbconv'])//2]['key']
tmp = Path(tempfile.mkdtemp())
def t(fn, n=4):
    out = []
    for i in range(n):
        s = time.perf_counter(); fn(i); out.append(time.perf_counter() - s)
    return statistics.median(out), min(out)
tiny = torch.nn.Conv2d(8, 8, 1)
print('trivial 1x1 conv 8ch 8x8: median/min s', t(lambda i: export_tflite(tiny, (1, 8, 8, 8), tmp / f't{i}.tflite')))
for name, key in (('smallest op', small), ('median mbconv', mid), ('largest transformer', big)):
    op = parse_key(key)
    print(name, key[:60], t(lambda i: export_operator(op, tmp / f'{name[:3]}{i}.tflite')))

import android_bench.export.cia_memo as cia
import torch._export.utils as _u
memo = _u._collect_all_valid_cia_ops
scan = memo.__wrapped__


def use(fn):
    for name in cia._USERS:
        setattr(__import__(name, fromlist=[cia._NAME]), cia._NAME, fn)


timings = {"torch scan": [], "memo": []}
same = True
for i, key in enumerate(rows.sample(24, random_state=5)["key"]):  # pairs, the order alternating
    order = [("torch scan", scan), ("memo", memo)][:: 1 if i % 2 else -1]
    for label, fn in order:
        use(fn)
        s = time.perf_counter()
        export_operator(parse_key(key), tmp / f"{label[:4]}{i}.tflite")
        timings[label].append(time.perf_counter() - s)
    same = same and (tmp / f"torc{i}.tflite").read_bytes() == (tmp / f"memo{i}.tflite").read_bytes()
use(memo)
ratios = [m / t for m, t in zip(timings["memo"], timings["torch scan"])]
print(f"24 table operators, torch scan vs memo (pairs): {sum(timings['torch scan']):.1f} s vs "
      f"{sum(timings['memo']):.1f} s, median ratio {statistics.median(ratios):.2f}, byte-identical: {same}")
