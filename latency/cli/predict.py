"""``etf-predict``: predicted latency of one architecture in one setting, from that setting's latency table.

A setting is (device, input size, threads, precision, output head); tables and predictors belong to one.
"""
from __future__ import annotations

import argparse
import json
import sys

from latency.predictor import LatencyPredictor, load_for_device
from etf.args import Parser, device_name, existing_dir, existing_file, rule, text
from etf.common import cli_entry
from latency.setting import Setting, add_setting_arguments, make_setting
from supernet.trace import check_deploy_size
from supernet.size import model_size
from supernet.space import load_config

EPILOG = """
A latency holds only in its setting: the predictor is fitted on the setting's table,
tables/<device>_<size>_t<threads>_<precision>_<head>.csv (+ .e2e.csv), the first time and cached next to it
(.predictor.json, refitted whenever the table changes); a predictor file of another setting is refused.
--head picks the deployed model's output: logits8 (logits at 1/8, TopFormer's deployment), labels (argmax then
nearest upsample to the input size: what an app draws), logits (full-resolution logits; at 512 px most of a
small net's time is that resize). With paired end-to-end rows (ratio mode) a latency is the predicted ratio to TopFormer-Tiny x
Tiny's newest recorded latency in the setting; otherwise latencies are in ms at the table's speed.

Examples:
  etf-predict --device local --arch topformer-tiny
  etf-predict --device local --arch topformer-tiny --head labels --threads 2
  etf-predict --device pixel7 --arch runs/best.json --size 512 --json
  etf-predict --device local --arch topformer-base --breakdown
"""


def build_parser() -> argparse.ArgumentParser:
    p = Parser(allow_abbrev=False, prog="etf-predict", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", required=True, type=device_name, help="device whose latency table to use (e.g. local)")
    p.add_argument("--arch", required=True, type=rule(load_config, text),
                   help="preset name (topformer-tiny/-small/-base) or JSON config file")
    p.add_argument("--size", type=rule(check_deploy_size), default=512, help="input side in pixels (default 512)")
    p.add_argument("--tables", default=None, type=existing_dir, help="directory of the latency tables (default tables/; not read with --predictor)")
    p.add_argument("--predictor", default=None, type=existing_file, help="use this saved predictor file instead of the "
                   "table's (refused when fitted in another setting)")
    add_setting_arguments(p, threads_help="inference threads (default: the device's setting; with --predictor, the file's)")
    p.add_argument("--breakdown", action="store_true", help="also list every operator with its ms and where it comes from (lut: measured in this "
                   "setting, map: mapped from a transfer source, pred: the kind's regressor)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


@cli_entry("etf-predict")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = load_config(args.arch)
    if args.predictor:  # without --threads: the file's threads (the device need not be in devices.toml)
        pred = LatencyPredictor.load(args.predictor)
        threads = args.threads if args.threads is not None else pred.setting.threads
        setting = make_setting(args.device, args.size, threads, args.precision, args.head)
        pred.check_for(setting, args.predictor)
    else:
        setting = make_setting(args.device, args.size, args.threads, args.precision, args.head)
        pred = load_for_device(setting, args.tables or "tables")
    ms = pred.predict(cfg)
    out = {"arch": args.arch, "arch_key": cfg.key(), "device": args.device, "size": args.size,
           "setting": setting.to_dict(),
           "predicted_ms": round(ms, 4), "operator_sum_ms": round(pred.operator_sum(cfg), 4),
           "correction": {"a": pred.correction.a, "b": pred.correction.b, "subnets": pred.correction.n},
           "gflops": round(model_size(cfg, args.size).flops / 1e9, 4),
           "table_reduced": pred.info.get("table_reduced")}
    if "transfer" in pred.info:
        out["transfer"] = pred.info["transfer"]
    if "operators_from" in pred.info:
        out["operators_from"] = pred.info["operators_from"]
    if args.breakdown:
        mapped = set(pred.info.get("mapped_keys", []))
        out["operators"] = [{"key": op.key, "ms": round(ms_op, 4),
                             "source": "mapped" if op.key in mapped else
                             "measured" if op.key in pred.kinds[op.kind].lookup else "predicted",
                             "measured": op.key in pred.kinds[op.kind].lookup and op.key not in mapped}
                            for op, ms_op in pred.operator_latencies(cfg)]
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.arch} on {setting.describe()}: {ms:.2f} ms predicted "
              f"(operator sum {out['operator_sum_ms']:.2f} ms, {out['gflops']} GFLOPs)")
        if "transfer" in out:
            x = out["transfer"]
            print(f"  table transferred from {Setting.from_dict(x['from_setting']).describe()}: "
                  f"{x['measured_ops']} operators measured here, {x['mapped_ops']} mapped")
        if "operators_from" in out:
            print(f"  operators (the sum and the breakdown) timed in {out['operators_from']}, the folder's 1-thread "
                  "table; the correction maps them to this setting (latency/README.md says why)")
        for row in out.get("operators", []):
            print(f"  {row['ms']:9.3f} ms  {dict(measured='lut ', mapped='map ').get(row['source'], 'pred')}  "
                  f"{row['key']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
