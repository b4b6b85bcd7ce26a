"""The labels head's parts, timed alone at 512 px and 150 classes: where its cost over logits8 comes from.

Run: ``PYTHONPATH=. python benchmarks/bench_labels_head.py [VARIANT ...]`` (a quiet machine; ~1 min).
Each variant is a tiny model on TopFormer's 1/8 logits (1x64x64x150, channel-last file), converted with
litert-torch and timed with LiteRT + XNNPACK, 1 thread, in 5 interleaved rounds of 30 runs (median and spread):
``argmax_only`` (the per-pixel class at 1/8), ``argmax_i32`` (etf's labels head: argmax, then
``supernet.heads.nearest_up``: 64 whole-map copies and one placement transpose, int32), ``bcast_i32`` (the
upsample as a broadcast: etf's head before 2026-11-28), ``argmax_u8`` (etf's head in uint8), ``interp_f`` (nearest RESIZE on a float label
map), ``deconv_f`` / ``deconv_only`` (the upsample as an 8x8 stride-8 transposed convolution of ones), ``max_eq``
(argmax as max + compare + min index), ``d2s_f`` / ``d2s_i32`` (the upsample as 64 copies of the float label map
by a 1x1 convolution of ones, then DEPTH_TO_SPACE by 8; float out, or cast to int32), ``cat_i32`` (64 copies of
the whole int32 map by concatenation, then one transpose into place). ``logits8`` is the empty
model (nothing after the logits).
"""
import statistics
import sys

import torch
from torch import nn

from android_bench.export.convert import export_tflite
from android_bench.local_device import LocalDevice
from supernet.heads import nearest_up



class V(nn.Module):
    """One variant of what follows the 1/8 logits (see the module doc)."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, logits: torch.Tensor) -> torch.Tensor:  # NCHW (1, 150, 64, 64)
        nhwc = logits.permute(0, 2, 3, 1)
        if self.kind == "argmax_i32":
            lab = nhwc.argmax(-1).unsqueeze(1).to(torch.int32)
        elif self.kind == "argmax_u8":
            lab = nhwc.argmax(-1).unsqueeze(1).to(torch.uint8)
        elif self.kind == "bcast_i32":  # etf's labels head before 2026-11-28: the upsample as a broadcast
            lab = nhwc.argmax(-1).unsqueeze(1).to(torch.int32)
            return lab.reshape(1, 1, 64, 1, 64, 1).expand(1, 1, 64, 8, 64, 8).reshape(1, 1, 512, 512)
        elif self.kind == "argmax_only":
            return nhwc.argmax(-1).unsqueeze(1).to(torch.int32)
        elif self.kind == "max_eq":
            m = nhwc.amax(-1, keepdim=True)
            idx = torch.arange(nhwc.shape[-1], dtype=torch.float32)
            lab = torch.where(nhwc >= m, idx, torch.full_like(idx, 1e4)).amin(-1).unsqueeze(1).to(torch.int32)
        elif self.kind == "interp_f":
            lab = nhwc.argmax(-1).unsqueeze(1).to(torch.float32)
            return torch.nn.functional.interpolate(lab, size=(512, 512), mode="nearest").to(torch.int32)
        elif self.kind == "deconv_f":
            lab = nhwc.argmax(-1).unsqueeze(1).to(torch.float32)
            w = torch.ones(1, 1, 8, 8)
            return torch.nn.functional.conv_transpose2d(lab, w, stride=8).to(torch.int32)
        elif self.kind == "deconv_only":
            lab = nhwc.argmax(-1).unsqueeze(1).to(torch.float32)
            return torch.nn.functional.conv_transpose2d(lab, torch.ones(1, 1, 8, 8), stride=8)
        elif self.kind in ("d2s_f", "d2s_i32"):  # 64 copies by a 1x1 conv of ones, then DEPTH_TO_SPACE
            lab = nhwc.argmax(-1).unsqueeze(1).to(torch.float32)
            up = torch.nn.functional.pixel_shuffle(torch.nn.functional.conv2d(lab, torch.ones(64, 1, 1, 1)), 8)
            return up if self.kind == "d2s_f" else up.to(torch.int32)
        elif self.kind == "cat_i32":  # 64 whole-map copies by concatenation (memcpy), then one TRANSPOSE, int32
            lab = nhwc.argmax(-1).to(torch.int32)[0]  # (64, 64)
            copies = lab.unsqueeze(0)
            for _ in range(6):
                copies = torch.cat([copies, copies], 0)  # (64, h, w): copy i*8+j
            return copies.reshape(8, 8, 64, 64).permute(2, 0, 3, 1).reshape(1, 1, 512, 512)
        elif self.kind == "logits8":
            return logits
        return nearest_up(lab, (512, 512))

import tempfile

kinds = sys.argv[1:] or ["logits8", "argmax_only", "argmax_i32", "argmax_u8", "interp_f", "deconv_f", "max_eq"]
work = tempfile.mkdtemp(prefix="bench_labels_")
paths = {}
for k in kinds:
    p = f"{work}/{k}.tflite"
    export_tflite(V(k), (1, 150, 64, 64), p)
    paths[k] = p
dev = LocalDevice(threads=1, cooldown_s=0)
res = {k: [] for k in kinds}
for r in range(5):
    for k in kinds[r % len(kinds):] + kinds[:r % len(kinds)]:
        res[k].append(dev.benchmark(paths[k], runs=30, warmup=3, threads=1).median_ms)
for k in kinds:
    print(f"{k:<14} median {statistics.median(res[k]):.3f} ms  spread {min(res[k]):.3f}-{max(res[k]):.3f}")
