"""``etf-profile``: build per-operator latency tables for one or more devices (resumable)."""
from __future__ import annotations

import argparse
import json
import sys

from android_bench.device_config import resolve_device
from latency.profile import ADAPTIVE, DEFAULT_E2E, ProfileSettings, Profiler
from latency.plan import DEFAULT_MBCONV, MBCONV_DESIGNS
from latency.passes import DEFAULT_PASSES, unsteady_warning
from etf.args import Parser, add_verbose, device_names, nonneg_int, output_dir, positive_float, positive_int, rule
from etf.common import EtfError, cli_entry
from etf.quiet import set_verbose
from latency import table as tbl
from latency.setting import Setting, add_setting_arguments, check_precision
from latency.transfer import DEFAULT_TRANSFER_E2E, DEFAULT_TRANSFER_OPS
from supernet.trace import check_deploy_size, deploy_multiple

EPILOG = """
What gets measured (at --size, for the --head the deployed model ends in): all stem and head configs and the
output head's own operator (labels: the argmax + label upsample; logits: the full-resolution resize;
logits8: none); a grid of MBConv blocks (every stage
position x kernel x expansion at the smallest and largest widths; --mbconv grid adds the middle output width,
--mbconv exhaustive measures all ~2,200); a space-filling sample of 40 transformer blocks, 27 injection modules and 6 pyramid-pool configs;
then adaptive sampling in rounds (each round measures the candidates a random forest fitted on everything
measured so far is least sure of, then refits it: +40 MBConv, +20 transformer, +9 injection, +4 pool in all); then --e2e subnets end to end (smallest, presets, random) for the predictor's correction.
Each batch is converted in --workers processes (cached under OUT/cache, never twice) and timed on every
device in one round trip, with a reference operator before and after (its latency is the drift record).
Then every operator is timed again (--passes, default 3: once before the end-to-end subnets, once after) in
shuffled batches, and the table keeps each operator's median (every timing is in .passes.csv).

One table per setting: OUT/<device>_<size>_t<threads>_<precision>_<head>.csv (one row per operator, each
recording its setting), .e2e.csv, .passes.csv, .meta.json (setting, plan, timings, drift, reduced?). Interrupt at any time
(Ctrl-C): rerunning the same command resumes where it stopped. Another --head or --threads is another table
(converted operators are cached and shared, so only the head's operator and the end-to-end nets are new).

Transfer (--transfer-from A): a finished table of another setting A (same input size) stands in for most of
the new one. Only --transfer-ops of A's operators (spread over each kind's latency range; MBConv blocks over
their parts' work) and --e2e whole networks (default 16: the smallest config, the presets and 12 random subnets)
are measured here; every other row is A's latency mapped through a per-kind map fitted on those pairs: a line
(log t_new = a + b log t_A), extended with the operator's key numbers, or for MBConv a non-negative sum of its
parts' work (multiply-adds and maps of the expansion, depthwise and projection: how int8 speeds a block up),
whichever wins in leave-one-out. Mapped rows are marked `transferred` and the meta file records the transfer
and each kind's map; a later run without --transfer-from measures them.

Examples:
  etf-profile --device local --size 512 --budget-min 30          # -> tables/local_512_t1_fp32_logits8.csv
  etf-profile --device local --size 512 --head labels --threads 2
  etf-profile --device local --size 512 --threads 2 --transfer-from local_512_t1_fp32_logits8
  etf-profile --device pixel7,galaxy-s21 --workers 2
"""


