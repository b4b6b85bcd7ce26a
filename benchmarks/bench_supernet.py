"""Forward time of the supernet's extremes and the TopFormer presets on this CPU, and extraction time.

Run: ``python benchmarks/bench_supernet.py [--size 512] [--repeats 5] [--threads 1]``. Prints a table.
Each row times the supernet with that subnet active and the extracted static model, interleaved, so
drift on a shared machine hits both alike; the median of ``--repeats`` runs after one warm-up is shown.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from supernet.model import TopFormerSupernet
from supernet.presets import PRESETS
from supernet.size import model_size
from supernet.space import TABLE1


def _time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net = TopFormerSupernet(num_classes=150).eval()
    x = torch.randn(1, 3, args.size, args.size)
    configs = {"min": TABLE1.min_config(), **PRESETS, "max": TABLE1.max_config()}
    print(f"input 1x3x{args.size}x{args.size}, {args.threads} thread(s), median of {args.repeats}")
    print(f"{'subnet':16s} {'params(M)':>9s} {'GFLOPs':>7s} {'supernet ms':>12s} {'static ms':>10s} {'extract ms':>11s}")
    with torch.no_grad():
        for name, cfg in configs.items():
            net.set_active_subnet(cfg)
            t0 = time.perf_counter()
            static = net.get_active_subnet()
            extract_ms = (time.perf_counter() - t0) * 1000
            sup = _time(lambda: net(x), args.repeats)
            sta = _time(lambda: static(x), args.repeats)
            rep = model_size(cfg, args.size)
            print(f"{name:16s} {rep.params / 1e6:9.3f} {rep.flops / 1e9:7.3f} {sup:12.1f} {sta:10.1f} {extract_ms:11.1f}")


if __name__ == "__main__":
    main()
