"""``etf-demo``: the README's main job on this CPU, from nothing (the flow itself is ``search.demo.run_demo``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from android_bench.device_config import resolve_device
from etf.args import Parser, add_verbose, device_name, output_dir, positive_int
from etf.common import cli_entry
from etf.quiet import set_verbose
from search import demo as demo_flow
from search.demo import FULL, QUICK, run_demo
from supernet.heads import DEFAULT_HEAD, HEADS


@cli_entry("etf-demo")
def main(argv: list[str] | None = None) -> int:
    flow = demo_flow.__doc__ or ""
    p = Parser(allow_abbrev=False, prog="etf-demo", description=flow.split("\n\n")[0],
                                epilog=flow.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--out", type=output_dir, default=Path("runs/demo"), help="folder of every artefact [runs/demo]")
    p.add_argument("--quick", action="store_true", help="tiny version (minutes): the end-to-end test's setting")
    p.add_argument("--device", default="local", type=device_name, help="device to profile, search for and benchmark on [local]")
    p.add_argument("--threads", type=positive_int, help="torch threads for training and evaluation [all cores when the "
                   "machine is idle, 1 when it is busy]")
    p.add_argument("--head", choices=HEADS, default=DEFAULT_HEAD,
                   help="output head of the deployed model, used for the table, the presets' measurements, the "
                        "search and the export: logits8, labels, logits [logits8]")
    add_verbose(p)
    args = p.parse_args(argv)
    set_verbose(args.verbose)
    out = args.out if not args.quick or args.out != Path("runs/demo") else Path("runs/demo-quick")
    resolve_device(args.device)  # an unknown device fails now, not after training and profiling
    run_demo(out, QUICK if args.quick else FULL, args.quick, args.device, args.threads, args.head)
    return 0


if __name__ == "__main__":
    sys.exit(main())
