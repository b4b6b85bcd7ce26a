"""mIoU of the exported file at fp32 / fp16 / int8, per preset, scored in LiteRT on the validation split: one table.

Run (the synthetic numbers in docs/deployment.md):
    PYTHONPATH=. python benchmarks/bench_precision.py --ckpt RUN/last.pt --data DATA --size 64 -o OUT

Per preset and output head (``--heads``, default logits8): the subnet of the supernet checkpoint with BN recalibrated on ``--calib-batches`` x 8 training crops
(exactly as ``etf-eval`` / the search score it; saved as ``OUT/PRESET/subnet.pt``), then

* PyTorch mIoU of that subnet on the validation split (``SubnetEvaluator``: short side ``--size``),
* ``OUT/PRESET/fp32``: ``export_subnet`` (fidelity-checked fp32 .tflite), scored with ``evaluate_tflite``,
* fp16 and int8 quantized from that fp32 file with ``android_bench.export.quantize.quantize_tflite`` (what
  ``etf-export --precision`` calls after the same conversion; one conversion per preset instead of three),
  int8 calibrated on ``--calib-count`` training images (``dataset_calibration``, the deployed SxS input), both
  with the agreement report on ``--agreement-inputs`` held-out training images, both scored in LiteRT.

Calibration and BN recalibration read the training split only; every mIoU is on the validation split.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


from android_bench.evaluate_tflite import evaluate_tflite
from android_bench.export.calib_data import dataset_calibration
from android_bench.export.convert import export_subnet
from android_bench.export.deploy import build_deployed_model
from android_bench.export.fidelity import measure_agreement
from android_bench.export.quantize import quantize_tflite
from search.pieces import subnet_weights
from supernet.data.datasets import detect_dataset
from supernet.evaluation.evaluator import SubnetEvaluator
from supernet.heads import HEADS
from supernet.presets import PRESETS


def run(args: argparse.Namespace) -> list[dict]:
    dataset = args.dataset or detect_dataset(args.data)
    say = (lambda m: print(m, file=sys.stderr, flush=True))
    evaluator = SubnetEvaluator.from_checkpoint(args.ckpt, args.data, dataset, args.size, n_calib=args.calib_batches,
                                                n_val=None, batch=8, seed=args.seed)
    cal = dataset_calibration(args.data, dataset, args.size, args.calib_count, args.agreement_inputs, args.seed)
    args.calib_used = cal.source["calibration_images"]  # fewer than --calib-count on a small training split
    rows = []
    for name in args.presets:
        cfg = PRESETS[name]
        torch_miou = evaluator.metrics(cfg)["mIoU"]
        weights = subnet_weights(cfg, evaluator, args.out / name / "subnet.pt")
        for head in args.heads:
            out = args.out / name / head
            say(f"{name}, head {head}: PyTorch mIoU {100 * torch_miou:.2f}; exporting fp32 ...")
            t0 = time.perf_counter()
            res = export_subnet(cfg, out / "fp32", size=args.size, weights=weights, onnx=False, head=head)
            files = {"fp32": res.files["tflite"]}
            model, _, _ = build_deployed_model(cfg, weights, head=head)
            row = {"preset": name, "head": head, "torch_miou": torch_miou, "convert_s": time.perf_counter() - t0}
            for prec in ("fp16", "int8"):
                files[prec] = out / prec / "model.tflite"
                quantize_tflite(files["fp32"], files[prec], prec, cal.inputs)
                agree = measure_agreement(model, files[prec], cal.held_out, prec, "held-out train images")
                row[f"{prec}_agreement"] = agree.label_agreement
                row[f"{prec}_mean_err_rel"] = (agree.mean_abs_error / agree.max_abs_logit
                                               if agree.mean_abs_error is not None else None)  # labels: no logits
            for prec, path in files.items():
                score = evaluate_tflite(path, args.data, dataset, limit=args.limit)
                row[f"{prec}_miou"], row[f"{prec}_mb"] = score["miou"], path.stat().st_size / 1e6
                row["images"] = score["images"]
            say(f"{name}, head {head}: " + "  ".join(f"{p} {100 * row[f'{p}_miou']:.2f}" for p in files))
            rows.append(row)
    return rows


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    print(f"{args.data} val split ({rows[0]['images'] if rows else 0} images), input {args.size}x{args.size}; BN "
          f"recalibrated on {args.calib_batches}x8 train crops; int8 calibrated on {args.calib_used} train images; "
          f"agreement on {args.agreement_inputs} held-out train images; mIoU in %")
    print(f"{'preset':16s} {'head':8s} {'PyTorch':>7s} {'fp32':>6s} {'fp16':>6s} {'int8':>6s} {'int8-fp32':>9s} "
          f"{'fp32 MB':>7s} {'fp16 MB':>7s} {'int8 MB':>7s} {'fp16 agree':>10s} {'int8 agree':>10s} "
          f"{'int8 mean err':>13s}")
    for r in rows:
        pct = {k: 100 * r[f"{k}_miou"] for k in ("fp32", "fp16", "int8")}
        err = r["int8_mean_err_rel"]
        print(f"{r['preset']:16s} {r['head']:8s} {100 * r['torch_miou']:7.2f} {pct['fp32']:6.2f} {pct['fp16']:6.2f} "
              f"{pct['int8']:6.2f} {pct['int8'] - pct['fp32']:+9.2f} {r['fp32_mb']:7.2f} {r['fp16_mb']:7.2f} "
              f"{r['int8_mb']:7.2f} {100 * r['fp16_agreement']:9.2f}% {100 * r['int8_agreement']:9.2f}% "
              + (f"{100 * err:12.2f}%" if err is not None else f"{'-':>13s}"))
    print("agree = top-1 labels equal to the fp32 PyTorch model, share of pixels; int8 mean err = mean |logit "
          "error| / max |logit| (none for the labels head, which returns labels)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, type=Path, help="etf-train checkpoint (supernet)")
    ap.add_argument("--data", required=True, type=Path, help="dataset root")
    ap.add_argument("--dataset", default=None, help="dataset kind [detected]")
    ap.add_argument("--size", type=int, default=64, help="export input size, multiple of 64 [64]")
    ap.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    ap.add_argument("--heads", nargs="+", default=["logits8"], choices=list(HEADS),
                    help="output heads to export and score, each at fp32/fp16/int8 [logits8]")
    ap.add_argument("--calib-batches", type=int, default=10, help="BN recalibration batches of 8 crops [10]")
    ap.add_argument("--calib-count", type=int, default=200, help="int8 calibration images [200]")
    ap.add_argument("--agreement-inputs", type=int, default=8, help="held-out images for the agreement [8]")
    ap.add_argument("--limit", type=int, default=None, help="score only the first N validation images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--out", type=Path, required=True, help="folder for the subnets and files")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    args = ap.parse_args()
    rows = run(args)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows, args)


if __name__ == "__main__":
    main()
