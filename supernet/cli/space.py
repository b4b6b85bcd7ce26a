"""``etf-space``: look at the search space, the presets and any config's size.

Examples:
    etf-space choices                     # Table 1: every coordinate and its allowed values, and the space size
    etf-space show topformer-small        # a preset (or a JSON file) as JSON
    etf-space sample --seed 3 > a.json    # a uniformly sampled config (same seed, same config anywhere)
    etf-space size topformer-base --size 512
    etf-space presets                     # the three TopFormer presets vs their published sizes
"""
from __future__ import annotations

import argparse
import json
import math
import sys

from etf.args import Parser, any_int, int_range, positive_int
from etf.common import cli_entry
from supernet.presets import PRESETS, PUBLISHED
from supernet.size import model_size
from supernet.space import TABLE1, load_config

#: Input sides the size tools accept (the FLOPs count needs at least one pixel at stride 32).
SIDE = int_range(32, 4096)


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="etf-space", allow_abbrev=False,
        description="Inspect the Efficient-TopFormer search space (Table 1), its presets and config sizes. "
                    "Every ARCH argument is a preset name (" + ", ".join(PRESETS) + ") or a path to a JSON config.",
        epilog=__doc__.split("Examples:")[1] and "examples:" + __doc__.split("Examples:")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    c = sub.add_parser("choices", allow_abbrev=False,
                       help="every coordinate's allowed values and the size of the space")
    c.add_argument("--json", action="store_true", help="print the space as one JSON object")
    s = sub.add_parser("show", allow_abbrev=False, help="print a preset or config file as JSON (validated)")
    s.add_argument("arch", help="preset name or path to a JSON config")
    s = sub.add_parser("sample", allow_abbrev=False, help="print a uniformly sampled config as JSON")
    s.add_argument("--seed", type=any_int, default=0, help="random seed (same seed, same config) [0]")
    s.add_argument("--min", action="store_true", help="print the smallest config instead")
    s.add_argument("--max", action="store_true", help="print the largest config instead")
    z = sub.add_parser("size", allow_abbrev=False, help="parameters and FLOPs of a config at an input size")
    z.add_argument("arch", help="preset name or path to a JSON config")
    z.add_argument("--size", type=SIDE, default=512, help="square input size in pixels, 32 to 4096 [512]")
    z.add_argument("--classes", type=positive_int, default=150, help="number of classes [150, ADE20K]")
    z.add_argument("--json", action="store_true", help="print one JSON object")
    r = sub.add_parser("presets", allow_abbrev=False,
                       help="the TopFormer presets' params/FLOPs next to the published figures")
    r.add_argument("--size", type=SIDE, default=512, help="square input size in pixels, 32 to 4096 [512]")
    r.add_argument("--json", action="store_true", help="print JSON")
    return p


def _presets_rows(size: int) -> list[dict]:
    rows = []
    for name, cfg in PRESETS.items():
        rep = model_size(cfg, size)
        pub = PUBLISHED[name]
        rows.append({"preset": name, "params_m": round(rep.params / 1e6, 3), "published_params_m": pub["params_m"],
                     "gflops": round(rep.flops / 1e9, 3), "published_gflops": pub["gflops"],
                     "conv_gmacs": round(rep.conv_macs / 1e9, 3)})
    return rows


@cli_entry("etf-space")
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "choices":
        if args.json:
            print(json.dumps(TABLE1.describe(), indent=2))
            return 0
        for coord, vals in TABLE1.iter_choices():
            print(f"{coord:26s} {', '.join(f'{v:g}' if isinstance(v, float) else str(v) for v in vals)}")
        print(f"{'space size':26s} {TABLE1.size()} (~10^{math.log10(TABLE1.size()):.1f}) configs")
    elif args.cmd == "show":
        print(load_config(args.arch).to_json())
    elif args.cmd == "sample":
        cfg = TABLE1.min_config() if args.min else TABLE1.max_config() if args.max else TABLE1.sample(args.seed)
        print(cfg.to_json())
    elif args.cmd == "size":
        cfg = load_config(args.arch)
        rep = model_size(cfg, args.size, args.classes)
        out = {"arch": args.arch, "key": cfg.key(), "size": args.size, "classes": args.classes, **rep.as_dict()}
        if args.json:
            print(json.dumps(out))
        else:
            print(f"{args.arch}: {rep.params / 1e6:.3f} M params, {rep.flops / 1e9:.3f} GFLOPs "
                  f"({rep.conv_macs / 1e9:.3f} G conv MACs) at {args.size}x{args.size}, {args.classes} classes")
    elif args.cmd == "presets":
        rows = _presets_rows(args.size)
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(f"{'preset':16s} {'params(M)':>10s} {'published':>10s} {'GFLOPs':>8s} {'published':>10s} "
                  f"{'conv GMACs':>10s}")
            for r in rows:
                print(f"{r['preset']:16s} {r['params_m']:10.3f} {r['published_params_m']:10.1f} {r['gflops']:8.3f} "
                      f"{r['published_gflops']:10.1f} {r['conv_gmacs']:10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
