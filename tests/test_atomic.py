"""etf.common atomic writes: the content lands, a failure keeps the old file and leaves no temporary behind."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from etf.common import atomic_open, atomic_path, atomic_write, atomic_write_json


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_text_and_bytes_written_and_parent_created(tmp_path):
    text = tmp_path / "a" / "b" / "note.txt"
    assert atomic_write(text, "héllo\n", encoding="utf-8") == text
    assert text.read_text(encoding="utf-8") == "héllo\n"
    blob = tmp_path / "blob.bin"
    atomic_write(blob, b"\x00\x01\xff")
    assert blob.read_bytes() == b"\x00\x01\xff"
    atomic_write(blob, b"new")  # replaces an existing file
    assert blob.read_bytes() == b"new"
    assert _leftovers(tmp_path) == [] and _leftovers(text.parent) == []


def test_json(tmp_path):
    path = tmp_path / "x.json"
    atomic_write_json(path, {"b": 1, "a": [1, 2]}, indent=2)
    assert path.read_text() == json.dumps({"b": 1, "a": [1, 2]}, indent=2) + "\n"
    with pytest.raises(TypeError):  # unserialisable: nothing written, old content kept
        atomic_write_json(path, {"x": object()})
    assert json.loads(path.read_text()) == {"b": 1, "a": [1, 2]}
    assert _leftovers(tmp_path) == []
    atomic_write_json(path, {"when": object}, default=lambda o: "obj")
    assert json.loads(path.read_text()) == {"when": "obj"}


@pytest.mark.parametrize("mode", ["w", "wb"])
def test_failure_mid_write_keeps_old_file_and_no_temp(tmp_path, mode):
    path = tmp_path / "out.dat"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_open(path, mode) as fh:
            fh.write("partial" if mode == "w" else b"partial")
            fh.flush()
            raise RuntimeError("boom")
    assert path.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_interrupt_mid_write_keeps_old_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(path) as fh:
            fh.write("new")
            raise KeyboardInterrupt
    assert path.read_text() == "old" and _leftovers(tmp_path) == []


def test_failure_without_old_file_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        with atomic_path(tmp_path / "model.tflite") as tmp:
            tmp.write_bytes(b"half a model")
            raise ValueError("converter failed")
    assert list(tmp_path.iterdir()) == []


def test_temp_file_is_a_hidden_unique_sibling(tmp_path):
    path = tmp_path / "sub" / "table.csv"
    seen = []
    for _ in range(2):
        with atomic_open(path) as fh:
            tmp = Path(fh.name)
            seen.append(tmp)
            assert tmp.parent == path.parent and tmp.name.startswith(".table.csv.") and tmp.name.endswith(".tmp")
            assert tmp.exists()
            fh.write("x")
        assert not tmp.exists()
    assert seen[0] != seen[1]
    with atomic_path(path) as tmp:
        assert tmp.parent == path.parent and tmp != path
        tmp.write_text("y")
    assert path.read_text() == "y"


def test_dataframe_csv(tmp_path):
    df = pd.DataFrame({"key": ["a", "b"], "ms": [1.5, 2.25]})
    path = tmp_path / "t.csv"
    with atomic_open(path, "w", newline="") as fh:
        df.to_csv(fh, index=False)
    df.to_csv(tmp_path / "direct.csv", index=False)
    assert path.read_bytes() == (tmp_path / "direct.csv").read_bytes()
    pd.testing.assert_frame_equal(pd.read_csv(path), df)


def test_torch_save(tmp_path):
    path = tmp_path / "ckpt.pt"
    state = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "iteration": 7}
    with atomic_open(path, "wb") as fh:
        torch.save(state, fh)
    back = torch.load(path, weights_only=False)
    assert back["iteration"] == 7 and torch.equal(back["model"]["w"], state["model"]["w"])
    with pytest.raises(RuntimeError):
        with atomic_open(path, "wb") as fh:
            torch.save({"iteration": 8}, fh)
            raise RuntimeError("killed before the rename")
    assert torch.load(path, weights_only=False)["iteration"] == 7
    assert _leftovers(tmp_path) == []


def test_bad_mode(tmp_path):
    with pytest.raises(ValueError):
        with atomic_open(tmp_path / "x", "a"):
            pass
