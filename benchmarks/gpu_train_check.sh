#!/usr/bin/env bash
# The CUDA/NCCL training path, once: etf-train under torchrun (NCCL backend on a GPU, gloo on a CPU),
# stopped and resumed, then the sharded evaluator under torchrun. Prints timings and the final mIoU.
# Usage: bash benchmarks/gpu_train_check.sh [OUTDIR] [ITERS]    (needs torch; runs from the repo root)
set -euo pipefail
OUT=${1:-/tmp/etf-gpu-check}; ITERS=${2:-300}; HALF=$((ITERS / 2))
NPROC=${NPROC:-1}; SIZE=${SIZE:-128}; BATCH=${BATCH:-16}
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
mkdir -p "$OUT"
python3 - <<'PY'
import torch, platform
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-",
      "nccl", torch.distributed.is_nccl_available())
PY
t0=$(date +%s.%N)
python3 -m supernet.cli.make_synthetic -o "$OUT/syn" --train 400 --val 100 --size "$SIZE" --json
t1=$(date +%s.%N)
run() { torchrun --standalone --nproc_per_node "$NPROC" -m "$@"; }
# First half, then --resume with a larger --iters (an allowed override)
run supernet.cli.train --data "$OUT/syn" --dataset synthetic --size "$SIZE" --batch "$BATCH" --iters "$HALF" \
    --lr 2e-3 --head-lr-mult 1 --no-progress --json -o "$OUT/run"
t2=$(date +%s.%N)
run supernet.cli.train --data "$OUT/syn" --dataset synthetic --size "$SIZE" --batch "$BATCH" --iters "$ITERS" \
    --no-progress --json -o "$OUT/run" --resume
t3=$(date +%s.%N)
for arch in max min topformer-tiny; do
  run supernet.cli.eval --ckpt "$OUT/run/last.pt" --arch "$arch" --data "$OUT/syn" --json | python3 -c \
    "import json,sys; r=json.loads(sys.stdin.read()); print('eval $arch: mIoU %.2f on %d images' % (100*r['mIoU'], r['images']))"
done
t4=$(date +%s.%N)
python3 - "$t0" "$t1" "$t2" "$t3" "$t4" <<'PY'
import sys
t = [float(x) for x in sys.argv[1:]]
print(f"timings: data {t[1]-t[0]:.1f} s, train part 1 {t[2]-t[1]:.1f} s, resume {t[3]-t[2]:.1f} s, eval x3 {t[4]-t[3]:.1f} s")
PY
tail -n 3 "$OUT/run/log.csv"
