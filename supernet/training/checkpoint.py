"""Supernet checkpoints: atomic writes, one-line errors for unreadable files, and ``load_supernet``.

Format (the export and search tools rely on it)::

    {"model": supernet.state_dict(), "num_classes": C, "iteration": i,
     "optimizer": ..., "scheduler": ..., "rng": ..., "args": {...}}
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from etf.common import EtfError, atomic_open
from supernet.model import TopFormerSupernet


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
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises many types for corrupt/truncated/non-torch files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
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
