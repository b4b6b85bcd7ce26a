"""``etf-bench``: time .tflite (LiteRT here, benchmark_model on a phone) and .onnx files side by side."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from android_bench.device_config import default_config_path, resolve_device
from android_bench.model_files import export_setting, model_kind
from android_bench.stats import CV_WARN, BenchStats
from etf.args import Parser, device_name, existing_file, nonneg_float, nonneg_int, positive_int
from etf.common import cli_entry, out_console

BENCH_EPILOG = """\
examples:
  etf-bench out/model.tflite                       # this CPU, LiteRT + XNNPACK, 1 thread
  etf-bench out/model.tflite out/model.onnx -t 2   # LiteRT vs ONNX Runtime side by side
  etf-bench out/model.tflite --device pixel --json # a phone from ~/.config/etf/devices.toml

The output head (logits8 / labels / logits) and precision are read from the export.json etf-export wrote next
to each file and printed with its timing ("-" / null when there is none). "XNNPACK parts" is how many delegated
parts LiteRT on this machine cuts a .tflite into (1 is the fast case; a warning names the ops left outside).

protocol: --warmup untimed runs, then --runs timed runs; median, mean, std, min, max; a --cooldown pause
between models; a warning when std/mean is above {cv:.0%}. Devices: see `etf-devices` and android_bench/README.md.
"""


def _fmt(value: object, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def stats_table(results: list[BenchStats], settings: list[dict] | None = None) -> Table:
    """One column per model: the statistics side by side, under the head and precision ``etf-export`` recorded."""
    table = Table(title="etf-bench", show_lines=False)
    table.add_column("", style="bold")
    for r in results:
        table.add_column(f"{r.model}\n{r.device} / {r.runtime}", justify="right")
    for key in ("head", "precision", "xnnpack_parts"):
        label = "XNNPACK parts (here)" if key == "xnnpack_parts" else key
        table.add_row(label, *[_fmt((s or {}).get(key)) for s in (settings or [{}] * len(results))])
    rows = [
        ("median ms", "median_ms"), ("mean ms", "mean_ms"), ("std ms", "std_ms"), ("min ms", "min_ms"),
        ("max ms", "max_ms"), ("cv", "cv"), ("runs", "runs"), ("warm-up runs", "warmup"), ("threads", "threads"),
        ("init ms", "init_ms"), ("first inference ms", "first_inference_ms"), ("warm-up avg ms", "warmup_avg_ms"),
        ("peak memory MB", "peak_memory_mb"), ("model MB", "model_bytes"), ("cpu mask", "cpu_mask"),
        ("governor", "governor"), ("temperature C", "temperature_c"),
    ]
    for label, key in rows:
        cells = []
        for r in results:
            v = getattr(r, key)
            if key == "cv" and v is not None:
                cells.append(f"[red]{v:.1%}[/red]" if v > CV_WARN else f"{v:.1%}")
            elif key == "model_bytes" and v is not None:
                cells.append(f"{v / 1e6:.2f}")
            else:
                cells.append(_fmt(v))
        table.add_row(label, *cells)
    return table


@cli_entry("etf-bench")
def main(argv: list[str] | None = None) -> int:
    ap = Parser(
        prog="etf-bench", allow_abbrev=False,
        description="Time .tflite (any device) and .onnx (local device) model files with an honest protocol and "
        "print latency statistics.",
        epilog=BENCH_EPILOG.format(cv=CV_WARN),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("files", nargs="+", metavar="FILE", help=".tflite or .onnx model file(s)")
    ap.add_argument("-d", "--device", default=None, type=device_name, help="device name from the config (default: local, this CPU)")
    ap.add_argument("--config", default=None, type=existing_file, help=f"devices TOML (default: $ETF_DEVICES or {default_config_path()})")
    ap.add_argument("-t", "--threads", type=positive_int, default=None, help="inference threads (default: the device's)")
    ap.add_argument("-n", "--runs", type=positive_int, default=50, help="timed runs per model (default 50)")
    ap.add_argument("-w", "--warmup", type=nonneg_int, default=5, help="untimed warm-up runs per model (default 5)")
    ap.add_argument("--cooldown", type=nonneg_float, default=None, metavar="S",
                    help="pause between models in seconds (default: the device's)")
    ap.add_argument("--json", action="store_true",
                    help="print JSON: one object for one file, a list for several")
    args = ap.parse_args(argv)

    for f in args.files:  # fail on a bad file before connecting anywhere
        model_kind(f)
    device = resolve_device(args.device, args.config)
    console = Console(stderr=True)
    paths = [Path(f) for f in args.files]
    if args.json or len(paths) == 1:
        results = device.benchmark_many(paths, runs=args.runs, warmup=args.warmup, threads=args.threads,
                                         cooldown_s=args.cooldown)
    else:
        from rich.progress import Progress

        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(f"benchmarking on {device.name}", total=len(paths))
            results = device.benchmark_many(paths, runs=args.runs, warmup=args.warmup, threads=args.threads,
                                             cooldown_s=args.cooldown,
                                             progress=lambda done, total, name: bar.update(task, completed=done))
    settings = [export_setting(p) | _delegation(p) for p in paths]  # head/precision from the export.json
    if args.json:
        payload = [r.to_dict() | s for r, s in zip(results, settings)]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
    else:
        out_console().print(stats_table(results, settings))
    for r, s in zip(results, settings):
        for w in r.warnings:
            console.print(f"[yellow]warning[/yellow] ({r.model}): {w}")
        if s.get("outside_xnnpack"):
            ops = ", ".join(f"{k} x{v}" for k, v in s["outside_xnnpack"].items())
            console.print(f"[yellow]warning[/yellow] ({r.model}): runs in {s['xnnpack_parts']} XNNPACK parts on "
                          f"this CPU's LiteRT, with {ops} outside them (slower; an int8 file from etf-export keeps "
                          f"such ops float)")
    return 0


def _delegation(path: Path) -> dict:
    """How LiteRT's CPU delegate takes a .tflite here (parts, ops outside): ``{}`` for other files."""
    if path.suffix != ".tflite":
        return {}
    from android_bench.export.oplist import delegation

    found = delegation(path)
    return {"xnnpack_parts": found.parts, "outside_xnnpack": found.outside}


if __name__ == "__main__":
    raise SystemExit(main())