def build_parser() -> argparse.ArgumentParser:
    p = Parser(allow_abbrev=False, prog="etf-profile", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", required=True, type=device_names, help="device name(s) from the device config, comma-separated "
                   "(`local` = this CPU); several devices are measured in parallel, one table each")
    p.add_argument("--size", type=rule(check_deploy_size), default=512,
                   help=f"input side in pixels, a multiple of {deploy_multiple()} as etf-export needs (default 512)")
    p.add_argument("--out", default="tables", type=output_dir, help="directory of the tables (default tables/)")
    p.add_argument("--cache", default="", type=lambda v: v and output_dir(v),
                   help="conversion cache directory (default OUT/cache); safe to share")
    p.add_argument("--workers", type=positive_int, default=2, help="conversion processes (default 2)")
    p.add_argument("--batch", type=positive_int, default=24, help="operators per batch / device round trip (default 24)")
    p.add_argument("--runs", type=positive_int, default=20, help="timed runs per operator (default 20)")
    p.add_argument("--warmup", type=nonneg_int, default=3, help="warm-up runs per operator (default 3)")
    p.add_argument("--passes", type=positive_int, default=DEFAULT_PASSES,
                   help="times every operator is timed, at different moments and in shuffled batches; the table "
                        f"keeps the median (default {DEFAULT_PASSES}; each extra pass costs the measurement only, "
                        "~5 s at 256 px, ~25 s at 512 px on one thread here)")
    add_setting_arguments(p)
    p.add_argument("--budget-min", type=positive_float, default=None,
                   help="stop starting new batches after this many minutes; the table is then marked reduced")
    p.add_argument("--mbconv", choices=MBCONV_DESIGNS, default=DEFAULT_MBCONV,
                   help="MBConv blocks to measure: the corners of the width grid (~190 at 512, default), the grid "
                        "with middle output widths (~280), or all (~2,200)")
    p.add_argument("--no-adaptive", action="store_true", help="skip the adaptive-sampling phase")
    p.add_argument("--adaptive-mbconv", type=nonneg_int, default=ADAPTIVE["mbconv"], metavar="N",
                   help=f"MBConv blocks picked by adaptive sampling (default {ADAPTIVE['mbconv']}): blocks at the "
                        "interior widths the corners do not measure, where the forest is least sure")
    p.add_argument("--e2e", type=nonneg_int, default=None, help="subnets measured end to end for the whole-network "
                   f"correction: the smallest config and the 3 presets, then random ones (default {DEFAULT_E2E}; "
                   f"{DEFAULT_TRANSFER_E2E} with --transfer-from)")
    p.add_argument("--transfer-from", default="", metavar="TABLE",
                   help="a finished table of another setting (its .csv path, or its stem in --out): measure "
                        "only --transfer-ops operators and map the rest from it (see below)")
    p.add_argument("--transfer-ops", type=positive_int, default=DEFAULT_TRANSFER_OPS,
                   help=f"operators measured in a transfer (default {DEFAULT_TRANSFER_OPS}, ~1/7 of a full table)")
    p.add_argument("--e2e-only", action="store_true", help="skip the operator phases; measure only the --e2e "
                   "end-to-end subnets (e.g. after a budget-limited run)")
    p.add_argument("--limit", type=positive_int, default=None, help="measure only the first N planned operators "
                   "(smoke tests; the table is marked reduced)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_verbose(p)
    return p


def transfer_line(x: dict) -> str:
    """One line on a transfer (``latency.transfer.transfer_record``): what was measured, what mapped, how."""
    share = f" ({100 * x['fraction_of_full']:.0f}% of the source's measurements)" if x["fraction_of_full"] else ""
    maps = ", ".join(f"{kind} {m['form']} (n={m['n']})" for kind, m in sorted(x["maps"].items()))
    return (f"transferred from {x['from']}: {x['measured_ops']} operators and {x['measured_e2e']} networks measured "
            f"here, {x['mapped_ops']} operators mapped{share}; maps: {maps}")


@cli_entry("etf-profile")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_verbose(args.verbose)
    check_precision(args.precision)
    names = args.device
    if args.transfer_from and args.e2e_only:
        raise EtfError("--transfer-from measures operators; it cannot be combined with --e2e-only")
    if args.e2e is None:
        args.e2e = DEFAULT_TRANSFER_E2E if args.transfer_from else DEFAULT_E2E
    for name in names:  # an unknown device fails now, not after the first batch is converted
        resolve_device(name)
    settings = ProfileSettings(size=args.size, tables_dir=str(args.out), cache_dir=str(args.cache), workers=args.workers, batch=args.batch,
                               runs=args.runs, warmup=args.warmup, threads=args.threads,
                               budget_min=args.budget_min, mbconv=args.mbconv,
                               adaptive={} if args.no_adaptive else {**ADAPTIVE, "mbconv": args.adaptive_mbconv}, e2e=args.e2e, limit=args.limit,
                               e2e_only=args.e2e_only, precision=args.precision, head=args.head,
                               transfer_from=args.transfer_from, transfer_ops=args.transfer_ops, passes=args.passes)
    summary = Profiler(names, settings, progress=not args.no_progress).run()
    for info in summary.values():  # for several threads the predictor may sum the folder's 1-thread operators
        info["predictor_operators"] = tbl.operator_setting(args.out, Setting.from_dict(info["setting"])).stem
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for name, info in summary.items():
            t = info["timing"]
            state = "REDUCED: " + "; ".join(info["reduced_reasons"]) if info["reduced"] else "complete"
            print(f"{name}: {info['rows']} operator rows, {info['e2e_rows']} end-to-end subnets -> {info['table']} "
                  f"({state})")
            if "transfer" in info:
                print("  " + transfer_line(info["transfer"]))
            if info["predictor_operators"] != Setting.from_dict(info["setting"]).stem:
                print(f"  its predictor sums {info['predictor_operators']}.csv (the folder's 1-thread operators) with "
                      "this table's end-to-end subnets: latency/README.md says why")
            warning = unsteady_warning(info.get("passes_disagree", {}))
            if warning:
                print("  " + warning, file=sys.stderr)
            print(f"  conversion {t['convert_wall_s']:.0f}s wall ({t['conversions']} models), measurement "
                  f"{t['measure_wall_s']:.0f}s + re-timing {t.get('retime_wall_s', 0.0):.0f}s "
                  f"({t['measurements']} measurements; operators timed in {info['passes']} passes), end-to-end "
                  f"{t['e2e_convert_wall_s']:.0f}s + {t['e2e_measure_wall_s']:.0f}s", file=sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
