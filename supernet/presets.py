"""The three published TopFormer models as configs of the search space (see shared reference notes).

Each preset rebuilds the published model layer for layer: stem 16, MBConv stages with the published
per-block kernels and expansions, four transformer blocks (one per ViT stage) with key dim 16 and
attention/MLP ratio 2, and the published injection/head width and fuse conv.
"""
from __future__ import annotations

from supernet.space import TABLE1, ArchConfig, StageConfig, VitConfig


def _topformer(widths: tuple[int, int, int, int], stage5: StageConfig, heads: int, decoder: int,
               fuse: str) -> ArchConfig:
    w2, w3, w4, _ = widths
    return ArchConfig(
        stem_width=16,
        stages=(
            StageConfig(16, 1, (3,), (1,)),
            StageConfig(w2, 2, (3, 3), (4, 3)),
            StageConfig(w3, 2, (5, 5), (3, 3)),
            StageConfig(w4, 2, (3, 3), (3, 3)),
            stage5,
        ),
        vits=tuple(VitConfig(heads=heads, key_dim=16, attn_ratio=2.0, mlp_ratio=2.0, depth=1) for _ in range(4)),
        decoder_width=decoder,
        fuse=fuse,
    )


PRESETS: dict[str, ArchConfig] = {
    "topformer-tiny": _topformer((16, 32, 64, 96), StageConfig(96, 2, (5, 5), (6, 6)), 4, 128, "depthwise"),
    "topformer-small": _topformer((24, 48, 96, 128), StageConfig(128, 3, (5, 5, 3), (6, 6, 6)), 6, 192, "full"),
    "topformer-base": _topformer((32, 64, 128, 160), StageConfig(160, 3, (5, 5, 3), (6, 6, 6)), 8, 256, "full"),
}

for _name, _cfg in PRESETS.items():
    TABLE1.validate(_cfg)

#: Published figures (TopFormer paper, ADE20K, 512x512, 150 classes) for comparison tables.
PUBLISHED = {
    "topformer-tiny": {"params_m": 1.4, "gflops": 0.6, "miou": 32.8, "latency_ms_sd865": 43},
    "topformer-small": {"params_m": 3.1, "gflops": 1.2, "miou": 36.1, "latency_ms_sd865": 74},
    "topformer-base": {"params_m": 5.1, "gflops": 1.8, "miou": 37.8, "latency_ms_sd865": 110},
}
