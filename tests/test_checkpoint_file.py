"""Checkpoints are read with ``torch.load(weights_only=True)``: etf-train's own files round-trip, checkpoints of
etf before that still resume, and a file holding anything else is refused with one line, without running it."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from etf.common import EtfError
from supernet.training.checkpoint import load_supernet, read_checkpoint, save_checkpoint, warm_start
from supernet.model import TopFormerSupernet
from supernet.training.train import rng_state, set_rng_state


class _Payload:
    """Unpickling this creates ``marker``: proof that a loader ran a pickle."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_an_etf_train_checkpoint_round_trips_under_plain_weights_only(tiny_ckpt: Path, tmp_path: Path) -> None:
    # no allow-list context at all: only tensors and plain data in the file
    state = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    assert {"model", "num_classes", "iteration", "optimizer", "scheduler", "rng", "args"} <= set(state)
    numpy_state = state["rng"]["ranks"][0]["numpy"]
    assert isinstance(numpy_state, dict) and len(numpy_state["key"]) == 624
    assert isinstance(state["args"], dict) and state["args"]["dataset"] == "synthetic"
    copy = save_checkpoint(state, tmp_path / "copy.pt")
    again = read_checkpoint(copy)
    assert again["iteration"] == state["iteration"] and again["args"] == state["args"]
    assert all(torch.equal(t, again["model"][k]) for k, t in state["model"].items())
    assert load_supernet(copy).num_classes == state["num_classes"]


def test_rng_states_restore_exactly_from_plain_data(tmp_path: Path) -> None:
    arch = random.Random(3)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in NumPy's state
    path = save_checkpoint({"rng": rng_state(arch)}, tmp_path / "rng.pt")
    want = (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3).tolist(), arch.random())
    set_rng_state(torch.load(path, weights_only=True)["rng"], arch)
    assert (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3).tolist(), arch.random()) == want


def test_a_checkpoint_of_etf_before_weights_only_still_resumes(tmp_path: Path) -> None:
    arch = random.Random(0)
    np.random.seed(7)
    old_rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
               "arch": arch.getstate()}  # NumPy's tuple with a uint32 array, as etf stored it
    path = tmp_path / "old.pt"
    torch.save({"model": {}, "num_classes": 5, "rng": {"ranks": [old_rng]}}, path)
    state = read_checkpoint(path)
    want = np.random.random(4).tolist()
    np.random.seed(99)
    set_rng_state(state["rng"]["ranks"][0], arch)
    assert np.random.random(4).tolist() == want


def test_a_malicious_checkpoint_is_refused_in_one_line_and_nothing_runs(tmp_path: Path,
                                                                         tiny_ckpt: Path) -> None:
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.pt"
    weights = read_checkpoint(tiny_ckpt)
    torch.save({**weights, "extra": _Payload(marker)}, bad)  # a real checkpoint plus one code-running object
    for load in (read_checkpoint, load_supernet, lambda p: warm_start(TopFormerSupernet(num_classes=5), p)):
        with pytest.raises(EtfError, match="refusing to load checkpoint .*io.open.* could run code") as info:
            load(bad)
        assert "\n" not in str(info.value)
    assert not marker.exists()
    other = tmp_path / "float_array.pt"  # a NumPy array etf never stores: refused too, named
    torch.save({"model": {}, "a": np.zeros(3)}, other)
    with pytest.raises(EtfError, match="refusing to load checkpoint .*Float64DType") as info:
        read_checkpoint(other)
    assert "\n" not in str(info.value)
