"""A real ``etf-search`` process killed with SIGKILL mid-search resumes from its log to the same result.

The accuracy signal is the real one (``supernet.evaluation.evaluator.SubnetEvaluator``: mIoU after BN recalibration) of a
seeded, untrained supernet on a tiny synthetic set: meaningless as accuracy, but a deterministic function of the
config, which is all resumption needs. The constraint is analytic GFLOPs (no latency table needed).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supernet.space import load_config
from search.log import read_log

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    pytest.importorskip("supernet.evaluation.evaluator", reason="needs the training/evaluation branch (supernet.evaluation.evaluator)")
    import torch

    from supernet.training.checkpoint import save_checkpoint
    from supernet.model import TopFormerSupernet
    from supernet.data.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("resume")
    make_synthetic(root / "data", train=8, val=6, size=48, classes=4, seed=0)
    torch.manual_seed(0)
    net = TopFormerSupernet(num_classes=4)
    ckpt = save_checkpoint({"model": net.state_dict(), "num_classes": 4, "iteration": 0}, root / "supernet.pt")
    return root, ckpt


def _argv(root: Path, ckpt: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "search.cli.search", "--target-gflops", "1.0", "--size", "512", "--no-export",
            "--supernet", str(ckpt), "--data", str(root / "data"), "--dataset", "synthetic", "--eval-size", "48",
            "--n-calib", "1", "--n-val", "6", "--batch", "4", "--budget", "24", "--quiet", "-o", str(out)]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@pytest.mark.timeout(900)
def test_sigkilled_search_resumes_to_the_same_result(tiny_setup):
    root, ckpt = tiny_setup
    full = root / "full"
    done = subprocess.run(_argv(root, ckpt, full), capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    full_rows = read_log(full / "search_log.csv")
    full_search = [r for r in full_rows if r.run != "presets"]
    assert len(full_search) == 24

    killed = root / "killed"
    proc = subprocess.Popen(_argv(root, ckpt, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=_env(), cwd=ROOT)
    deadline = time.time() + 600
    try:
        while time.time() < deadline and proc.poll() is None:
            if len([r for r in read_log(killed / "search_log.csv") if r.run != "presets"]) >= 6:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the search finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    partial = [r for r in read_log(killed / "search_log.csv") if r.run != "presets"]
    assert 6 <= len(partial) < 24
    assert not (killed / "best.json").exists()

    again = subprocess.run(_argv(root, ckpt, killed), capture_output=True, text=True, env=_env(), cwd=ROOT,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{len(partial)} replayed from it" in again.stdout
    resumed = [r for r in read_log(killed / "search_log.csv") if r.run != "presets"]
    assert [r.key for r in resumed] == [r.key for r in full_search]
    assert [r.accuracy for r in resumed] == pytest.approx([r.accuracy for r in full_search], abs=1e-9)
    assert [r.iteration for r in resumed] == list(range(1, 25))
    assert load_config(killed / "best.json") == load_config(full / "best.json")
