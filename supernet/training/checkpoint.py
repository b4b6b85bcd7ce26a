"""Supernet checkpoints: atomic writes, one-line errors for unreadable files, and ``load_supernet``.

Checkpoints are read with ``torch.load(weights_only=True)``: tensors, numbers, strings, lists, tuples and
dicts only (etf-train stores nothing else); a file that holds anything else (a pickled class or function)
is refused with one line, nothing of it runs.

Format (the export and search tools rely on it)::

    {"model": supernet.state_dict(), "num_classes": C, "iteration": i,
     "optimizer": ..., "scheduler": ..., "rng": ..., "args": {...}}
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

try:
    from numpy._core import multiarray as np_multiarray
except ImportError:  # numpy < 2
    from numpy.core import multiarray as np_multiarray

from etf.common import EtfError, atomic_open
from supernet.model import TopFormerSupernet


#: What checkpoints of etf before weights_only stored beyond torch's own allow-list: the NumPy RNG state
#: (a uint32 array). Allowed only while reading a checkpoint, so those runs still resume; nothing else is.
_OLD_ETF_GLOBALS: list = [np.ndarray, np.dtype, np.dtypes.UInt32DType, np_multiarray._reconstruct,
                          (np_multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),  # saved by numpy 1
                          (np_multiarray._reconstruct, "numpy._core.multiarray._reconstruct")]  # by numpy 2


def _refused_globals(path: Path, msg: str) -> list[str]:
    """The globals (classes, functions) a refused ``path`` would import beyond what is allowed, found by
    scanning the file (nothing of it runs) or, failing that, in torch's refusal message ``msg``."""
    allowed = {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}" for g in _OLD_ETF_GLOBALS}
    try:
        found = [g for g in torch.serialization.get_unsafe_globals_in_checkpoint(path) if g not in allowed]
    except Exception:
        found = []
    if not found:  # e.g. a NumPy array of another dtype: only torch's message names the refused class
        found = [a or b for a, b in re.findall(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>", msg)]
    return found


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` with ``torch.save`` atomically (a killed save leaves the previous checkpoint whole)."""
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        torch.save(state, fh)
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict; a missing, unreadable or foreign file raises a one-line EtfError."""
    path = Path(path)
    if not path.exists():
        raise EtfError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise EtfError(f"checkpoint {path} is not a file")
    try:
        with torch.serialization.safe_globals(_OLD_ETF_GLOBALS):
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt/truncated/non-torch files
        msg = str(exc).strip()
        if isinstance(exc, pickle.UnpicklingError) and msg.startswith("Weights only load failed"):
            unsafe = _refused_globals(path, msg)
            if unsafe:
                raise EtfError(f"refusing to load checkpoint {path}: it holds {', '.join(unsafe[:3])}"
                               f"{' and more' if len(unsafe) > 3 else ''}, which etf never stores (loading it "
                               f"could run code)") from None
            # not a pickle of allowed things, and no class named: garbage, or something else refused
            inner = msg.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()
            raise EtfError(f"cannot read checkpoint {path}: not a torch checkpoint of tensors and plain data "
                           f"({inner[0].strip() if inner and 'WeightsUnpickler' in msg else 'refused'})") from None
        first = msg.splitlines()[0] if msg else type(exc).__name__
        raise EtfError(f"cannot read checkpoint {path}: {first}") from None
    if not isinstance(state, dict):
        raise EtfError(f"checkpoint {path} is not a dict (got {type(state).__name__})")
    return state


def state_dict_of(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The model weights inside a checkpoint dict: its ``model`` or ``state_dict`` entry, or the dict itself."""
    for key in ("model", "state_dict"):
        if isinstance(state.get(key), dict):
            return state[key]
    if state and all(isinstance(v, torch.Tensor) for v in state.values()):
        return state
    raise EtfError("checkpoint holds no model weights (no 'model' or 'state_dict' entry)")


def load_supernet(path: str | Path, map_location: str | torch.device = "cpu") -> TopFormerSupernet:
    """Rebuild the :class:`TopFormerSupernet` saved in an ``etf-train`` checkpoint (in eval mode)."""
    state = read_checkpoint(path, map_location)
    if "num_classes" not in state or "model" not in state:
        raise EtfError(f"{path} is not an etf-train supernet checkpoint (needs 'model' and 'num_classes')")
    net = TopFormerSupernet(num_classes=int(state["num_classes"]))
    try:
        net.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise EtfError(f"{path} does not match the supernet of this version: "
                       f"{str(exc).splitlines()[0]}") from None
    return net.eval()


def warm_start(model: nn.Module, path: str | Path) -> tuple[list[str], list[str]]:
    """Copy every tensor of the checkpoint at ``path`` whose name and shape match ``model``'s (e.g. an
    ImageNet-pretrained backbone renamed to supernet keys); return (loaded names, skipped names)."""
    source = state_dict_of(read_checkpoint(path))
    own = model.state_dict()
    loaded, skipped = [], []
    for name, tensor in source.items():
        key = name[len("module."):] if name.startswith("module.") else name
        if key in own and isinstance(tensor, torch.Tensor) and own[key].shape == tensor.shape:
            own[key] = tensor.to(own[key].dtype)
            loaded.append(key)
        else:
            skipped.append(name)
    if not loaded:
        raise EtfError(f"warm start {path}: no tensor matches the supernet by name and shape "
                       f"({len(skipped)} tensors, e.g. {skipped[:3]})")
    model.load_state_dict(own)
    return loaded, skipped
