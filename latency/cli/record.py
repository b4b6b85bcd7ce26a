"""``etf-record``: time etf exports beside the reference network and record them in the latency table (closed loop).

Every model must be an etf export: ``model.tflite`` with ``arch.json`` and ``export.json`` next to it (what
``etf-export`` writes), so the architecture and the setting (input size, head) are known. The models are timed
with the paired protocol (each beside TopFormer-Tiny exported at the same setting, rotated rounds), appended to
``tables/<device>_<size>.e2e.csv`` with purpose ``bench`` and the predictor's correction is refitted from them.

Why a command of its own and not ``etf-bench --record``: etf-bench belongs to the device layer (android_bench),
which sits below the latency tables and may not write them; ``etf-bench`` stays a plain timer.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from etf.args import Parser, add_verbose, device_name, existing_dir, existing_file, nonneg_int, positive_int
from etf.common import EtfError, cli_entry
from etf.quiet import set_verbose
from latency.measure import MAX_ROUNDS, MIN_ROUNDS, TARGET_SE
from latency.setting import LEGACY_HEAD

EPILOG = """
Examples:
  etf-export --arch topformer-small --size 512 -o exports/small && etf-record exports/small/model.tflite
  etf-record runs/search/model.tflite exports/*/model.tflite --device local --rounds 3 --json
"""


def build_parser() -> argparse.ArgumentParser:
    p = Parser(allow_abbrev=False, prog="etf-record", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", metavar="MODEL.tflite", type=existing_file, help="etf exports (arch.json + export.json beside)")
    p.add_argument("--device", default="local", type=device_name, help="device to time on; its table must exist (default local)")
    p.add_argument("--tables", default="tables", type=existing_dir, help="directory of the latency tables (default tables/)")
    p.add_argument("--rounds", type=positive_int, default=MIN_ROUNDS, help=f"paired rounds at least (default {MIN_ROUNDS})")
    p.add_argument("--max-rounds", type=positive_int, default=MAX_ROUNDS, help="paired rounds at most: more follow "
                   f"while a model's ratio has a standard error above {100 * TARGET_SE:g}%% (default {MAX_ROUNDS})")
    p.add_argument("--runs", type=positive_int, default=10, help="timed runs per model per round (default 10)")
    p.add_argument("--warmup", type=nonneg_int, default=2, help="warm-up runs per model per round (default 2)")
    p.add_argument("--threads", type=positive_int, default=None, help="inference threads (default: the device's)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_verbose(p)
    return p


def read_export(model: Path) -> tuple:
    """(config, input size, classes, head, precision) of an etf export, from the ``arch.json`` / ``export.json`` beside it."""
    from supernet.space import load_config

    arch, report = model.parent / "arch.json", model.parent / "export.json"
    if not model.is_file():
        raise EtfError(f"model not found: {model}")
    if not (arch.is_file() and report.is_file()):
        raise EtfError(f"{model} is not an etf export (needs arch.json and export.json next to it): only known "
                       "architectures can be recorded")
    try:
        meta = json.loads(report.read_text())
        return (load_config(str(arch)), int(meta["size"]), int(meta["num_classes"]),
                str(meta.get("head", LEGACY_HEAD)), str(meta.get("precision", "fp32")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EtfError(f"{report} is unreadable ({type(exc).__name__}: {exc})".splitlines()[0]) from None


@cli_entry("etf-record")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_verbose(args.verbose)
    from latency import table as tbl
    from latency.measure import REFERENCE_PRESET, measure_paired
    from latency.operators import NUM_CLASSES
    from latency.predictor import record_and_refit
    from latency.profile import get_device
    from latency.setting import make_setting

    models = [Path(m) for m in args.models]
    exports = [read_export(m) for m in models]
    kinds = {(size, head, precision) for _, size, _, head, precision in exports}
    if len(kinds) != 1:
        raise EtfError(f"the models were exported at different input sizes/heads/precisions ({sorted(kinds)}): "
                       "record one setting at a time")
    size, head, precision = kinds.pop()
    other = [(m, k) for m, (_, _, k, _, _) in zip(models, exports) if k != NUM_CLASSES]
    if other:
        raise EtfError(f"{other[0][0]} has a {other[0][1]}-class head; the latency table models a {NUM_CLASSES}-class "
                       f"head: export with --num-classes {NUM_CLASSES} to record it")
    setting = make_setting(args.device, size, args.threads, precision, head)
    if not tbl.ops_path(args.tables, setting).exists():
        raise EtfError(tbl.missing_table_hint(args.tables, setting))
    dev = get_device(args.device)
    from latency.networks import cache_dir, reference_network_path

    # the table's own reference file (converted when the table was profiled, or now, once)
    ref = reference_network_path(cache_dir(args.tables), size, head=head, precision=precision)
    results = measure_paired(dev, models, ref, rounds=args.rounds, runs=args.runs, warmup=args.warmup,
                             max_rounds=max(args.rounds, args.max_rounds),
                             threads=setting.threads, baseline_ms=tbl.fastest_reference_ms(tbl.read_e2e(args.tables, setting)))
    pred = record_and_refit(args.tables, setting,
                            [(cfg, r.raw_ms, r.std_ms, r.runs * r.rounds, r.ref_ms, r.ratio)
                             for (cfg, *_), r in zip(exports, results)], "bench")
    rows = [{"model": str(m), "arch_key": cfg.key(), "measured_ms": r.raw_ms, "reference_ms": r.ref_ms,
             "ratio": r.ratio, "predicted_ms_after_refit": float(pred.predict(cfg)) if pred else None}
            for m, (cfg, *_), r in zip(models, exports, results)]
    out = {"device": args.device, "size": size, "setting": setting.to_dict(), "reference": REFERENCE_PRESET,
           "rounds": max(r.rounds for r in results),
           "runs": args.runs, "recorded": rows, "predictor_mode": pred.mode if pred else None}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{setting.describe()}: {len(rows)} model(s) timed beside {REFERENCE_PRESET} "
          f"({out['rounds']} rounds x {args.runs} runs), recorded as 'bench' rows; predictor refitted "
          f"({out['predictor_mode']} mode)")
    print(f"{'model':<40}{'measured ms':>12}{'ref ms':>9}{'ratio':>8}{'predicted ms':>14}")
    for r in rows:
        print(f"{r['model'][-40:]:<40}{r['measured_ms']:>12.2f}{r['reference_ms']:>9.2f}{r['ratio']:>8.3f}"
              f"{r['predicted_ms_after_refit']:>14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
