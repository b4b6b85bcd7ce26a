#!/usr/bin/env bash
# etf-finetune's CUDA path once: a short supernet run on the GPU, then one subnet fine-tuned with distillation
# from the max subnet (teacher BN recalibrated on the GPU), checkpoint/resume, and etf-eval of the result.
# Usage: bash benchmarks/gpu_finetune_check.sh [OUTDIR]    (needs torch with CUDA; runs from the repo root)
set -euo pipefail
OUT=${1:-/tmp/etf-gpu-ft}
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
mkdir -p "$OUT"
python3 -m supernet.cli.make_synthetic -o "$OUT/syn" --train 200 --val 40 --size 128 --json > /dev/null
python3 -m supernet.cli.train --data "$OUT/syn" --dataset synthetic --size 128 --batch 16 --iters 60 --lr 2e-3 \
    --head-lr-mult 1 --device cuda --no-progress --json -o "$OUT/run"
t0=$(date +%s.%N)
python3 -m supernet.cli.finetune --supernet "$OUT/run/last.pt" --arch topformer-tiny --data "$OUT/syn" --iters 40 \
    --distill 0.5 --device cuda --no-progress --json -o "$OUT/ft"
python3 -m supernet.cli.finetune --supernet "$OUT/run/last.pt" --arch topformer-tiny --data "$OUT/syn" --iters 80 \
    --device cuda --no-progress --json -o "$OUT/ft" --resume
t1=$(date +%s.%N)
for ckpt in "$OUT/run/last.pt --arch topformer-tiny" "$OUT/ft/last.pt"; do
  python3 -m supernet.cli.eval --ckpt $ckpt --data "$OUT/syn" --device cuda --json | python3 -c \
    "import json,sys; r=json.loads(sys.stdin.read()); print('eval', r['ckpt'], r['arch'], 'mIoU %.2f' % (100*r['mIoU']))"
done
python3 -c "import sys; print('fine-tune 80 steps: %.1f s' % (float(sys.argv[2]) - float(sys.argv[1])))" "$t0" "$t1"
tail -n 2 "$OUT/ft/log.csv"
