"""The README's main job on this CPU: ``make demo`` (``python -m search.demo``).

For now it builds the supernet, checks that an extracted subnet computes what the supernet computes, and
prints the search space and the TopFormer presets' sizes. The full flow (data, training, profiling, predictor,
search, export, re-benchmark) grows here as those parts land.
"""
from __future__ import annotations

import sys

import torch

from supernet.errors import cli_entry
from supernet.model import TopFormerSupernet
from supernet.presets import PRESETS, PUBLISHED
from supernet.size import model_size
from supernet.space import TABLE1


@cli_entry("etf-demo")
def main(argv: list[str] | None = None) -> int:
    print(f"search space: {TABLE1.size():.3e} subnets (Table 1 + decoder width/fuse choices)")
    net = TopFormerSupernet(num_classes=150).eval()
    print(f"supernet: {sum(p.numel() for p in net.parameters()) / 1e6:.2f} M shared parameters")
    x = torch.randn(1, 3, 128, 128)
    print(f"{'preset':16s} {'params(M)':>10s} {'pub.':>5s} {'GFLOPs@512':>11s} {'pub.':>5s} {'extract err':>12s}")
    with torch.no_grad():
        for name, cfg in PRESETS.items():
            net.set_active(cfg)
            err = (net(x) - net.get_active_subnet()(x)).abs().max().item()
            rep = model_size(cfg, 512, 150)
            pub = PUBLISHED[name]
            print(f"{name:16s} {rep.params / 1e6:10.3f} {pub['params_m']:5.1f} {rep.flops / 1e9:11.3f} "
                  f"{pub['gflops']:5.1f} {err:12.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
