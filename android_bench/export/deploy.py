"""Build the model that gets deployed (exported): a config plus optional weights and an output head ->
``Deployed(TopFormer, head)`` (``supernet.heads``: logits8 / labels / logits).

Weights come from a supernet checkpoint (``torch.save({"model": state_dict, "num_classes": n, ...})`` of a
:class:`TopFormerSupernet`; the subnet is extracted) or a static TopFormer's state_dict. Without weights the
net gets random but *non-degenerate* weights: TopFormer zero-initialises the attention projection's BN, and
the converter would constant-fold the whole attention away, giving a file that is faster than the real model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from etf.common import EtfError
from supernet.heads import DEFAULT_HEAD, HEADS, Deployed
from supernet.space import ArchConfig, TABLE1
from supernet.topformer import TopFormer


def randomize_batchnorm_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm random non-zero affine weights and running statistics (in place), so that no
    branch of an untrained net is identically zero and the exported graph has every operator of the real one."""
    gen = torch.Generator().manual_seed(seed)
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm2d):
            c = bn.num_features
            with torch.no_grad():
                bn.weight.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)
                bn.bias.copy_(torch.randn(c, generator=gen) * 0.1)
                bn.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                bn.running_var.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)
    return module




SUPERNET = "supernet"
STATIC = "static"


def _kind_and_classes(state: dict[str, Any], path: Path) -> tuple[str, int]:
    """Whether ``state`` is a supernet's or a static TopFormer's state_dict, and its number of classes."""
    if "classifier.weight" in state and any(k.startswith("vit_stages.") for k in state):
        return SUPERNET, int(state["classifier.weight"].shape[0])
    if "head.classifier.weight" in state and any(k.startswith("transformer.") for k in state):
        return STATIC, int(state["head.classifier.weight"].shape[0])
    raise EtfError(f"checkpoint {path} holds neither a TopFormerSupernet nor a TopFormer state_dict "
                   f"(no classifier / transformer weights among its {len(state)} entries)")


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], int | None]:
    """The state_dict in a checkpoint file (``{"model": state_dict, "num_classes": n, ...}`` or a bare
    state_dict) and its recorded ``num_classes`` (None when absent). Prefixes ``module.`` (DDP) and ``net.``
    (:class:`~supernet.heads.Deployed`) are stripped. Any unreadable file is an :class:`EtfError`."""
    path = Path(path)
    if not path.is_file():
        raise EtfError(f"weights file not found: {path}" if not path.exists() else f"weights path is not a file: {path}")
    # etf-train checkpoints carry optimiser and RNG state next to the weights, which a weights-only reader
    # refuses; read them with the training side's reader (same one-line errors) and take the weights out.
    from supernet.training.checkpoint import read_checkpoint as read_any

    obj = read_any(path)
    num_classes = None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        num_classes = obj.get("num_classes")
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise EtfError(f"checkpoint {path} holds no state_dict (expected {{'model': state_dict, 'num_classes': n}} "
                       "or a state_dict)")
    state = {}
    for key, value in obj.items():
        for prefix in ("module.", "net."):
            key = key[len(prefix):] if key.startswith(prefix) else key
        state[key] = value
    if num_classes is not None and not isinstance(num_classes, int):
        raise EtfError(f"checkpoint {path}: num_classes is {num_classes!r}, not an integer")
    return state, num_classes


def checkpoint_kind(path: str | Path) -> str:
    """``supernet`` or ``static``: which kind of state_dict the checkpoint at ``path`` holds (one-line errors)."""
    state, _ = read_checkpoint(path)
    return _kind_and_classes(state, Path(path))[0]


def _load_strict(net: nn.Module, state: dict[str, torch.Tensor], path: Path, what: str) -> None:
    """``load_state_dict`` whose mismatches become one line naming the first offending key."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        first = (f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}" if unexpected else
                 f"{wrong[0]} has shape {tuple(state[wrong[0]].shape)}, the {what} needs {tuple(own[wrong[0]].shape)}")
        raise EtfError(f"checkpoint {path} does not fit the {what}: {len(missing)} missing, {len(unexpected)} "
                       f"unexpected, {len(wrong)} mis-shaped tensors (first: {first})")
    net.load_state_dict(state, strict=True)


def build_deployed_model(cfg: ArchConfig, weights: str | Path | None = None, num_classes: int | None = None,
                         seed: int = 0, calib_batches: list[torch.Tensor] | None = None,
                         head: str = DEFAULT_HEAD) -> tuple[Deployed, int, str]:
    """The deployed model ``Deployed(TopFormer(cfg), head)`` in eval mode, its number of classes and where its
    weights came from (``random``, ``supernet`` or ``static``).

    With ``weights`` the subnet ``cfg`` is extracted from a supernet checkpoint or loaded from a static
    TopFormer state_dict; ``num_classes`` (if given) must agree with the file. Without weights the net is
    seeded-random with non-degenerate BatchNorms (see :func:`randomize_batchnorm_`), ``num_classes`` default 150.
    With ``calib_batches`` the subnet's BN statistics are recalibrated on them (exactly as
    ``SubnetEvaluator`` does) before extraction; only a supernet checkpoint can be recalibrated.
    """
    cfg = TABLE1.validate(cfg)
    if head not in HEADS:
        raise EtfError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    if num_classes is not None and num_classes < 1:
        raise EtfError(f"number of classes must be at least 1, got {num_classes}")
    if weights is None:
        if calib_batches:
            raise EtfError("BN recalibration needs --weights (a supernet checkpoint); random weights have no "
                           "statistics worth recalibrating")
        with torch.random.fork_rng(devices=[]):  # seeded conv weights without touching the caller's RNG
            torch.manual_seed(seed)
            net = randomize_batchnorm_(TopFormer(cfg, num_classes or 150), seed)
        return Deployed(net, head).eval(), num_classes or 150, "random"
    path = Path(weights)
    state, recorded = read_checkpoint(path)
    kind, found = _kind_and_classes(state, path)
    if recorded is not None and recorded != found:
        raise EtfError(f"checkpoint {path} says num_classes={recorded} but its classifier has {found} outputs")
    if num_classes is not None and num_classes != found:
        raise EtfError(f"checkpoint {path} has {found} classes, not the {num_classes} asked for (drop --classes)")
    if kind == SUPERNET:
        from supernet.model import TopFormerSupernet  # the elastic machinery only when a supernet is read

        supernet = TopFormerSupernet(found)
        _load_strict(supernet, state, path, "TopFormerSupernet")
        if calib_batches:
            from supernet.recalibration import recalibrate_bn

            recalibrate_bn(supernet, calib_batches, cfg)
        net = supernet.eval().get_active_subnet(cfg)
    elif calib_batches:
        raise EtfError(f"{path} is a static TopFormer checkpoint: its BN statistics ship as stored (recalibration "
                       f"applies to a subnet of a supernet checkpoint); drop --data")
    else:
        net = TopFormer(cfg, found)
        _load_strict(net, state, path, f"TopFormer of arch {cfg.key()}")
    return Deployed(net, head).eval(), found, kind
