"""Issue 5's accuracy numbers on the synthetic set: a short supernet training run on this CPU, then mIoU
(after BN recalibration) of the max, min, a few random subnets and the three TopFormer presets, plus one
sampled subnet with and without recalibration. Prints a table (and ``--json``).

Run (run B in docs/training.md came from exactly this; run A used --run runs/bench64_50 --iters 50
--lr 1.5e-3; the set was made by ``etf-make-synthetic -o /tmp/etf_train_syn128 --train 800 --val 100
--size 128``, generator v1)::

    PYTHONPATH=. python benchmarks/bench_train.py --data /tmp/etf_train_syn128 --run runs/bench64 \
        --size 64 --batch 4 --iters 30 --num-random 1 --lr 1e-3 --head-lr-mult 1 --warmup-iters 3 \
        --n-calib 5 --n-val 50

Steps: ``etf-make-synthetic`` (skipped when the folder already holds a synthetic set), ``etf-train`` (resumed when the run
folder has a checkpoint, skipped when it is finished), then :class:`supernet.evaluation.evaluator.SubnetEvaluator`
on fixed calibration crops and the first ``--n-val`` validation images. The synthetic set is NOT ADE20K:
its mIoU only says how well the supernet's subnets separate its 10 made-up classes.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

from supernet.training.checkpoint import read_checkpoint
from supernet.data.datasets import SYNTHETIC_META, read_synthetic_meta
from supernet.evaluation.evaluator import SubnetEvaluator
from supernet.presets import PRESETS
from supernet.size import model_size
from supernet.space import TABLE1
from supernet.data.synthetic import make_synthetic
from supernet.training.train import TrainConfig, read_log, train


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/tmp/etf_syn128"), help="synthetic set (made if missing)")
    ap.add_argument("--image-size", type=int, default=128, help="side of the generated images")
    ap.add_argument("--train-images", type=int, default=800)
    ap.add_argument("--val-images", type=int, default=100)
    ap.add_argument("--run", type=Path, default=Path("runs/bench_train"), help="training run folder")
    ap.add_argument("--size", type=int, default=64, help="training crop / validation short side")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--num-random", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup-iters", type=int, default=3)
    ap.add_argument("--head-lr-mult", type=float, default=1.0, help="TopFormer's 10 diverged in a 45-step run")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--n-calib", type=int, default=5, help="calibration batches (of --batch crops)")
    ap.add_argument("--n-val", type=int, default=50, help="validation images scored")
    ap.add_argument("--n-random-eval", type=int, default=3, help="random subnets in the table")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-only", action="store_true",
                    help="evaluate the run's existing checkpoint (e.g. one trained by etf-train) without training")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    if not (args.data / SYNTHETIC_META).exists():
        make_synthetic(args.data, train=args.train_images, val=args.val_images, size=args.image_size, classes=10,
                       seed=args.seed)
    meta = read_synthetic_meta(args.data)  # an existing set is used as it is (its generator version is printed)
    cfg = TrainConfig(data=str(args.data), dataset="synthetic", out=str(args.run), iters=args.iters,
                      batch=args.batch, size=args.size, lr=args.lr, warmup_iters=args.warmup_iters,
                      head_lr_mult=args.head_lr_mult,
                      num_random=args.num_random, workers=args.workers, seed=args.seed, ckpt_every=2)
    ckpt = args.run / "last.pt"
    if not args.eval_only:
        train(cfg, resume=ckpt.exists())
    log = read_log(args.run / "log.csv")
    train_seconds = sum(r["time"] for r in log)
    state = read_checkpoint(ckpt)
    if args.eval_only:  # report the run's own settings, not this script's defaults
        saved = state.get("args", {})
        for name in ("size", "batch", "num_random", "lr"):
            if name in saved:
                setattr(args, name, saved[name])

    t0 = time.perf_counter()
    ev = SubnetEvaluator.from_checkpoint(ckpt, args.data, "synthetic", args.size, n_calib=args.n_calib,
                                         n_val=args.n_val, batch=args.batch, seed=args.seed)
    rng = random.Random(args.seed + 1)
    rows = [("max", TABLE1.max_config()), ("min", TABLE1.min_config())]
    rows += [(f"random-{i}", TABLE1.sample(rng)) for i in range(args.n_random_eval)]
    rows += [(name, PRESETS[name]) for name in ("topformer-base", "topformer-small", "topformer-tiny")]
    results = []
    for name, arch in rows:
        t = time.perf_counter()
        miou = ev.evaluate(arch)
        size = model_size(arch, args.size, ev.num_classes)
        results.append({"subnet": name, "mIoU": miou, "params_M": size.params / 1e6,
                        "MFLOPs": size.flops / 1e6, "eval_s": time.perf_counter() - t, "key": arch.key()})
    sampled = rows[2][1] if args.n_random_eval else TABLE1.sample(rng)
    no_cal = 100 * (ev.metrics(sampled, calibrate=False)["mIoU"] or 0.0)
    with_cal = ev.evaluate(sampled)
    chance = 100.0 / ev.num_classes  # mIoU of a uniform guess is lower still; this is the pixel-accuracy chance
    summary = {
        "train": {"iters": state["iteration"], "size": args.size, "batch": args.batch, "num_random": args.num_random,
                  "lr": args.lr, "train_seconds": round(train_seconds, 1),
                  "final_loss_max": log[-1]["loss_max"], "first_loss_max": log[0]["loss_max"]},
        "eval": {"n_calib_batches": args.n_calib, "calib_batch": args.batch, "n_val": args.n_val,
                 "seconds": round(time.perf_counter() - t0, 1)},
        "rows": results,
        "recalibration": {"subnet": rows[2][0] if args.n_random_eval else "sampled", "mIoU_without": no_cal,
                          "mIoU_with": with_cal},
        "threads": torch.get_num_threads(),
        "data": {"path": str(args.data), **{k: meta[k] for k in ("version", "train", "val", "size", "num_classes")}},
    }
    if args.json:
        print(json.dumps(summary))
        return
    tr = summary["train"]
    print(f"synthetic set {args.data} (generator v{meta['version']}, {meta['train']} train / {meta['val']} val "
          f"images, {meta['size']}px, {meta['num_classes']} classes; NOT ADE20K)")
    print(f"training: {tr['iters']} iterations, crop {args.size}, batch {args.batch}, sandwich max+min+"
          f"{args.num_random} random, lr {args.lr:g}, {tr['train_seconds'] / 60:.1f} min of steps on this CPU "
          f"({torch.get_num_threads()} threads, shared machine); loss_max {tr['first_loss_max']:.3f} -> "
          f"{tr['final_loss_max']:.3f}")
    print(f"evaluation: BN recalibrated on {args.n_calib}x{args.batch} training crops, {args.n_val} val images at "
          f"short side {args.size}, labels at {meta['size']}px")
    print(f"{'subnet':<16} {'mIoU %':>7} {'params M':>9} {'MFLOPs':>8} {'eval s':>7}")
    for r in results:
        print(f"{r['subnet']:<16} {r['mIoU']:>7.2f} {r['params_M']:>9.2f} {r['MFLOPs']:>8.1f} {r['eval_s']:>7.1f}")
    rc = summary["recalibration"]
    print(f"BN recalibration, {rc['subnet']}: without {rc['mIoU_without']:.2f}  with {rc['mIoU_with']:.2f} (mIoU %)")
    print(f"chance (1/classes) = {chance:.1f}% pixel accuracy")


if __name__ == "__main__":
    main()
