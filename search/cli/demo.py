"""``etf-demo``: the README's main job on this CPU, from nothing (the flow itself is ``search.demo.run_demo``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from etf.common import EtfError, cli_entry
from search import demo as demo_flow
from search.demo import FULL, QUICK, run_demo


@cli_entry("etf-demo")
def main(argv: list[str] | None = None) -> int:
    flow = demo_flow.__doc__ or ""
    p = argparse.ArgumentParser(allow_abbrev=False, prog="etf-demo", description=flow.split("\n\n")[0],
                                epilog=flow.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--out", type=Path, default=Path("runs/demo"), help="folder of every artefact [runs/demo]")
    p.add_argument("--quick", action="store_true", help="tiny version (minutes): the end-to-end test's setting")
    p.add_argument("--device", default="local", help="device to profile, search for and benchmark on [local]")
    p.add_argument("--threads", type=int, help="torch threads for training and evaluation [all cores when the "
                   "machine is idle, 1 when it is busy]")
    args = p.parse_args(argv)
    out = args.out if not args.quick or args.out != Path("runs/demo") else Path("runs/demo-quick")
    if args.threads is not None and args.threads < 1:
        raise EtfError("--threads must be at least 1")
    run_demo(out, QUICK if args.quick else FULL, args.quick, args.device, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
