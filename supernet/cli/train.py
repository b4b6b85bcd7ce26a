"""``etf-train``: weight-sharing training of the TopFormer supernet (the library is ``supernet.training``).

Runs on one CPU or under ``torchrun --nproc_per_node N -m supernet.cli.train ...`` on many processes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from etf.args import (Parser, any_int, crop_side, existing_dir, existing_file, given_options, nonneg_float,
                      nonneg_int, output_dir, positive_float, positive_int, torch_device)
from etf.common import cli_entry
from supernet.data.datasets import DATASET_NAMES
from supernet.training.train import BASE_BATCH, BASE_LR, TrainConfig, train




# ---------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="etf-train", allow_abbrev=False,
        description="Train the weight-sharing TopFormer supernet with the sandwich rule (max subnet on labels; "
                    "min and random subnets distilled from the max subnet). Writes OUT/last.pt (resumable "
                    "checkpoint) and OUT/log.csv (iter, loss_max, loss_min, loss_rand, lr, time).",
        epilog="Examples:\n"
               "  etf-make-synthetic -o data/syn && etf-train --data data/syn --dataset synthetic --size 64 "
               "--iters 200 --lr 2e-3 -o runs/syn\n"
               "  etf-train ... -o runs/syn --resume            # continue after Ctrl-C or a crash\n"
               "  torchrun --nproc_per_node 8 -m supernet.cli.train --data ADEChallengeData2016 --dataset ade20k "
               "--batch 2 --iters 160000 -o runs/ade\n"
               "Ctrl-C saves a checkpoint after the current step; --resume continues bit-for-bit.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, type=existing_dir, help="dataset root folder (ADE20K layout: images/ and annotations/)")
    p.add_argument("--dataset", required=True, choices=DATASET_NAMES, help="which dataset the folder holds")
    p.add_argument("-o", "--out", required=True, type=output_dir, help="run folder for last.pt and log.csv")
    p.add_argument("--iters", type=positive_int, default=1000, help="total optimiser steps (default 1000; TopFormer: 160000)")
    p.add_argument("--batch", type=positive_int, default=8, help="images per process per step (default 8)")
    p.add_argument("--size", type=crop_side, default=512, help="training crop side in pixels (default 512)")
    p.add_argument("--lr", type=positive_float, default=None,
                   help=f"peak learning rate (default {BASE_LR:g} x total batch / {BASE_BATCH}, TopFormer's rule; "
                        "short CPU runs want ~1e-3)")
    p.add_argument("--weight-decay", type=nonneg_float, default=0.01, help="AdamW weight decay (default 0.01)")
    p.add_argument("--warmup-iters", type=nonneg_int, default=None, help="linear warm-up steps (default min(1500, iters/10))")
    p.add_argument("--head-lr-mult", type=positive_float, default=10.0,
                   help="learning-rate multiplier of the head (fuse conv + classifier); TopFormer uses 10 (default), "
                        "short runs with few warm-up steps are steadier with 1")
    p.add_argument("--num-random", type=nonneg_int, default=2, help="random subnets per step besides max and min (default 2)")
    p.add_argument("--clip", type=nonneg_float, default=1.0, help="gradient-norm clip, 0 = off (default 1.0)")
    p.add_argument("--workers", type=nonneg_int, default=2, help="data-loading worker processes (default 2)")
    p.add_argument("--seed", type=any_int, default=0, help="seed for init, data order, augmentation and subnets")
    p.add_argument("--ckpt-every", type=positive_int, default=500, help="write OUT/last.pt every N steps (and at the end)")
    p.add_argument("--warm-start", default=None, type=existing_file, metavar="CKPT",
                   help="initialise from a checkpoint's tensors whose name and shape match (e.g. a pretrained backbone)")
    p.add_argument("--resume", action="store_true", help="continue OUT/last.pt exactly where it stopped")
    p.add_argument("--device", default="auto", type=torch_device, help="auto (GPU when present), cpu, cuda, cuda:N")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the final summary as JSON")
    return p


@cli_entry("etf-train")
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    cfg = TrainConfig(data=str(args.data), dataset=args.dataset, out=str(args.out), iters=args.iters, batch=args.batch,
                      size=args.size, lr=args.lr, weight_decay=args.weight_decay, warmup_iters=args.warmup_iters,
                      head_lr_mult=args.head_lr_mult,
                      num_random=args.num_random, clip=args.clip, workers=args.workers, seed=args.seed,
                      ckpt_every=args.ckpt_every, warm_start=None if args.warm_start is None else str(args.warm_start), device=args.device,
                      progress=not args.no_progress)
    given = given_options(argv)
    summary = train(cfg, resume=args.resume, given=given)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary) if args.json else
              f"etf-train: iteration {summary['iteration']}, checkpoint {summary['checkpoint']}, log {summary['log']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
