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
    etf-export --arch best.json --weights runs/search/subnet.pt --precision int8 --calib-data data/ade -o out/int8
    #   ^ int8, calibrated on 200 training images of data/ade (ADEChallengeData2016), float32 in/out
    etf-export --arch best.json --weights runs/search/subnet.pt --precision fp16 -o out/fp16
    etf-eval --tflite out/int8/model.tflite --data data/ade --json   # its mIoU in LiteRT, on the val split

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

--precision fp16 (float16 weights) or int8 (int8 weights and activations, calibrated on --calib-count training
images of --calib-data resized to SxS) quantizes model.tflite with ai-edge-quantizer after the fp32 file passed
its check; input and output stay float32 (an int8 file quantizes its input and dequantizes its logits inside;
the labels head stays int32). Instead of a limit, the quantized file gets a report of how it agrees with the fp32
model on --agreement-inputs held-out training images: top-1 label agreement per pixel and max/mean logit error
(export.json "agreement"). model.onnx stays fp32. Score the file itself with etf-eval --tflite.
"""
from __future__ import annotations

import argparse
import json
import sys

from etf.args import Parser, add_verbose, any_int, existing_dir, existing_file, output_dir, positive_int, rule, text
from etf.common import EtfError, cli_entry
from android_bench.export.calib_data import DEFAULT_COUNT, dataset_calibration
from android_bench.export.convert import DEFAULT_AGREEMENT_INPUTS, export_subnet
from android_bench.export.quantize import PRECISIONS
from etf.quiet import set_verbose
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
    cal.add_argument("--dataset", choices=DATASET_NAMES,
                     help="dataset kind of --data (required with it) and of --calib-data [detected from --calib-data]")
    cal.add_argument("--calib-size", type=positive_int, default=64, help="crop side (etf-search --eval-size) [64]")
    cal.add_argument("--n-calib", type=positive_int, default=4, help="calibration batches (etf-search --n-calib) [4]")
    cal.add_argument("--calib-batch", type=positive_int, default=16, help="crops per batch (etf-search --batch) [16]")
    cal.add_argument("--calib-seed", type=any_int, default=0, help="seed of the crops (the evaluator's is 0) [0]")
    cal.add_argument("--no-recalibrate", action="store_true",
                     help="ship the supernet's shared, uncalibrated BN statistics (not the model the search scored)")
    p.add_argument("--seed", type=any_int, default=0,
                   help="seed of the random weights, the check input and the order of --calib-data images [0]")
    q = p.add_argument_group("precision of model.tflite (ai-edge-quantizer)")
    q.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32, fp16 (float16 weights) or int8 (int8 weights and activations; needs --calib-data) [fp32]")
    q.add_argument("--calib-data", metavar="DIR", type=existing_dir,
                   help="dataset folder (the one the model was trained on) whose training images calibrate int8 "
                        "and feed the agreement report; can be the same as --data")
    q.add_argument("--calib-count", type=positive_int, default=DEFAULT_COUNT, help=f"int8 calibration images [{DEFAULT_COUNT}]")
    q.add_argument("--agreement-inputs", type=positive_int, default=DEFAULT_AGREEMENT_INPUTS, metavar="N",
                   help=f"held-out images (seeded noise without --calib-data) for the fp16/int8 agreement report "
                        f"[{DEFAULT_AGREEMENT_INPUTS}]")
    p.add_argument("--json", action="store_true", help="print the export report as one JSON object")
    add_verbose(p)
    return p


def _human(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


@cli_entry("etf-export")
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    set_verbose(args.verbose)
    if args.precision == "int8" and args.calib_data is None:
        raise EtfError("--precision int8 needs --calib-data DIR: calibration images from the dataset the model "
                       "was trained on (its training split is read; the --data folder will do)")
    if args.precision == "fp32" and args.calib_data is not None:
        raise EtfError("--calib-data is for --precision fp16 or int8; an fp32 export is checked against PyTorch "
                       "without it")
    say = None if args.json else (lambda msg: print(f"etf-export: {msg} ...", file=sys.stderr, flush=True))
    calibration = None
    if args.data is not None:
        if args.no_recalibrate:
            raise EtfError("--data recalibrates BN and --no-recalibrate forbids it: give one of them")
        if args.dataset is None:
            raise EtfError("--data needs --dataset (" + ", ".join(DATASET_NAMES) + ")")
        calibration = CalibrationSpec(args.data, args.dataset, args.calib_size, args.n_calib, args.calib_batch,
                                      args.calib_seed)
    elif args.dataset is not None and args.calib_data is None:
        raise EtfError("--dataset without --data or --calib-data: give the folder it describes")
    cfg = load_config(args.arch)  # bad --arch fails before any image is read
    quant_calibration = None
    if args.calib_data is not None:
        quant_calibration = dataset_calibration(args.calib_data, args.dataset, args.size, args.calib_count,
                                                args.agreement_inputs, args.seed)
        if say:
            say(f"read {quant_calibration.source['calibration_images']} calibration + "
                f"{quant_calibration.source['held_out_images']} held-out images from {args.calib_data}")
    res = export_subnet(cfg, args.out, size=args.size, weights=args.weights, num_classes=args.classes,
                        onnx=not args.no_onnx, seed=args.seed, progress=say, calibration=calibration,
                        allow_uncalibrated=args.no_recalibrate, head=args.head, precision=args.precision,
                        quant_calibration=quant_calibration, agreement_inputs=args.agreement_inputs)
    if args.json:
        print(json.dumps(res.to_dict()))
        return 0
    o = res.to_dict()["output"]
    print(f"arch {res.arch.key()}  {res.size}x{res.size}  {res.num_classes} classes  weights: "
          f"{res.weights or 'random'} ({res.weights_kind}, BN {res.bn})  layout NHWC  precision {res.precision}")
    print(f"  head {res.head}: output {o['name']!r} {o['dtype']} {'x'.join(str(d) for d in o['shape'])}")
    for kind, path in res.files.items():
        size = res.file_bytes.get(kind, path.stat().st_size)
        took = f"  converted in {res.seconds[kind]:.1f} s" if kind in res.seconds else ""
        print(f"  {str(path):40s} {_human(size):>10s}{took}")
    for f in res.fidelity:
        print(f"  {f.describe()}")
    if res.quantization is not None:
        cal = res.quantization.get("calibration") or {}
        src = (f"calibrated on {cal['calibration_images']} {cal.get('dataset', '')} {cal.get('split', '')} images"
               if cal.get("kind") == "dataset" else "no calibration")
        print(f"  {res.precision}: {res.quantization['recipe']}; {src}; input/output float32")
    if res.agreement is not None:
        a = res.agreement
        logit = (f"; logit error max {a.max_abs_error:.3g} mean {a.mean_abs_error:.3g} (max |logit| "
                 f"{a.max_abs_logit:.3g})" if a.max_abs_error is not None else "")
        print(f"  agreement with fp32 on {a.inputs}: top-1 labels {100 * a.label_agreement:.2f}% of pixels "
              f"(worst image {100 * a.worst_label_agreement:.2f}%){logit}")
    for note in res.notes:
        print(f"  warning: {note}")
    n_ops = sum(res.op_counts.values())
    n_tr = len(res.transposes)
    print(f"  tflite ops {n_ops}, TRANSPOSE {n_tr} ({n_tr - len(res.stray_transposes)} attention head split/merge, "
          f"{len(res.stray_transposes)} stray)")
    if res.delegation is not None:
        print(f"  LiteRT CPU: {res.delegation.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
