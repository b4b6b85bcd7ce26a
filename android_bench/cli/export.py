"""``etf-export``: a subnet config (or preset) plus optional weights -> checked model.tflite and model.onnx.

Examples:
    etf-export --arch topformer-tiny -o out/tiny                 # random weights, 512x512, 150 classes, logits8
    etf-export --arch topformer-tiny --head labels -o out/tiny-labels   # what an app draws: 1x512x512x1 int32
    etf-export --arch runs/search/best.json --weights runs/search/subnet.pt -o out/best
                                           # the searched winner with the BN statistics it was scored with
    etf-export --arch best.json --weights runs/syn/last.pt --data data/syn --dataset synthetic \\
        --calib-size 64 --n-calib 4 --calib-batch 16 -o out/best   # a supernet subnet, BN recalibrated like
                                           # etf-search --eval-size 64 --n-calib 4 --batch 16 (its defaults)
    etf-export --arch topformer-small --size 256 --no-onnx -o out/s --json

A subnet of a supernet checkpoint is refused without --data (or --no-recalibrate): the supernet's shared BN
statistics are wrong for any single subnet (about 15 mIoU points on the synthetic set), so the file would not be
the model the search scored. export.json records "bn" (recalibrated / uncalibrated / stored / random) and the
calibration settings.

Both files take one float32 NHWC image 1xSxSx3 (input "image"). What they return is the --head:
    logits8  float32 logits at 1/8 resolution, 1x(S/8)x(S/8)xC (output "logits"): TopFormer's deployment; default
    labels   int32 class per pixel at the input size, 1xSxSx1 (output "labels"): argmax at 1/8, then a nearest
             upsample of the label map (an 8x8 block per low-resolution pixel)
    logits   float32 logits at the input size, 1xSxSxC (output "logits"): bilinear resize of 150 channels to
             512x512 is ~60% of TopFormer-Tiny's time, so use it only if the app needs full-resolution scores
export.json records the head and the output's name, shape and dtype. After every export both files are run on a
fixed seeded input (TFLite in LiteRT with XNNPACK, ONNX in ONNX Runtime) and compared with PyTorch: logits past
1e-4 x max |logit| fail the export; labels must be equal on every pixel except near-ties (PyTorch's two best
logits within that same tolerance). Nothing is left in the output folder when the input is bad or a check fails.
"""
from __future__ import annotations

import argparse
import json
import sys

from etf.args import Parser, any_int, existing_dir, existing_file, output_dir, positive_int, rule, text
from etf.common import EtfError, cli_entry
from etf.quiet import set_verbose
from android_bench.export.convert import export_subnet
from supernet.heads import DEFAULT_HEAD, HEADS
from supernet.data.datasets import DATASET_NAMES
from supernet.evaluation.evaluator import CalibrationSpec
from supernet.presets import PRESETS
from supernet.space import load_config
from supernet.trace import check_deploy_size, deploy_multiple


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="etf-export", allow_abbrev=False,
        description="Export a TopFormer subnet to TFLite (litert-torch) and ONNX (torch.onnx) with NHWC at the "
                    "boundary, and check both files against PyTorch.",
        epilog="examples:" + __doc__.split("Examples:")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--arch", required=True, metavar="PRESET_OR_FILE", type=rule(load_config, text),
                   help="preset name (" + ", ".join(PRESETS) + ") or path to a JSON config (etf-space sample)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", type=output_dir, help="output folder (created if missing)")
    p.add_argument("--size", type=rule(check_deploy_size), default=512,
                   help=f"square input size, a multiple of {deploy_multiple()} [512]")
    p.add_argument("--weights", metavar="CKPT", type=existing_file,
                   help="checkpoint: torch.save of {'model': supernet state_dict, 'num_classes': n}, or a static "
                        "TopFormer state_dict [random weights]")
    p.add_argument("--classes", type=positive_int, default=None,
                   help="number of classes [from the checkpoint; 150 (ADE20K) without weights]")
    p.add_argument("--head", choices=HEADS, default=DEFAULT_HEAD,
                   help="what the model returns: logits8 (1/8-resolution float logits), labels (int32 label map at "
                        "the input size), logits (full-resolution float logits) [logits8]")
    p.add_argument("--no-onnx", action="store_true", help="write only model.tflite")
    cal = p.add_argument_group("BN recalibration (a subnet of a supernet checkpoint; use etf-search's values)")
    cal.add_argument("--data", metavar="DIR", type=existing_dir, help="dataset folder whose training crops recalibrate BN")
    cal.add_argument("--dataset", choices=DATASET_NAMES, help="dataset kind of --data (required with it)")
    cal.add_argument("--calib-size", type=positive_int, default=64, help="crop side (etf-search --eval-size) [64]")
    cal.add_argument("--n-calib", type=positive_int, default=4, help="calibration batches (etf-search --n-calib) [4]")
    cal.add_argument("--calib-batch", type=positive_int, default=16, help="crops per batch (etf-search --batch) [16]")
    cal.add_argument("--calib-seed", type=any_int, default=0, help="seed of the crops (the evaluator's is 0) [0]")
    cal.add_argument("--no-recalibrate", action="store_true",
                     help="ship the supernet's shared, uncalibrated BN statistics (not the model the search scored)")
    p.add_argument("--seed", type=any_int, default=0, help="seed of the random weights and of the check input [0]")
    p.add_argument("--json", action="store_true", help="print the export report as one JSON object")
    p.add_argument("--verbose", action="store_true", help="show the converter's and runtime's own output (C++ logs included); by default it is captured and shown only when a step fails")
    return p


def _human(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


@cli_entry("etf-export")
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    set_verbose(args.verbose)
    say = None if args.json else (lambda msg: print(f"etf-export: {msg} ...", file=sys.stderr, flush=True))
    calibration = None
    if args.data is not None:
        if args.no_recalibrate:
            raise EtfError("--data recalibrates BN and --no-recalibrate forbids it: give one of them")
        if args.dataset is None:
            raise EtfError("--data needs --dataset (" + ", ".join(DATASET_NAMES) + ")")
        calibration = CalibrationSpec(args.data, args.dataset, args.calib_size, args.n_calib, args.calib_batch,
                                      args.calib_seed)
    elif args.dataset is not None:
        raise EtfError("--dataset without --data: give the folder to recalibrate on")
    res = export_subnet(args.arch, args.out, size=args.size, weights=args.weights, num_classes=args.classes,
                        onnx=not args.no_onnx, seed=args.seed, progress=say, calibration=calibration,
                        allow_uncalibrated=args.no_recalibrate, head=args.head)
    if args.json:
        print(json.dumps(res.to_dict()))
        return 0
    o = res.to_dict()["output"]
    print(f"arch {res.arch.key()}  {res.size}x{res.size}  {res.num_classes} classes  weights: "
          f"{res.weights or 'random'} ({res.weights_kind}, BN {res.bn})  layout NHWC")
    print(f"  head {res.head}: output {o['name']!r} {o['dtype']} {'x'.join(str(d) for d in o['shape'])}")
    for kind, path in res.files.items():
        size = res.file_bytes.get(kind, path.stat().st_size)
        took = f"  converted in {res.seconds[kind]:.1f} s" if kind in res.seconds else ""
        print(f"  {str(path):40s} {_human(size):>10s}{took}")
    for f in res.fidelity:
        print(f"  {f.describe()}")
    n_ops = sum(res.op_counts.values())
    n_tr = len(res.transposes)
    print(f"  tflite ops {n_ops}, TRANSPOSE {n_tr} ({n_tr - len(res.stray_transposes)} attention head split/merge, "
          f"{len(res.stray_transposes)} stray)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
