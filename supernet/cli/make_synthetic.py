"""``etf-make-synthetic``: write the synthetic segmentation set (NOT ADE20K) in the ADE20K folder layout."""
from __future__ import annotations

import argparse
import json
import sys

from etf.args import Parser, any_int, int_range, output_dir, positive_int
from etf.common import cli_entry
from supernet.data.synthetic import MAX_CLASSES, MIN_CLASSES, MIN_SIZE, RECIPES, make_synthetic


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="etf-make-synthetic", allow_abbrev=False,
        description="Generate the synthetic segmentation set (NOT ADE20K) in the ADE20K folder layout, "
                    "deterministically from a seed. Read it with --dataset synthetic --data DIR.",
        epilog="Example: etf-make-synthetic -o data/synthetic --train 400 --val 100 --size 128. "
               "Rerunning with the same arguments does nothing; a half-written run leaves only DIR's "
               "hidden .partial sibling, removed by the next run.")
    parser.add_argument("-o", "--out", required=True, type=output_dir, help="folder to create (must not exist or be empty)")
    parser.add_argument("--train", type=positive_int, default=400, help="number of training images (default 400)")
    parser.add_argument("--val", type=positive_int, default=100, help="number of validation images (default 100)")
    parser.add_argument("--size", type=int_range(MIN_SIZE, 4096), default=128, help=f"image side in pixels, >= {MIN_SIZE} (default 128)")
    parser.add_argument("--classes", type=int_range(MIN_CLASSES, MAX_CLASSES), default=10,
                        help=f"number of classes, {MIN_CLASSES}-{MAX_CLASSES} (default 10): "
                             + ", ".join(r.name for r in RECIPES))
    parser.add_argument("--seed", type=any_int, default=0, help="random seed; same seed, same images (default 0)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return parser


@cli_entry("etf-make-synthetic")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = make_synthetic(args.out, args.train, args.val, args.size, args.classes, args.seed,
                            progress=not args.json and sys.stderr.isatty())
    if args.json:
        print(json.dumps(result))
    else:
        verb = "wrote" if result["created"] else "already complete:"
        print(f"{verb} {result['path']} ({result['train']} train + {result['val']} val images, "
              f"{result['size']}px, {result['num_classes']} classes, seed {result['seed']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
