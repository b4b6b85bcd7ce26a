"""``etf-eval``: mIoU, per-class IoU and pixel accuracy of a supernet subnet or of an exported .tflite file.

A subnet is scored after BN recalibration (library: ``supernet.evaluation``); with ``--tflite`` the exported file
itself runs in LiteRT (library: ``android_bench.evaluate_tflite``), so the number is the one a phone gives.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from etf.args import (Parser, any_int, existing_dir, existing_file, int_range, nonneg_int, output_dir,
                      positive_int, rule, text, torch_device)
from etf.common import EtfError, cli_entry
from supernet.data.datasets import DATASET_NAMES, build_dataset
from supernet.evaluation.evaluator import calibration_batches, evaluate_dataset, palette_for, resolve_arch
from supernet.training.checkpoint import load_supernet, read_checkpoint
from supernet.space import ArchConfig


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="etf-eval", allow_abbrev=False,
        description="Evaluate one subnet of a trained supernet: BN recalibration on training crops, then mIoU, "
                    "per-class IoU and pixel accuracy over the validation split (whole image at short side "
                    "--size, logits resized back to the label size). With --tflite, score an exported file "
                    "instead, run in LiteRT (XNNPACK) at whatever precision it has: the number the phone gives.",
        epilog="Examples:\n"
               "  etf-eval --ckpt runs/syn/last.pt --arch topformer-tiny --data data/syn --dataset synthetic --size 64\n"
               "  etf-eval --ckpt runs/syn/last.pt --arch best.json --data data/syn --show 8 -o shots/ --json\n"
               "  etf-eval --tflite out/int8/model.tflite --data data/syn --json      # an exported file, in LiteRT\n"
               "  etf-eval --tflite out/fp32/model.tflite --data data/ade --dataset ade20k --limit 500\n"
               "--arch takes a preset (topformer-tiny|small|base), max, min, or a JSON config file.\n"
               "--tflite: the file's fixed SxS input sets the size; each image is resized whole to SxS (aspect not\n"
               "kept; PyTorch etf-eval keeps it, so the two agree on square images). Float logits at any\n"
               "resolution are resized bilinearly to the label size, then argmax; an integer label map by nearest.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", type=existing_file, help="etf-train checkpoint (OUT/last.pt); not with --tflite")
    p.add_argument("--arch", type=rule(resolve_arch, text),
                   help="preset name, max, min, or path to an architecture JSON (default for an etf-finetune "
                        "checkpoint: its architecture); not with --tflite")
    p.add_argument("--tflite", type=existing_file, metavar="MODEL",
                   help="score this exported .tflite in LiteRT instead of a supernet subnet (fp32, fp16 or int8)")
    p.add_argument("--threads", type=positive_int, default=1, help="LiteRT threads with --tflite (default 1)")
    p.add_argument("--data", required=True, type=existing_dir, help="dataset root folder")
    p.add_argument("--dataset", choices=DATASET_NAMES, default=None,
                   help="dataset kind (default: the one the checkpoint was trained on; with --tflite, detected "
                        "from the folder)")
    p.add_argument("--split", default="val", help="split to score (default val)")
    p.add_argument("--size", type=int_range(16, 4096), default=None,
                   help="short side for validation and crop side for calibration (default: training --size)")
    p.add_argument("--calib-batches", type=nonneg_int, default=10, help="BN recalibration batches, 0 = keep stored stats")
    p.add_argument("--calib-batch", type=positive_int, default=8, help="images per calibration batch (default 8)")
    p.add_argument("--limit", type=positive_int, default=None, help="score only the first N images")
    p.add_argument("--show", type=nonneg_int, default=0, metavar="N", help="write N image|truth|prediction PNGs to -o")
    p.add_argument("-o", "--out", type=output_dir, default=None, help="folder for --show PNGs")
    p.add_argument("--seed", type=any_int, default=0, help="seed of the calibration crops")
    p.add_argument("--device", default="cpu", type=torch_device, help="cpu, cuda, cuda:N, auto (a GPU when present)")
    p.add_argument("--json", action="store_true", help="print all metrics as one JSON object")
    return p


@cli_entry("etf-eval")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.tflite is not None:
        return _main_tflite(args)
    if args.ckpt is None:
        raise EtfError("give --ckpt and --arch (a supernet subnet), or --tflite MODEL (an exported file)")
    if args.show and args.out is None:
        raise EtfError("--show needs -o DIR for the PNGs")
    state = read_checkpoint(args.ckpt)
    tuned = state.get("finetune") if isinstance(state.get("finetune"), dict) else None
    if args.arch is None and tuned is None:
        raise EtfError("give --arch (the subnet to score), or --tflite MODEL (an exported file)")
    if args.arch is None:  # an etf-finetune checkpoint: its own architecture
        cfg = ArchConfig.from_dict(tuned["arch"])
        args.arch = f"fine-tuned {cfg.key()}"
    else:
        cfg = resolve_arch(args.arch)
    train_args = state.get("args") if isinstance(state.get("args"), dict) else {}
    dataset = args.dataset or train_args.get("dataset")
    if dataset is None:
        raise EtfError(f"{args.ckpt} does not say which dataset it was trained on; pass --dataset")
    size = args.size or train_args.get("size") or 512
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    model = load_supernet(args.ckpt).to(device)
    ds = build_dataset(dataset, args.data, args.split, size, train=False)
    if ds.num_classes != model.num_classes:
        raise EtfError(f"{args.ckpt} has {model.num_classes} classes but {dataset} at {args.data} has {ds.num_classes}")
    model.set_active_subnet(cfg)
    progress = not args.json and sys.stderr.isatty()
    calib = calibration_batches(args.data, dataset, size, args.calib_batches, args.calib_batch, args.seed)
    if calib:
        model.set_running_statistics(calib, device=device)
    summary = evaluate_dataset(model, ds, device, args.limit, args.show, args.out, palette_for(ds), progress)
    summary.update({"arch": cfg.key(), "ckpt": str(args.ckpt), "dataset": dataset, "split": args.split,
                    "size": size, "calib_batches": len(calib), "calib_batch": args.calib_batch})
    summary["miou"] = summary["mIoU"]
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"{args.arch} on {dataset}/{args.split} ({summary['images']} images, short side {size}, "
          f"BN recalibrated on {len(calib)}x{args.calib_batch} crops)")
    _print_metrics(summary)
    if summary["shown"]:
        print(f"wrote {len(summary['shown'])} PNGs to {args.out}")
    return 0


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def _print_metrics(summary: dict) -> None:
    print(f"mIoU {_pct(summary['mIoU'])}  aAcc {_pct(summary['aAcc'])}  mAcc {_pct(summary['mAcc'])}")
    width = max(len(n) for n in summary["per_class"])
    print(f"{'class':<{width}}  {'IoU':>6}  {'Acc':>6}")
    for name, row in summary["per_class"].items():
        print(f"{name:<{width}}  {_pct(row['IoU']):>6}  {_pct(row['Acc']):>6}")


def _main_tflite(args: argparse.Namespace) -> int:
    """``etf-eval --tflite``: score an exported file in LiteRT (no checkpoint, no BN recalibration)."""
    from android_bench.evaluate_tflite import evaluate_tflite

    given = [flag for flag, value in (("--ckpt", args.ckpt), ("--arch", args.arch), ("--size", args.size),
                                      ("--show", args.show)) if value]
    if given:
        raise EtfError(f"{', '.join(given)} cannot be used with --tflite: the file fixes the network, its weights "
                       "and its input size")
    if args.threads < 1:
        raise EtfError("--threads must be at least 1")
    progress = not args.json and sys.stderr.isatty()
    summary = evaluate_tflite(args.tflite, args.data, args.dataset, args.split, args.limit, args.threads, progress)
    if args.json:
        print(json.dumps(summary))
        return 0
    out = summary["output"]
    print(f"{args.tflite} ({summary.get('precision', 'precision unknown')}, input {summary['input']['shape']} "
          f"{summary['input']['dtype']}, output {out['shape']} {out['dtype']}) on {summary['dataset']}/{args.split} "
          f"({summary['images']} images, {summary['resize']}), LiteRT")
    _print_metrics(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
