"""The output heads a deployed TopFormer can end in: the one definition export, the shape trace and the latency
operators read.

TopFormer computes class logits at 1/8 of the input. What the shipped model does after that is the *head*:

- ``logits8`` (the default everywhere): the logits at 1/8 resolution, NHWC float32 ``1 x H/8 x W/8 x C``.
  TopFormer's own deployment; the app upsamples (or not) what it needs.
- ``labels``: what an app consumes: the argmax over classes at 1/8 resolution, then a nearest upsample of the
  label map to the input size, int32 ``1 x H x W x 1``. Argmax first means the upsample moves one integer per
  pixel instead of C floats. Chosen over PP-MobileSeg's "valid interpolation" (VIM: bilinear upsample of only
  the classes present in the low-resolution argmax, then argmax at full resolution), which needs ``unique``,
  a data-dependent shape a static TFLite graph cannot hold; its static top-K form would still upsample K float
  maps and take a full-resolution argmax over them (K x H x W elements against our C x H/8 x W/8). The price
  is boundary detail: labels are constant on 8 x 8 blocks (``benchmarks/bench_export.py --heads`` prints how
  often they agree with the ``logits`` head's full-resolution argmax).
- ``logits``: today's full-resolution float logits (bilinear, align_corners=False), ``1 x H x W x C``: at 512 px
  and 150 classes the resize is most of a small net's time.

``Deployed(net, head)`` is the deployed module; :func:`apply_head` is the head alone (the latency operators
build it to time it); :func:`output_spec` says what the exported file's output is.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: Every head, default first.
HEADS = ("logits8", "labels", "logits")
#: The head used when none is named: TopFormer's deployment (logits at 1/8).
DEFAULT_HEAD = "logits8"
#: The head that files written before heads existed were built with (full-resolution logits).
LEGACY_HEAD = "logits"
#: Resolution of the network's logits relative to the input (the head works on the first injection level).
LOGITS_STRIDE = 8


@dataclass(frozen=True)
class OutputSpec:
    """What a deployed model returns for one head: tensor name, NHWC shape, dtype."""

    head: str
    name: str
    shape: tuple[int, int, int, int]
    dtype: str
    layout: str = "NHWC"

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "layout": self.layout, "dtype": self.dtype,
                "head": self.head}


def check_head(head: str) -> str:
    """``head`` if it is a known head, else a ValueError naming the choices (callers turn it into one line)."""
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    return head


def output_spec(head: str, size: int | Sequence[int], num_classes: int,
                low_hw: tuple[int, int] | None = None) -> OutputSpec:
    """The output of the deployed model with ``head`` on an input of ``size`` (int or (H, W)); ``low_hw`` is the
    logits' (H, W) (default: ``ceil(side / 8)``, what the network gives for any side)."""
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    lh, lw = low_hw or (-(-h // LOGITS_STRIDE), -(-w // LOGITS_STRIDE))
    check_head(head)
    if head == "logits8":
        return OutputSpec(head, "logits", (1, lh, lw, num_classes), "float32")
    if head == "labels":
        return OutputSpec(head, "labels", (1, h, w, 1), "int32")
    return OutputSpec(head, "logits", (1, h, w, num_classes), "float32")


#: The permutation that puts the copies of :func:`nearest_up` in place: (n, c, fh, fw, h, w) -> (n, c, h, fh, w, fw).
#: Export's transpose audit recognises it (``android_bench.export.oplist``): the one TRANSPOSE the labels head needs.
UPSAMPLE_PERM = (0, 1, 4, 2, 5, 3)


def nearest_up(t: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Nearest upsample of a (N, C, h, w) map of any dtype to ``size``: ``out[i, j] = t[i * h // H, j * w // W]``.

    For an integer factor (the deployed sizes) it is fh*fw copies of the whole map put in place by one transpose:
    exact for any dtype, no float round trip (so an integer map is left alone by the int8 quantizer), lowered to
    CONCATENATION (block copies) + TRANSPOSE. A broadcast (``reshape -> expand -> reshape``) computes the same but
    lowers to BROADCAST_TO, which TFLite runs in its per-element reference kernel: 3.6 ms against 0.46 ms for a
    512x512 label map on this CPU (``benchmarks/bench_labels_head.py``). Otherwise a float nearest resize (exact
    for labels below 2**24)."""
    n, c, h, w = t.shape
    hh, ww = int(size[0]), int(size[1])
    if hh % h == 0 and ww % w == 0:
        fh, fw = hh // h, ww // w
        copies = torch.cat([t.unsqueeze(2)] * (fh * fw), dim=2) if fh * fw > 1 else t.unsqueeze(2)
        return copies.reshape(n, c, fh, fw, h, w).permute(*UPSAMPLE_PERM).reshape(n, c, hh, ww)
    return F.interpolate(t.float(), size=(hh, ww), mode="nearest").to(t.dtype)


def labels_low(logits: torch.Tensor) -> torch.Tensor:
    """Per-pixel class of (N, C, h, w) logits as int32 (N, 1, h, w). The argmax reads the channel-last order the
    converter lowers to (an argmax over NCHW's axis 1 left a TRANSPOSE of the whole logits map in the graph);
    ties go to the lowest class index, as in ``torch.argmax`` and TFLite's ARG_MAX."""
    return logits.permute(0, 2, 3, 1).argmax(-1).unsqueeze(1).to(torch.int32)


def apply_head(head: str, logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """The head on the network's (N, C, h, w) logits for an input of (H, W) = ``size`` (NCHW out)."""
    if head == "logits8":
        return logits
    if head == "labels":
        return nearest_up(labels_low(logits), size)
    if head == "logits":
        return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
    raise ValueError(check_head(head))


class Deployed(nn.Module):
    """A segmentation net (NCHW logits at 1/8) followed by ``head``: the model that gets exported and timed."""

    def __init__(self, net: nn.Module, head: str = DEFAULT_HEAD):
        super().__init__()
        self.net = net
        self.head = check_head(head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return apply_head(self.head, self.net(x), x.shape[2:])


class HeadOnly(nn.Module):
    """The head alone on logits of the size it sees, for an input of ``out`` (H, W): the latency operator."""

    def __init__(self, head: str, out: Sequence[int]):
        super().__init__()
        self.head = check_head(head)
        self.out = (int(out[0]), int(out[1]))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return apply_head(self.head, logits, self.out)


__all__ = ["HEADS", "DEFAULT_HEAD", "LEGACY_HEAD", "LOGITS_STRIDE", "OutputSpec", "check_head", "output_spec",
           "nearest_up", "labels_low", "apply_head", "Deployed", "HeadOnly"]
