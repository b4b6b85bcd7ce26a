"""``etf-finetune``: train one subnet on its own from the weights it inherits (``supernet.training.finetune``)."""
from __future__ import annotations

import argparse
import json
import sys

from etf.args import (Parser, any_int, crop_side, existing_dir, existing_file, given_options, nonneg_float,
                      nonneg_int, output_dir, positive_float, positive_int, torch_device, unit_interval)
from etf.common import EtfError, cli_entry
from supernet.data.datasets import DATASET_NAMES
from supernet.evaluation.evaluator import resolve_arch
from supernet.training.checkpoint import read_checkpoint
from supernet.training.finetune import FinetuneConfig, finetune

def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="etf-finetune", allow_abbrev=False,
        description="Fine-tune one subnet of a trained supernet on its own (its inherited weights are the start), "
                    "as the seed study trains its searched nets and TopFormer before comparing them. Writes "
                    "OUT/last.pt (a supernet checkpoint with the architecture recorded: etf-eval, etf-export and "
                    "etf-search read it as they read etf-train's) and OUT/log.csv (iter, loss, loss_label, "
                    "loss_distill, lr, time).",
        epilog="Examples:\n"
               "  etf-finetune --supernet runs/syn/last.pt --arch runs/search/best.json --data data/syn "
               "--iters 300 -o runs/ft-best\n"
               "  etf-finetune --supernet runs/syn/last.pt --arch topformer-tiny --data data/syn --iters 300 "
               "--distill 0.5 -o runs/ft-tiny\n"
               "  etf-eval --ckpt runs/ft-best/last.pt --data data/syn      # --arch defaults to the fine-tuned one\n"
               "Ctrl-C saves a checkpoint after the current step; --resume continues bit-for-bit.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--supernet", required=True, type=existing_file, metavar="CKPT",
                   help="etf-train checkpoint whose weights the subnet inherits")
    p.add_argument("--arch", required=True,
                   help="the subnet: a preset (topformer-tiny|small|base), max, min, or an architecture JSON")
    p.add_argument("--data", required=True, type=existing_dir, help="dataset root folder")
    p.add_argument("--dataset", choices=DATASET_NAMES, default=None,
                   help="dataset kind (default: the one the supernet was trained on)")
    p.add_argument("-o", "--out", required=True, type=output_dir, help="run folder for last.pt and log.csv")
    p.add_argument("--iters", type=positive_int, default=300, help="optimiser steps (default 300)")
    p.add_argument("--batch", type=positive_int, default=8, help="images per step (default 8)")
    p.add_argument("--size", type=crop_side, default=None, help="crop side (default: the supernet's training size)")
    p.add_argument("--lr", type=positive_float, default=5e-4, help="peak learning rate (default 5e-4)")
    p.add_argument("--weight-decay", type=nonneg_float, default=0.01, help="AdamW weight decay (default 0.01)")
    p.add_argument("--warmup-iters", type=nonneg_int, default=None, help="linear warm-up (default min(100, iters/10))")
    p.add_argument("--head-lr-mult", type=positive_float, default=1.0, help="head learning-rate multiplier (default 1)")
    p.add_argument("--distill", type=unit_interval, default=0.0,
                   help="weight of distillation from the supernet's largest subnet (KL, 0..1; the labels' "
                        "cross-entropy gets 1 - weight; default 0: labels only)")
    p.add_argument("--clip", type=nonneg_float, default=1.0, help="gradient-norm clip, 0 = off (default 1.0)")
    p.add_argument("--workers", type=nonneg_int, default=2, help="data-loading worker processes (default 2)")
    p.add_argument("--seed", type=any_int, default=0, help="seed for data order, augmentation and dropout")
    p.add_argument("--ckpt-every", type=positive_int, default=100, help="write OUT/last.pt every N steps (and at the end)")
    p.add_argument("--resume", action="store_true", help="continue OUT/last.pt exactly where it stopped")
    p.add_argument("--device", default="auto", type=torch_device, help="auto (GPU when present), cpu, cuda, cuda:N")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the final summary as JSON")
    return p


@cli_entry("etf-finetune")
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    trained = read_checkpoint(args.supernet).get("args")
    trained = trained if isinstance(trained, dict) else {}
    dataset = args.dataset or trained.get("dataset")
    size = args.size or trained.get("size")
    if dataset is None or size is None:
        raise EtfError(f"{args.supernet} does not record its dataset and crop size; give --dataset and --size")
    arch = resolve_arch(args.arch)
    cfg = FinetuneConfig(supernet=str(args.supernet), arch=arch.to_dict(), data=str(args.data), dataset=dataset,
                         out=str(args.out), iters=args.iters, batch=args.batch, size=int(size), lr=args.lr,
                         weight_decay=args.weight_decay, warmup_iters=args.warmup_iters, head_lr_mult=args.head_lr_mult,
                         distill=args.distill, clip=args.clip, workers=args.workers, seed=args.seed,
                         ckpt_every=args.ckpt_every, device=args.device, progress=not args.no_progress)
    # on resume the architecture and the source must be the run's own: compare them even when typed as defaults
    given = given_options(argv) | {"arch", "supernet"} if args.resume else set()
    summary = finetune(cfg, resume=args.resume, given=given)
    print(json.dumps(summary) if args.json else
          f"etf-finetune: {summary['arch']} at iteration {summary['iteration']}, checkpoint {summary['checkpoint']}, "
          f"log {summary['log']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
