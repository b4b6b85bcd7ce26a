"""Search algorithms at equal evaluation budget: cd vs cd-block vs random vs evo, several seeds (issue 6).

Same trained supernet, same accuracy signal (supernet mIoU after BN recalibration on the validation set's search
split), same latency predictor and target for every run. Every winner is then re-scored on the held-out report
split the searches never saw. Prints, per algorithm: the winners' report-split mIoU (mean, std, min..max over
seeds), the difference from the --reference variant's winner (first seed, 95% paired bootstrap interval over the
report images), evaluations-to-best,
predicted latency of the winner, and the search cost split (accuracy evaluations vs predictor calls, predictor
configs/s). Accuracy values are shared between runs through one log (a config is computed once; each run is
charged the measured cost of every config it evaluated, so the cost split stays honest). Resumable.

    # after `python -m search.demo` (trained supernet, reduced local table at 256 px):
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_search.py --supernet runs/demo/train/last.pt \
        --data runs/demo/data --dataset synthetic --device local --tables runs/demo/tables --size 256 \
        --eval-size 64 --n-calib 4 --n-val 32 --batch 8 --budget 60 \
        --algos cd cd+anchors cd-block+anchors cd+anchors@coarse-first random evo -o runs/bench_search

Variants: ``cd`` starts from the largest feasible preset; ``+anchors`` (etf-search's default) first evaluates the
feasible presets and the min config and starts from the most accurate; ``@coarse-first`` sweeps stage-level
coordinates before per-block kernels/expansions; ``@shuffled`` sweeps them in a seeded random order. cd and
cd-block in the space's or coarse-first order are deterministic (the seeds only repeat them, and the table says
so); ``@shuffled`` makes the seed change the coordinate order, so their spread over seeds is a spread. For a
spread over the supernet's own training, run the benchmark on supernets trained with different ``etf-train --seed``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etf.common import EtfError, atomic_write_json, cli_entry  # noqa: E402
from supernet.presets import PRESETS  # noqa: E402
from supernet.space import TABLE1  # noqa: E402

from search import pieces  # noqa: E402
from search.algorithms import ALGORITHMS, run_search  # noqa: E402
from search.log import SearchLog, run_id  # noqa: E402
from search.objective import Budget  # noqa: E402
from search.report import ReportScorer, fmt_diff  # noqa: E402

VARIANTS = (*ALGORITHMS, "cd@coarse-first", "cd-block@coarse-first", "cd+anchors", "cd+anchors@coarse-first",
            "cd-block+anchors", "cd@shuffled", "cd-block@shuffled", "cd+anchors@shuffled", "cd-block+anchors@shuffled")


def deterministic(variant: str) -> bool:
    """cd / cd-block in the space's or coarse-first order ignore the seed (random, evo and @shuffled do not)."""
    name, _, order = variant.partition("@")
    return name.partition("+anchors")[0] in ("cd", "cd-block") and order != "shuffled"


