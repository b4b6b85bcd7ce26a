"""How much of an operator conversion is the converter's fixed cost per call? (issue 15: table cost)

Run: ``PYTHONPATH=. python benchmarks/bench_convert_cost.py TABLE.csv`` (a finished operator table). Converts a
trivial module (1x1 conv, 8 channels, 8x8) and the table's smallest operator, its median MBConv and its largest
transformer block 4 times each (litert-torch, as etf-profile does) and prints the median and fastest seconds: the
trivial module's time is the converter's fixed cost per call.
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
