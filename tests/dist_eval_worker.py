"""Run by tests/test_eval_distributed.py, alone or under torchrun: score a few subnets of a checkpoint with
SubnetEvaluator (per-image confusion matrices) and evaluate_dataset, and write what this rank got to OUT/rank{r}.json.

    python -m tests.dist_eval_worker CKPT DATA SIZE OUT
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from etf.common import atomic_write_json
from supernet.data.datasets import build_dataset
from supernet.recalibration import recalibrate_bn
from supernet.evaluation.evaluator import SubnetEvaluator, evaluate_dataset
from supernet.presets import PRESETS
from supernet.space import TABLE1
from supernet.training.distributed import init_from_env, shutdown


def main(argv: list[str]) -> None:
    ckpt, data, size, out = argv[0], argv[1], int(argv[2]), Path(argv[3])
    torch.set_num_threads(1)
    info = init_from_env("cpu")
    # batch 3 over 8 images: batches of 3, 3, 2 dealt out unevenly over 2 ranks
    ev = SubnetEvaluator.from_checkpoint(ckpt, data, "synthetic", size, n_calib=2, n_val=None, batch=3)
    cfgs = {"tiny": PRESETS["topformer-tiny"], "min": TABLE1.min_config(), "sample": TABLE1.sample(3)}
    result = {"world_size": info.world_size, "per_image": {}, "miou": {}, "dataset_miou": {}}
    for name, cfg in cfgs.items():
        result["per_image"][name] = ev.per_image(cfg).tolist()
        result["miou"][name] = ev.evaluate(cfg)
    ds = build_dataset("synthetic", data, "val", size, train=False)
    net = ev.supernet
    for name, cfg in cfgs.items():
        net.set_active_subnet(cfg)
        recalibrate_bn(net, ev.calib_batches)
        summary = evaluate_dataset(net, ds, torch.device("cpu"), progress=False)
        ev.restore_bn()
        result["dataset_miou"][name] = [summary["mIoU"], summary["pixels"], summary["images"]]
    atomic_write_json(out / f"rank{info.rank}.json", result)
    shutdown(info)


if __name__ == "__main__":
    main(sys.argv[1:])