def predictor_throughput(latency_fn, n: int = 2000, seed: int = 0) -> dict[str, float]:
    """Configs/s of the predictor: one batched call over ``n`` random configs, and ``n // 10`` single calls."""
    cfgs = [TABLE1.sample(seed * 100_000 + i) for i in range(n)]
    t = time.perf_counter()
    latency_fn(cfgs)
    batched = n / (time.perf_counter() - t)
    m = max(1, n // 10)
    t = time.perf_counter()
    for c in cfgs[:m]:
        latency_fn([c])
    single = m / (time.perf_counter() - t)
    return {"batched_configs_per_s": batched, "single_calls_per_s": single}


def _fmt(xs: list[float], digits: int = 2) -> str:
    if len(xs) == 1:
        return f"{xs[0]:.{digits}f}"
    return f"{statistics.mean(xs):.{digits}f} ± {statistics.stdev(xs):.{digits}f}"


@cli_entry("bench_search")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    p.add_argument("--supernet", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--device", default="local")
    p.add_argument("--tables", type=Path, default=Path("tables"))
    p.add_argument("--predictor", type=Path)
    p.add_argument("--size", type=int, default=512, help="deployed input side of the predictor")
    p.add_argument("--threads", type=int, default=None, help="threads of the predictor's setting (device default)")
    p.add_argument("--precision", default="fp32", help="precision of the predictor's setting [fp32]")
    p.add_argument("--head", default="logits8", help="output head of the predictor's setting [logits8]")
    p.add_argument("--eval-size", type=int, default=64)
    p.add_argument("--n-calib", type=int, default=4, help="BN recalibration batches of --batch crops")
    p.add_argument("--n-val", type=int, default=32, help="search-split images scored per config")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--report-fraction", type=float, default=0.5, help="share of val images held out for reporting")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--n-report", type=int, help="report-split images (default all)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the difference interval")
    p.add_argument("--reference", help="variant the others are compared with [the first of --algos]")
    p.add_argument("--target-ms", type=float, help="default: halfway between predicted TopFormer-Tiny and -Small")
    p.add_argument("--budget", type=int, default=40)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--algos", nargs="+", default=list(VARIANTS), choices=VARIANTS,
                   help="search variants; ALGO@coarse-first sweeps stage-level coordinates before per-block ones; "
                        "cd+anchors starts from the most accurate feasible preset / min config")
    p.add_argument("-o", "--out", type=Path, default=Path("runs/bench_search"))
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from latency.setting import make_setting

    setting = make_setting(args.device, args.size, args.threads, args.precision, args.head)
    predictor = pieces.load_predictor(setting, args.tables, args.predictor)
    latency_fn = pieces.predictor_latency_fn(predictor)
    if args.reference is not None and args.reference not in args.algos:
        raise EtfError(f"--reference {args.reference} is not one of --algos")
    reference = args.reference or args.algos[0]
    evaluator = pieces.load_evaluator(args.supernet, args.data, args.dataset, args.eval_size, args.n_calib,
                                      args.n_val, args.batch, args.report_fraction, args.split_seed)
    reporter = pieces.load_report_evaluator(evaluator, args.data, args.dataset, args.eval_size, args.n_report,
                                            args.batch, args.report_fraction, args.split_seed)
    tiny, small = (float(v) for v in latency_fn([PRESETS["topformer-tiny"], PRESETS["topformer-small"]]))
    target = args.target_ms if args.target_ms is not None else (tiny + small) / 2
    if target <= 0:
        raise EtfError("--target-ms must be positive")
    args.out.mkdir(parents=True, exist_ok=True)
    log = SearchLog(args.out / "search_log.csv")
    cost = {r.key: r.eval_s for r in log.rows if not r.cached}  # measured seconds of each computed config
    memo = log.cache()

    def accuracy(cfg):
        t = time.perf_counter()
        acc = float(evaluator.evaluate(cfg))
        cost[cfg.key()] = time.perf_counter() - t
        return acc

    print(f"# predicted: TopFormer-Tiny {tiny:.2f} ms, -Small {small:.2f} ms; target {target:.2f} ms; "
          f"budget {args.budget} evaluations; seeds {args.seeds}", file=sys.stderr)
    runs = []
    for algo in args.algos:
        for seed in args.seeds:
            t0 = time.perf_counter()
            name, _, order = algo.partition("@")
            name, plus, _ = name.partition("+anchors")
            res = run_search(name, accuracy, latency_fn, target, budget=Budget(args.budget), seed=seed,
                             order=order or "space", anchors=bool(plus), cache=memo, on_evaluate=log.writer(run_id(algo, target, "ms", seed, args.budget),
                                                                 lambda c: float(latency_fn([c])[0])))
            memo.update({r.key: r.accuracy for r in res.records})
            acc_cost = sum(cost.get(r.key, 0.0) for r in res.records)
            runs.append({"algo": algo, "seed": seed, "best_accuracy": res.best_accuracy, "best": res.best,
                         "best_latency_ms": res.best_latency, "evaluations": res.evaluations,
                         "evals_to_best": res.evals_to_best, "stop": res.stop_reason, "best_key": res.best.key(),
                         "accuracy_cost_s": acc_cost, "predictor_s": res.predictor_seconds,
                         "predictor_calls": res.predictor_calls, "fresh_evals": res.fresh_evaluations,
                         "wall_s": time.perf_counter() - t0})
            print(f"  {algo:21s} seed {seed}: best {res.best_accuracy:.2f} % at {res.best_latency:.2f} ms, "
                  f"{res.evaluations} evals (best at {res.evals_to_best}), stop={res.stop_reason}, "
                  f"{res.fresh_evaluations} computed now", file=sys.stderr)
    thr = predictor_throughput(latency_fn)
    # held-out: every winner re-scored on the report split; differences paired over the same report images
    scorer = ReportScorer(reporter, args.bootstrap, 0)
    ref_best = next(r["best"] for r in runs if r["algo"] == reference and r["seed"] == args.seeds[0])
    for r in runs:
        best = r.pop("best")
        r["report_miou"] = scorer.miou(best)
        if r["seed"] == args.seeds[0]:
            r["report_minus_reference"] = scorer.difference(best, ref_best)
    table = []
    for algo in args.algos:
        rs = [r for r in runs if r["algo"] == algo]
        acc = [r["report_miou"] for r in rs]
        search_acc = [r["best_accuracy"] for r in rs]
        table.append({
            "algo": algo, "seeds": len(rs), "search_miou_mean": statistics.mean(search_acc),
            "vs_reference": rs[0]["report_minus_reference"], "best_miou_mean": statistics.mean(acc),
            "best_miou_std": statistics.stdev(acc) if len(acc) > 1 else 0.0, "best_miou_min": min(acc),
            "best_miou_max": max(acc), "evals_to_best": _fmt([r["evals_to_best"] for r in rs], 1),
            "best_pred_ms": _fmt([r["best_latency_ms"] for r in rs]),
            "accuracy_s_per_run": statistics.mean(r["accuracy_cost_s"] for r in rs),
            "predictor_s_per_run": statistics.mean(r["predictor_s"] for r in rs),
            "predictor_calls_per_run": statistics.mean(r["predictor_calls"] for r in rs),
            "deterministic": deterministic(algo),
        })
    out = sys.stderr if args.json else sys.stdout  # --json: stdout is one JSON object, the table goes to stderr
    print(f"\nsearch at {target:.2f} ms predicted ({setting.describe()}), budget {args.budget} "
          f"evaluations, seeds {args.seeds}; selection on supernet mIoU % on {args.dataset}'s search split "
          f"({evaluator.images} val images at {args.eval_size}px after BN recalibration on {args.n_calib}x{args.batch} "
          f"crops); mIoU below = the winners re-scored on the held-out report split ({reporter.images} images); "
          f"'vs {reference}' = winner - {reference}'s winner, seed {args.seeds[0]}, points [95% paired bootstrap "
          f"interval over the report images, {args.bootstrap} resamples]", file=out)
    head = (f"{'algo':28s} {'report mIoU mean ± std':>15s} {'min..max':>13s} {'vs ' + reference + ' [95% CI]':>30s} "
            f"{'evals-to-best':>14s} {'pred ms':>14s} {'acc-eval s/run':>14s} {'pred s/run':>10s} "
            f"{'pred calls/run':>14s}")
    print(head, file=out)
    print("(det.) = deterministic variant: every seed repeats the same run, so its ± is 0 by construction, not a "
          "measured spread; @shuffled variants vary the coordinate order with the seed", file=out)
    for row in table:
        label = row["algo"] + (" (det.)" if row["deterministic"] else "")
        print(f"{label:28s} {row['best_miou_mean']:7.2f} ± {row['best_miou_std']:5.2f} "
              f"{row['best_miou_min']:6.2f}..{row['best_miou_max']:<6.2f} {fmt_diff(row['vs_reference']):>30s} "
              f"{row['evals_to_best']:>14s} "
              f"{row['best_pred_ms']:>14s} {row['accuracy_s_per_run']:14.1f} {row['predictor_s_per_run']:10.3f} "
              f"{row['predictor_calls_per_run']:14.0f}", file=out)
    print(f"predictor: {thr['batched_configs_per_s']:,.0f} configs/s batched, {thr['single_calls_per_s']:,.0f} "
          f"single-config calls/s; mean accuracy evaluation "
          f"{np.mean(list(cost.values())) if cost else float('nan'):.2f} s/config", file=out)
    result = {"target_ms": target, "pred_tiny_ms": tiny, "pred_small_ms": small, "budget": args.budget,
              "seeds": args.seeds, "table": table, "runs": runs, "predictor_throughput": thr}
    atomic_write_json(args.out / f"bench_search_budget{args.budget}.json", result)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
