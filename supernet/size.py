"""Parameter count and FLOPs of a subnet, computed analytically from its config: one function, used everywhere.

FLOPs convention (the one TopFormer's tables use, mmcv's ``get_model_complexity_info``):
multiply-adds of every convolution plus one per output element for a conv bias, plus 2 per element for each
affine BatchNorm and 1 per element for each activation (ReLU, ReLU6, and the ReLU6 inside h-sigmoid).
The attention's matrix products, softmax, pooling and bilinear resizes (functional calls in TopFormer) and
element-wise additions/multiplications are not counted. ``conv_macs`` reports conv multiply-adds alone.
Parameters count weights, biases and BN affine parameters (not BN running statistics).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from supernet.space import INJECTION_LEVELS, PYRAMID_STAGES, ArchConfig, SearchSpace, TABLE1


def conv_out(n: int, kernel: int, stride: int) -> int:
    """Output length of a 'same'-padded (pad = k // 2) convolution with an odd kernel."""
    return (n + 2 * (kernel // 2) - kernel) // stride + 1


@dataclass
class SizeReport:
    """Totals plus a per-part breakdown (``parts``: name -> (params, flops))."""

    params: int = 0
    flops: int = 0
    conv_macs: int = 0
    parts: dict[str, list[int]] = field(default_factory=dict)

    def add(self, part: str, params: int, flops: int, macs: int) -> None:
        self.params += params
        self.flops += flops
        self.conv_macs += macs
        p = self.parts.setdefault(part, [0, 0])
        p[0] += params
        p[1] += flops

    def as_dict(self) -> dict:
        return {"params": self.params, "flops": self.flops, "conv_macs": self.conv_macs,
                "params_m": round(self.params / 1e6, 4), "gflops": round(self.flops / 1e9, 4)}


class _Counter:
    def __init__(self) -> None:
        self.report = SizeReport()
        self.part = ""

    def conv(self, cin: int, cout: int, k: int, groups: int, hw: tuple[int, int], bias: bool = False) -> None:
        out_elems = hw[0] * hw[1]
        macs = (cin // groups) * k * k * cout * out_elems
        params = (cin // groups) * k * k * cout + (cout if bias else 0)
        flops = macs + (cout * out_elems if bias else 0)
        self.report.add(self.part, params, flops, macs)

    def bn(self, c: int, hw: tuple[int, int]) -> None:
        self.report.add(self.part, 2 * c, 2 * c * hw[0] * hw[1], 0)

    def act(self, c: int, hw: tuple[int, int]) -> None:
        self.report.add(self.part, 0, c * hw[0] * hw[1], 0)

    def conv_bn(self, cin: int, cout: int, k: int, groups: int, hw: tuple[int, int]) -> None:
        self.conv(cin, cout, k, groups, hw)
        self.bn(cout, hw)


def model_size(cfg: ArchConfig, size: int | tuple[int, int] = 512, num_classes: int = 150,
               space: SearchSpace = TABLE1) -> SizeReport:
    """Params and FLOPs of the static TopFormer of ``cfg`` at input ``size`` (an int or (H, W))."""
    h, w = (size, size) if isinstance(size, int) else size
    c = _Counter()
    c.part = "stem"
    hw = (conv_out(h, space.stem_kernel, space.stem_stride), conv_out(w, space.stem_kernel, space.stem_stride))
    c.conv_bn(3, cfg.stem_width, space.stem_kernel, 1, hw)
    c.act(cfg.stem_width, hw)
    cin = cfg.stem_width
    pyramid_hw = []
    for i, (st, spec) in enumerate(zip(cfg.stages, space.stages)):
        c.part = f"stage{i + 1}"
        for b in range(st.depth):
            stride = spec.stride if b == 0 else 1
            k, e = st.kernels[b], st.expansions[b]
            hidden = int(round(cin * e))
            if e != 1:
                c.conv_bn(cin, hidden, 1, 1, hw)
                c.act(hidden, hw)
            hw = (conv_out(hw[0], k, stride), conv_out(hw[1], k, stride))
            c.conv_bn(hidden, hidden, k, hidden, hw)
            c.act(hidden, hw)
            c.conv_bn(hidden, st.width, 1, 1, hw)
            cin = st.width
        if i in PYRAMID_STAGES:
            pyramid_hw.append(hw)
    # tokens: stride-2 pooling of the coarsest map (not counted: functional pooling)
    thw = ((pyramid_hw[-1][0] - 1) // 2 + 1, (pyramid_hw[-1][1] - 1) // 2 + 1)
    dim = cfg.token_dim
    for j, v in enumerate(cfg.vits):
        c.part = f"vit{j + 1}"
        for _ in range(v.depth):
            qk, vd = v.heads * v.key_dim, v.heads * v.value_dim
            c.conv_bn(dim, qk, 1, 1, thw)
            c.conv_bn(dim, qk, 1, 1, thw)
            c.conv_bn(dim, vd, 1, 1, thw)
            c.act(vd, thw)  # ReLU6 before the projection
            c.conv_bn(vd, dim, 1, 1, thw)
            hidden = v.mlp_hidden(dim)
            c.conv_bn(dim, hidden, 1, 1, thw)
            c.conv(hidden, hidden, 3, hidden, thw, bias=True)
            c.act(hidden, thw)
            c.conv_bn(hidden, dim, 1, 1, thw)
    widths = cfg.pyramid_widths
    d = cfg.decoder_width
    for level in INJECTION_LEVELS:
        c.part = f"injection{level}"
        c.conv_bn(widths[level], d, 1, 1, pyramid_hw[level])  # local embedding
        c.conv_bn(widths[level], d, 1, 1, thw)  # global act
        c.act(d, thw)  # h-sigmoid's ReLU6
        c.conv_bn(widths[level], d, 1, 1, thw)  # global embedding
    c.part = "head"
    hhw = pyramid_hw[INJECTION_LEVELS[0]]
    c.conv_bn(d, d, 1, d if cfg.fuse == "depthwise" else 1, hhw)
    c.act(d, hhw)
    c.conv(d, num_classes, 1, 1, hhw, bias=True)
    return c.report
