"""Where an operator conversion's time goes, and what etf saves of it (issue 15: table cost)

Run: ``PYTHONPATH=. python benchmarks/bench_convert_cost.py TABLE.csv`` (a finished operator table). Converts a
trivial module (1x1 conv, 8 channels, 8x8) and the table's smallest operator, its median MBConv and its largest
transformer block 4 times each (litert-torch, as etf-profile does) and prints the median and fastest seconds: the
trivial module's time is the converter's fixed cost per call. Then converts 24 of the table's operators (seeded) with
torch's own CompositeImplicitAutograd scan and with etf's memo of it (``android_bench/export/cia_memo.py``) in
pairs, the order alternating, and checks that each pair's files are byte-identical. Last, the same sample (its
single-input operators) and TopFormer-Tiny / -Small at 512 px converted with and without BatchNorm folding
(``android_bench/export/fold.py``) in alternating pairs, checking that both files have the same operators and outputs.
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

# BatchNorm folding (android_bench/export/fold.py): the same 24-operator sample and TopFormer-Tiny / -Small at 512 px,
# each converted with and without folding in pairs, the order alternating; same operator list and outputs?
import android_bench.export.convert as convert
import android_bench.export.fold as fold
import numpy as np
from android_bench.export.deploy import build_deployed_model
from android_bench.export.oplist import op_counts, tflite_ops
from android_bench.litert_runner import TfliteRunner
from supernet.presets import PRESETS

folding = fold.fold_batchnorms_


def folded(on: bool) -> None:
    fn = folding if on else (lambda module: 0)
    convert.fold_batchnorms_ = fold.fold_batchnorms_ = fn


def same_file(a: Path, b: Path, shape: tuple[int, ...]) -> bool:
    if op_counts(tflite_ops(a)) != op_counts(tflite_ops(b)):
        return False
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    ya, yb = TfliteRunner(a)(x), TfliteRunner(b)(x)
    return bool(np.allclose(ya, yb, atol=1e-5 * float(np.abs(yb).max())))


def pair(i: int, convert_one, shape) -> tuple[float, float, bool]:
    secs = {}
    for on in ([True, False] if i % 2 else [False, True]):
        folded(on)
        s = time.perf_counter()
        convert_one(tmp / f"fold{on}{i}.tflite")
        secs[on] = time.perf_counter() - s
    folded(True)
    return secs[False], secs[True], same_file(tmp / f"foldFalse{i}.tflite", tmp / f"foldTrue{i}.tflite", shape)


ops = []
for i, key in enumerate(rows.sample(24, random_state=5)["key"]):
    op = parse_key(key)
    shapes = op.input_shapes()
    if len(shapes) == 1:
        n, c, h, w = shapes[0]
        ops.append(pair(i, lambda p, op=op: export_operator(op, p), (n, h, w, c)))
plain, fast = sum(o[0] for o in ops), sum(o[1] for o in ops)
print(f"{len(ops)} single-input table operators, unfolded vs folded (pairs): {plain:.1f} s vs {fast:.1f} s, median "
      f"ratio {statistics.median(o[1] / o[0] for o in ops):.2f}, same operators and outputs: {all(o[2] for o in ops)}")
for j, name in enumerate(("topformer-tiny", "topformer-small")):
    model = build_deployed_model(PRESETS[name], num_classes=150)[0]
    for k in range(2):
        u, f, ok = pair(100 + 2 * j + k, lambda p, m=model: export_tflite(m, (1, 3, 512, 512), p), (1, 512, 512, 3))
        print(f"{name} 512 px, pair {k + 1}: unfolded {u:.1f} s, folded {f:.1f} s, same operators and outputs: {ok}")
