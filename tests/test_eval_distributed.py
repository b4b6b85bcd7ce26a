"""Evaluation past one machine: under torchrun (2 gloo processes on CPU) SubnetEvaluator and evaluate_dataset
shard the validation images and all-reduce integer confusion matrices, so both ranks get exactly (bit for bit)
what one process gets."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train_helpers import ROOT, SIZE

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.timeout(1200)
def test_two_gloo_processes_score_exactly_like_one(tiny_ckpt: Path, tiny_data: Path, tmp_path: Path) -> None:
    args = ["-m", "tests.dist_eval_worker", str(tiny_ckpt), str(tiny_data), str(SIZE)]
    _run([sys.executable, *args, str(tmp_path / "one")])
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
          *args, str(tmp_path / "two")])
    one = json.loads((tmp_path / "one" / "rank0.json").read_text())
    ranks = [json.loads((tmp_path / "two" / f"rank{r}.json").read_text()) for r in range(2)]
    assert one["world_size"] == 1 and [r["world_size"] for r in ranks] == [2, 2]
    for got in ranks:
        assert got["per_image"] == one["per_image"]  # integer matrices, every image, exactly
        assert got["miou"] == one["miou"] and got["dataset_miou"] == one["dataset_miou"]
    assert len(one["per_image"]["tiny"]) == 8 and one["dataset_miou"]["tiny"][2] == 8
    # every image contributed (one rank's share alone would leave rows of zeros)
    assert all(sum(map(sum, m)) > 0 for m in one["per_image"]["tiny"])


@pytest.mark.timeout(1200)
def test_etf_search_under_torchrun_takes_the_same_steps_as_one_process(tiny_ckpt: Path, tiny_data: Path,
                                                                       tmp_path: Path) -> None:
    """etf-search under torchrun (2 gloo processes): the same evaluations, mIoUs and winner as one process;
    rank 0 alone writes the log (no duplicated rows) and the summary; the report split is scored too."""
    search = ["-m", "search.cli.search", "--target-gflops", "1.0", "--no-export", "--supernet", str(tiny_ckpt),
              "--data", str(tiny_data), "--dataset", "synthetic", "--eval-size", str(SIZE), "--n-calib", "1",
              "--n-val", "4", "--batch", "2", "--budget", "4", "--quiet"]
    _run([sys.executable, *search, "-o", str(tmp_path / "one")])
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
          *search, "-o", str(tmp_path / "two")])
    one, two = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("one", "two"))
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert (tmp_path / "one" / "best.json").read_text() == (tmp_path / "two" / "best.json").read_text()
    assert one["best_accuracy"] == two["best_accuracy"] and one["evaluations"] == two["evaluations"]
    assert one["report"]["winner"]["miou"] == two["report"]["winner"]["miou"]
    from search.log import read_log

    log_one, log_two = (read_log(tmp_path / d / "search_log.csv") for d in ("one", "two"))
    assert len(log_one) == len(log_two) > 0  # rank 1 wrote nothing
    assert [(r.key, r.accuracy) for r in log_one] == [(r.key, r.accuracy) for r in log_two]
