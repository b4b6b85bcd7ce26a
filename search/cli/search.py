"""``etf-search``: find the most accurate subnet under a latency (or FLOPs) target on one device.

Examples:
    etf-search --target-ms 76 --device local --supernet runs/supernet.pt --data data/synthetic \\
        --dataset synthetic -o out/search                       # block coordinate descent, <= 200 evaluations
    etf-search --target-ms 76 --algo cd --budget 200 ... -o out/cd           # plain coordinate descent
    etf-search --target-gflops 1.0 --no-export --supernet ... --data ... -o out/flops
    etf-search --target-ms 40 --head labels --threads 2 ... -o out/labels  # the app's label map, 2 threads
    etf-space show out/search/best.json                         # the winner, as any other config
    torchrun --nproc_per_node 8 -m search.cli.search --target-ms 76 ... -o out/ade   # images sharded over GPUs

Writes DIR/best.json, DIR/search_log.csv (one row per evaluation; rerun the same command to resume a killed
search), DIR/pareto.png, DIR/summary.json and, unless --no-export, DIR/model.tflite re-benchmarked on the device.
--target-ms holds in one setting: --device, --size, --threads, --precision and --head (the deployed model's
output: logits8 = logits at 1/8, the default; labels = int32 label map at the input size; logits = full-resolution
logits). The predictor is that setting's table's, the winner is exported with that head and timed with those
threads, and summary.json records the setting.

Held-out numbers: the validation images are split once, by a seeded hash of their ids, into a search split (the
accuracy signal the search selects on) and a report split it never sees (--report-fraction, --split-seed; the ids
are recorded in DIR/search_meta.json). The winner and the presets are re-scored on the report split and printed
with a 95% paired bootstrap interval on winner - preset: quote those, not the search's own (optimistic) score.

Under torchrun every rank runs the same search on its share of the validation images (confusion matrices are
all-reduced, so every rank sees the same mIoU); rank 0 writes the files, exports and measures the winner.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from etf.args import (Parser, add_verbose, any_int, device_name, existing_dir, existing_file, nonneg_int, output_dir,
                      positive_float, positive_int, rule, text)
from etf.common import EtfError, cli_entry
from etf.quiet import set_verbose
from supernet.space import load_config
from supernet.trace import check_deploy_size, deploy_multiple

from latency.setting import add_setting_arguments
from search.algorithms import ALGORITHMS
from search.coordinate_descent import ORDERS
from search.pipeline import SearchJob, run_job


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="etf-search", allow_abbrev=False,
        description="Latency-constrained search over the TopFormer space: the accuracy signal is the trained "
                    "supernet's mIoU after BN recalibration on a search subset (cached per config), the constraint "
                    "is the device's fitted latency predictor (instant) or analytic GFLOPs.",
        epilog="examples:" + __doc__.split("Examples:")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-ms", type=positive_float, metavar="MS", help="predicted latency limit on --device (ms)")
    target.add_argument("--target-gflops", type=positive_float, metavar="G", help="analytic GFLOPs limit at --size instead")
    p.add_argument("--device", default="local", type=device_name, help="device name for the predictor and the re-benchmark "
                   "(see etf-devices) [local]")
    p.add_argument("--supernet", type=existing_file, metavar="CKPT", help="trained supernet checkpoint (etf-train)")
    p.add_argument("--data", type=existing_dir, metavar="PATH", help="dataset folder for the accuracy signal")
    p.add_argument("--dataset", default="synthetic", choices=("synthetic", "ade20k", "cocostuff"),
                   help="dataset kind [synthetic]")
    p.add_argument("--algo", default="cd-block", choices=ALGORITHMS,
                   help="cd-block: coordinate descent alternating the whole CNN and the whole ViT part, as the "
                        "Efficient-TopFormer study did; cd: one sweep over all coordinates; random: rejection "
                        "sampling; evo: evolution (OFA-style). cd-block tied cd at 60 evaluations and beat it by "
                        "1.3 mIoU points at 200 (search/RESULTS.md) [cd-block]")
    p.add_argument("--order", default="space", choices=ORDERS,
                   help="cd sweep order: the space's (each stage: width, depth, its blocks), coarse-first "
                        "(all stage-level coordinates, then per-block kernels/expansions) or shuffled (a --seed "
                        "permutation of each group) [space]")
    p.add_argument("--no-anchors", action="store_true",
                   help="cd/cd-block: start from the largest preset that meets the target, without first evaluating "
                        "the other feasible presets and the min config (default: start from the most accurate of them)")
    p.add_argument("--budget", type=nonneg_int, default=200, metavar="N",
                   help="max distinct accuracy evaluations; 0 = until converged (cd/cd-block). cd-block converged "
                        "in 124 on the demo's supernet; use --minutes as well when one evaluation is slow [200]")
    p.add_argument("--minutes", type=positive_float, metavar="M", help="wall-clock budget in minutes as well (optional)")
    p.add_argument("--seed", type=any_int, default=0, help="seed of random/evo (cd is deterministic) [0]")
    p.add_argument("--size", type=rule(check_deploy_size), default=512,
                   help=f"input side of the deployed model, a multiple of {deploy_multiple()}: predictor table, FLOPs, "
                   "export and benchmark [512]")
    p.add_argument("--eval-size", type=positive_int, default=64, help="image side for the accuracy evaluation [64]")
    p.add_argument("--n-calib", type=positive_int, default=4, help="BN recalibration batches of --batch training crops [4]")
    p.add_argument("--n-val", type=positive_int, default=32, help="images of the validation set's search split scored "
                   "per config [32]")
    p.add_argument("--report-fraction", type=float, default=0.5, metavar="F",
                   help="share of the validation images held out as the report split, never seen by the search [0.5]")
    p.add_argument("--split-seed", type=any_int, default=0, help="seed of the search/report split of the images [0]")
    p.add_argument("--n-report", type=positive_int, metavar="N", help="report-split images for the held-out "
                   "comparison [all]")
    p.add_argument("--bootstrap", type=positive_int, default=1000, metavar="B",
                   help="bootstrap resamples of the interval on report-split differences [1000]")
    p.add_argument("--batch", type=positive_int, default=16, help="evaluation batch size [16]")
    p.add_argument("--tables", type=existing_dir, default=Path("tables"), help="latency tables folder (etf-profile) [tables]")
    p.add_argument("--predictor", type=existing_file, help="a saved latency predictor instead of --tables")
    p.add_argument("--start", metavar="ARCH", type=rule(load_config, text), help="start config for cd (preset or JSON); default: the largest "
                   "preset that meets the target")
    p.add_argument("--no-presets", action="store_true", help="do not evaluate the presets that fit as references")
    p.add_argument("--no-export", action="store_true", help="stop after the search (no TFLite, no re-benchmark)")
    p.add_argument("--refine", type=nonneg_int, default=2, metavar="N",
                   help="the exported winner is timed beside TopFormer-Tiny (paired protocol) and recorded in the "
                        "setting's end-to-end table (purpose 'winner'); when it measures outside +-5%% of "
                        "--target-ms, search again with the predictor refitted on it (evaluated configs are "
                        "replayed from the log), at most N times; summary.json 'refine_stop' says why it "
                        "stopped; 0: record only. Every search of the job scales the networks the table has not "
                        "measured by the mean miss of the winners it has (refinements[].winner_scale) [2]")
    p.add_argument("--no-fill", action="store_true",
                   help="a winner measured more than 5%% under --target-ms ends the refinement when the predictor "
                        "was right about it (the most accurate config found, wherever it lands); by default the "
                        "refinement searches again within [97.5%%, 100%%] of the target, from the winner grown into "
                        "that band, so the latency paid for is used (a first winner already predicted more than 5%% "
                        "under it is grown into the band before it is timed, so no refinement round is spent on it)")
    p.add_argument("--runs", type=positive_int, default=30,
                   help="timed runs of the re-benchmark, split over 3 paired rounds [30]")
    p.add_argument("--warmup", type=nonneg_int, default=5, help="warm-up runs of the re-benchmark [5]")
    add_setting_arguments(p, threads_help="inference threads of the predictor's table and the re-benchmark "
                                          "(default: the device's setting)")
    p.add_argument("-o", "--out", type=output_dir, required=True, metavar="DIR", help="output folder (resumable)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_verbose(p)
    return p


@cli_entry("etf-search")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_verbose(args.verbose)
    if not 0 < args.report_fraction < 1:
        raise EtfError(f"--report-fraction must be between 0 and 1 (exclusive), not {args.report_fraction:g}")
    unit = "ms" if args.target_ms is not None else "GFLOPs"
    job = SearchJob(
        out=args.out, target=args.target_ms if unit == "ms" else args.target_gflops, unit=unit, algo=args.algo, order=args.order, anchors=not args.no_anchors,
        budget=args.budget or None, minutes=args.minutes, seed=args.seed, device=args.device, tables=args.tables,
        predictor=args.predictor, supernet=args.supernet, data=args.data, dataset=args.dataset,
        eval_size=args.eval_size, n_calib=args.n_calib, n_val=args.n_val, batch=args.batch, size=args.size,
        export=not args.no_export, runs=args.runs, warmup=args.warmup, threads=args.threads, start=args.start,
        evaluate_presets=not args.no_presets, refine=args.refine, fill=not args.no_fill, report_fraction=args.report_fraction,
        split_seed=args.split_seed, n_report=args.n_report, bootstrap=args.bootstrap, head=args.head,
        precision=args.precision)
    say = (lambda s: print(s, file=sys.stderr)) if args.json else print
    summary = run_job(job, say=say, progress=not args.quiet)
    if args.json and int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))  # under torchrun only rank 0 prints
    return 0


if __name__ == "__main__":
    sys.exit(main())
