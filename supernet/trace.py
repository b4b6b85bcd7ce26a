"""One shape trace of a TopFormer subnet: every part of the network with its shapes and hyper-parameters.

``trace(cfg, size, head=...)`` walks a config through the network exactly as ``supernet.topformer.TopFormer``
(wrapped in ``supernet.heads.Deployed`` with that output head) builds and runs it: stem -> each MBConv block ->
the pyramid pool to the token grid -> each transformer block -> each Semantics Injection Module -> the head ->
the output head's last step: nothing for ``logits8``, the argmax + nearest label upsample for ``labels``
(:class:`LabelsPart`), the bilinear resize for ``logits`` (:class:`ResizePart`). Each step is a frozen
:class:`Part` with its input shape(s) and output shape as (C, H, W), its stride and its hyper-parameters.

Why: the network's shapes used to be worked out by hand in four places (``supernet.size.model_size``,
``latency.operators.decompose``, the predictor's part cache and ``latency.plan.stage_sides``); a change to the
space had to be made in all four. Now they all read the trace, so the rules live here once:

- convolutions pad ``k // 2`` ('same'), so a side becomes ``conv_out(n, k, s)`` (for the odd kernels of the
  space that is ``(n - 1) // s + 1``, independent of the kernel);
- a stage's first block has the stage's stride, later blocks stride 1; a block is residual when its stride
  is 1 and its input and output widths agree;
- the outputs of :data:`PYRAMID_STAGES` are average-pooled to the token grid, ``(side - 1) // 2 + 1`` of the
  coarsest pyramid map on each axis, and concatenated on channels (token dim = sum of their widths);
- a transformer block's value dim and MLP hidden width come from :class:`VitConfig`;
- :data:`INJECTION_LEVELS` get an injection module (local map at its pyramid resolution, global tokens at the
  token grid) and the head works at the resolution of the first of them.

Non-square inputs are supported (``size`` may be ``(H, W)``). The step builders (:func:`stem_part`,
:func:`stage_parts`, ...) are what :func:`trace` chains; the latency predictor uses them to expand one cached
part of a config without tracing the whole config. :func:`grid` gives the sides of the maps, which in this
space do not depend on the config (strides are per stage and padding is 'same').
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar, Sequence

from supernet.heads import DEFAULT_HEAD, check_head
from supernet.space import INJECTION_LEVELS, PYRAMID_STAGES, TABLE1, ArchConfig, SearchSpace, StageConfig, VitConfig

#: (height, width) of a feature map.
HW = tuple[int, int]
#: (channels, height, width) of a feature map (batch left out).
Shape = tuple[int, int, int]

#: Stride of the average pooling from the coarsest pyramid map to the token grid (``topformer.pool_tokens``).
TOKEN_STRIDE = 2


def conv_out(n: int, kernel: int, stride: int) -> int:
    """Output length of a 'same'-padded (pad = k // 2) convolution with an odd kernel."""
    return (n + 2 * (kernel // 2) - kernel) // stride + 1


def conv_hw(hw: HW, kernel: int, stride: int) -> HW:
    """:func:`conv_out` on both axes of a (H, W) map."""
    return conv_out(hw[0], kernel, stride), conv_out(hw[1], kernel, stride)


def token_side(n: int) -> int:
    """Side of the token grid pooled from a coarsest pyramid map of side ``n`` (``pool_tokens``)."""
    return (n - 1) // TOKEN_STRIDE + 1


def as_hw(size: int | Sequence[int]) -> HW:
    """An input size given as an int (square) or (H, W), as (H, W)."""
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


# ----------------------------------------------------------------------------------------------------------
# Parts
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """One part of the network: a name, its input shape(s) and output shape (C, H, W) and its stride.

    ``kind`` matches the latency operator kinds (``latency.operators.KINDS``); ``name`` is unique within a
    trace (``"stage3.block1"``, ``"vit2.block1"``, ``"injection1"``...), and its first dotted component is the
    ``group`` that ``model_size`` reports the part under (``"stage3"``, ``"vit2"``...). ``stride`` is the
    stride of the part's strided operation (a conv, the token pooling), 1 where it has none.
    """

    name: str
    inputs: tuple[Shape, ...]
    output: Shape
    stride: int
    kind: ClassVar[str] = "part"

    @property
    def group(self) -> str:
        """The breakdown name of ``model_size`` this part counts under (the name up to the first dot)."""
        return self.name.split(".", 1)[0]

    @property
    def cin(self) -> int:
        """Channels of the first input."""
        return self.inputs[0][0]

    @property
    def cout(self) -> int:
        """Channels of the output."""
        return self.output[0]

    @property
    def in_hw(self) -> HW:
        """(H, W) of the first input."""
        return self.inputs[0][1], self.inputs[0][2]

    @property
    def out_hw(self) -> HW:
        """(H, W) of the output."""
        return self.output[1], self.output[2]


@dataclass(frozen=True)
class StemPart(Part):
    """The stem: ``kernel`` x ``kernel`` conv (stride ``stride``) + BN + ReLU on the RGB input."""

    kernel: int
    kind: ClassVar[str] = "stem"


@dataclass(frozen=True)
class MBConvPart(Part):
    """One inverted-residual block: optional 1x1 expand, depthwise ``kernel``, 1x1 project, maybe residual."""

    kernel: int
    expansion: int
    residual: bool
    kind: ClassVar[str] = "mbconv"

    @property
    def hidden(self) -> int:
        """Width of the expanded (depthwise) layer: ``round(cin * expansion)``."""
        return int(round(self.cin * self.expansion))


@dataclass(frozen=True)
class PoolPart(Part):
    """Average-pool every pyramid map (the inputs) to the token grid and concatenate them on channels."""

    kind: ClassVar[str] = "pool"

    @property
    def widths(self) -> tuple[int, ...]:
        """Channels of each pyramid map, in pyramid order (their sum is the token dim)."""
        return tuple(s[0] for s in self.inputs)


@dataclass(frozen=True)
class TransformerPart(Part):
    """One transformer block on the token grid (``cin`` = ``cout`` = token dim)."""

    heads: int
    key_dim: int
    value_dim: int
    mlp_hidden: int
    kind: ClassVar[str] = "transformer"


@dataclass(frozen=True)
class InjectionPart(Part):
    """A Semantics Injection Module: inputs are the local pyramid map and its slice of the global tokens."""

    level: int
    kind: ClassVar[str] = "injection"

    @property
    def global_hw(self) -> HW:
        """(H, W) of the global tokens (the token grid)."""
        return self.inputs[1][1], self.inputs[1][2]


@dataclass(frozen=True)
class HeadPart(Part):
    """The head: resize + sum the injected maps (the inputs), fuse conv + BN + ReLU, 1x1 classifier."""

    fuse: str
    kind: ClassVar[str] = "head"

    @property
    def depthwise(self) -> bool:
        """Whether the fuse conv is depthwise."""
        return self.fuse == "depthwise"


@dataclass(frozen=True)
class ResizePart(Part):
    """The deployed model's final bilinear resize of the logits to the input size."""

    kind: ClassVar[str] = "resize"


@dataclass(frozen=True)
class LabelsPart(Part):
    """The ``labels`` head: argmax over the logits (the input) at their resolution, then a nearest upsample of
    the label map to the input size; output (1, H, W), int32."""

    kind: ClassVar[str] = "labels"


# ----------------------------------------------------------------------------------------------------------
# Step builders (what trace() chains)
# ----------------------------------------------------------------------------------------------------------


def stem_part(width: int, size: int | Sequence[int], space: SearchSpace = TABLE1) -> StemPart:
    """The stem of a ``width``-channel net on an RGB input of ``size``."""
    hw = as_hw(size)
    out = conv_hw(hw, space.stem_kernel, space.stem_stride)
    return StemPart("stem", ((3, *hw),), (width, *out), space.stem_stride, space.stem_kernel)


def stage_parts(index: int, cin: int, stage: StageConfig, in_hw: HW,
                space: SearchSpace = TABLE1) -> list[MBConvPart]:
    """The blocks of MBConv stage ``index`` (0-based) fed ``cin`` channels at ``in_hw``."""
    spec = space.stages[index]
    parts: list[MBConvPart] = []
    hw = in_hw
    for b in range(stage.depth):
        s = spec.stride if b == 0 else 1
        k, e = stage.kernels[b], stage.expansions[b]
        out = conv_hw(hw, k, s)
        parts.append(MBConvPart(f"stage{index + 1}.block{b + 1}", ((cin, *hw),), (stage.width, *out), s,
                                k, e, s == 1 and cin == stage.width))
        hw, cin = out, stage.width
    return parts


def pool_part(widths: Sequence[int], pyramid_hw: Sequence[HW]) -> PoolPart:
    """The pyramid pool of maps of ``widths`` channels at ``pyramid_hw`` to the token grid."""
    coarsest = pyramid_hw[-1]
    t = (token_side(coarsest[0]), token_side(coarsest[1]))
    return PoolPart("pool", tuple((w, *hw) for w, hw in zip(widths, pyramid_hw)), (sum(widths), *t), TOKEN_STRIDE)


def transformer_part(name: str, dim: int, vit: VitConfig, token_hw: HW) -> TransformerPart:
    """One block of a ViT stage with ``vit``'s choices on ``dim``-channel tokens at ``token_hw``."""
    shape = (dim, *token_hw)
    return TransformerPart(name, (shape,), shape, 1, vit.heads, vit.key_dim, vit.value_dim, vit.mlp_hidden(dim))


def injection_part(level: int, width: int, decoder_width: int, local_hw: HW, token_hw: HW) -> InjectionPart:
    """The injection module of pyramid ``level``: ``width`` channels in (local and global), decoder width out."""
    return InjectionPart(f"injection{level}", ((width, *local_hw), (width, *token_hw)),
                         (decoder_width, *local_hw), 1, level)


def head_part(decoder_width: int, fuse: str, num_classes: int, level_hw: Sequence[HW]) -> HeadPart:
    """The head over the injected maps at ``level_hw``; it works at the first (finest) one's resolution."""
    return HeadPart("head", tuple((decoder_width, *hw) for hw in level_hw), (num_classes, *level_hw[0]), 1, fuse)


def resize_part(num_classes: int, hw: HW, size: int | Sequence[int]) -> ResizePart:
    """The final bilinear resize of the ``num_classes`` logits from ``hw`` to the input ``size``."""
    return ResizePart("resize", ((num_classes, *hw),), (num_classes, *as_hw(size)), 1)


def labels_part(num_classes: int, hw: HW, size: int | Sequence[int]) -> LabelsPart:
    """The ``labels`` head's argmax of the ``num_classes`` logits at ``hw`` and label upsample to ``size``."""
    return LabelsPart("labels", ((num_classes, *hw),), (1, *as_hw(size)), 1)


def output_parts(head: str, num_classes: int, hw: HW, size: int | Sequence[int]) -> list[Part]:
    """The part(s) after the network's head for output ``head`` (``supernet.heads``), logits at ``hw``."""
    check_head(head)
    if head == "labels":
        return [labels_part(num_classes, hw, size)]
    if head == "logits":
        return [resize_part(num_classes, hw, size)]
    return []


# ----------------------------------------------------------------------------------------------------------
# The trace
# ----------------------------------------------------------------------------------------------------------


def trace(cfg: ArchConfig, size: int | Sequence[int] = 512, num_classes: int = 150,
          space: SearchSpace = TABLE1, head: str = DEFAULT_HEAD) -> list[Part]:
    """Every part of ``Deployed(TopFormer(cfg), head)`` at input ``size`` (an int or (H, W)), in execution order."""
    stem = stem_part(cfg.stem_width, size, space)
    parts: list[Part] = [stem]
    hw, cin = stem.out_hw, cfg.stem_width
    pyramid_hw: list[HW] = []
    for i, st in enumerate(cfg.stages[:len(space.stages)]):
        blocks = stage_parts(i, cin, st, hw, space)
        parts += blocks
        hw, cin = blocks[-1].out_hw, st.width
        if i in PYRAMID_STAGES:
            pyramid_hw.append(hw)
    widths = cfg.pyramid_widths
    pool = pool_part(widths, pyramid_hw)
    parts.append(pool)
    tokens, dim = pool.out_hw, pool.cout
    for j, v in enumerate(cfg.vits):
        parts += [transformer_part(f"vit{j + 1}.block{b + 1}", dim, v, tokens) for b in range(v.depth)]
    parts += [injection_part(lv, widths[lv], cfg.decoder_width, pyramid_hw[lv], tokens) for lv in INJECTION_LEVELS]
    net_head = head_part(cfg.decoder_width, cfg.fuse, num_classes, [pyramid_hw[lv] for lv in INJECTION_LEVELS])
    parts.append(net_head)
    parts += output_parts(head, num_classes, net_head.out_hw, size)
    return parts


@dataclass(frozen=True)
class Grid:
    """The (H, W) of every map at one input size: the same for every config of the space."""

    size: HW
    stem: HW  # stem output
    stage_in: tuple[HW, ...]  # input of each MBConv stage
    stage_out: tuple[HW, ...]  # output of each MBConv stage
    pyramid: tuple[HW, ...]  # outputs of PYRAMID_STAGES, in order
    tokens: HW  # the token grid


@functools.lru_cache(maxsize=64)
def _grid(size: HW, space: SearchSpace) -> Grid:
    parts = trace(space.min_config(), size, space=space)
    first = {p.group: p for p in reversed(parts)}  # first part of each group
    last = {p.group: p for p in parts}
    stages = [f"stage{i + 1}" for i in range(len(space.stages))]
    outs = tuple(last[s].out_hw for s in stages)
    return Grid(size=size, stem=last["stem"].out_hw, stage_in=tuple(first[s].in_hw for s in stages),
                stage_out=outs, pyramid=tuple(outs[i] for i in PYRAMID_STAGES), tokens=last["pool"].out_hw)


def grid(size: int | Sequence[int] = 512, space: SearchSpace = TABLE1) -> Grid:
    """The map sides at ``size``, read off a trace (of the space's smallest config: any config gives the same,
    since strides are per stage and padding is 'same'; ``tests/test_trace.py`` checks it)."""
    return _grid(as_hw(size), space)


def side(hw: HW) -> int:
    """The side of a square map; the latency operators are square, a non-square map is a ValueError."""
    if hw[0] != hw[1]:
        raise ValueError(f"map {hw[0]}x{hw[1]} is not square")
    return hw[0]


# ----------------------------------------------------------------------------------------------------------
# Which input sizes the deployed network accepts (the one size rule of profile, search and export)
# ----------------------------------------------------------------------------------------------------------

#: Largest deployable input side: beyond it a phone segmentation model is not the workload, and conversion of
#: one network would take many GB of memory.
MAX_DEPLOY_SIZE = 2048


def deploy_multiple(space: SearchSpace = TABLE1) -> int:
    """The side every deployed input must be a multiple of: the network's total stride (stem x the stages'
    strides, 32 in Table 1) times the token pooling's :data:`TOKEN_STRIDE` (2), i.e. 64.

    Why: at such a side every pyramid map divides evenly into the token grid, so ``pool_tokens``'
    adaptive average pool has equal windows. The TFLite converter lowers that to one plain AVERAGE_POOL_2D,
    and the latency table's pool operator is the same op. At other sides the exported network and the profiled operators differ, so a search would
    rank configs on a table that does not describe the file it exports.
    """
    total = space.stem_stride
    for stage in space.stages:
        total *= stage.stride
    return total * TOKEN_STRIDE


def check_deploy_size(size: int, space: SearchSpace = TABLE1) -> int:
    """``size`` if it is a side the deployed network accepts (a multiple of :func:`deploy_multiple`, at most
    :data:`MAX_DEPLOY_SIZE`), else :class:`~etf.common.EtfError` with one line saying which sides are.
    Used up front by etf-profile, etf-search and etf-export (and the predictor tools), so a bad side fails
    before any work, not after a whole search."""
    from etf.common import EtfError

    step = deploy_multiple(space)
    if isinstance(size, bool) or not isinstance(size, int) or size < step or size % step or size > MAX_DEPLOY_SIZE:
        raise EtfError(f"input size must be a multiple of {step} between {step} and {MAX_DEPLOY_SIZE} "
                       f"(e.g. 256, 512: the token pooling needs equal windows), got {size!r}")
    return size


__all__ = [
    "HW", "Shape", "Part", "StemPart", "MBConvPart", "PoolPart", "TransformerPart", "InjectionPart", "HeadPart",
    "ResizePart", "LabelsPart", "labels_part", "output_parts", "Grid", "conv_out", "conv_hw", "token_side", "as_hw", "trace", "grid", "side", "stem_part",
    "stage_parts", "pool_part", "transformer_part", "injection_part", "head_part", "resize_part", "TOKEN_STRIDE",
    "MAX_DEPLOY_SIZE", "deploy_multiple", "check_deploy_size",
]
