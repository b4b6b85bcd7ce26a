"""Shared set-up for the training/evaluation tests: a tiny synthetic set and one short real training run,
made once per pytest session (under pytest's base temp folder) and reused by every test module."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from supernet.data.synthetic import make_synthetic
from supernet.training.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32  # train crop and validation short side: the smallest the synthetic generator draws
TINY_ITERS = 6


def tiny_dataset(base: Path) -> Path:
    """16 train + 8 val synthetic 32x32 images with 5 classes (idempotent)."""
    root = base / "etf_tiny_synthetic"
    make_synthetic(root, train=16, val=8, size=SIZE, classes=5, seed=0)
    return root


def tiny_run(base: Path) -> Path:
    """A 6-step supernet training run on :func:`tiny_dataset`; returns its ``last.pt`` (made once)."""
    out = base / "etf_tiny_run"
    ckpt = out / "last.pt"
    if not ckpt.exists():
        cfg = TrainConfig(data=str(tiny_dataset(base)), dataset="synthetic", out=str(out), iters=TINY_ITERS,
                          batch=4, size=SIZE, lr=2e-3, warmup_iters=1, num_random=1, workers=0, seed=0,
                          ckpt_every=TINY_ITERS, progress=False)
        train(cfg)
    return ckpt


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_dataset(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(tmp_path_factory.getbasetemp())


def run_cli(module: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m module args`` from the repository root with this interpreter."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
