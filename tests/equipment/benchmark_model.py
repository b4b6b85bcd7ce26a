"""A ``benchmark_model``-compatible runner: same flags, same output lines, timing by the LiteRT interpreter.

It stands in for TFLite's Android binary inside the test ADB peer's sandbox, so the ``adb`` device kind runs
end to end here. Run: ``python -m tests.equipment.benchmark_model --graph=m.tflite --num_runs=50``.
"""
from __future__ import annotations

import resource
import sys
import threading
from pathlib import Path

import numpy as np

_BOOL = {"true": True, "1": True, "false": False, "0": False}
# flag -> (type, default); the subset of benchmark_model's flags this runner honours.
FLAGS: dict[str, tuple[type, object]] = {
    "graph": (str, ""),
    "num_threads": (int, -1),
    "num_runs": (int, 50),
    "warmup_runs": (int, 1),
    "min_secs": (float, 1.0),
    "max_secs": (float, 150.0),
    "warmup_min_secs": (float, 0.5),
    "run_delay": (float, -1.0),
    "use_xnnpack": (bool, True),
    "enable_op_profiling": (bool, False),
    "report_peak_memory_footprint": (bool, False),
    "verbose": (bool, False),
}


def log(msg: str = "") -> None:
    print(f"INFO: {msg}" if msg else "", flush=True)


def error(msg: str) -> None:
    print(f"ERROR: {msg}", flush=True)


def parse_flags(argv: list[str]) -> tuple[dict[str, object], list[str]]:
    """Parse ``--name=value`` flags; return (values, unconsumed arguments)."""
    values = {k: d for k, (_, d) in FLAGS.items()}
    unconsumed = []
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            unconsumed.append(arg)
            continue
        name, raw = arg[2:].split("=", 1)
        if name not in FLAGS:
            unconsumed.append(arg)
            continue
        typ = FLAGS[name][0]
        try:
            if typ is bool:
                values[name] = _BOOL[raw.lower()]
            else:
                values[name] = typ(raw)
        except (KeyError, ValueError):
            unconsumed.append(arg)
    return values, unconsumed


def _stat_line(times_us: list[float]) -> str:
    t = np.asarray(times_us)
    ints = np.rint(t).astype(np.int64)
    return (
        f"count={len(t)} first={ints[0]} curr={ints[-1]} min={ints.min()} max={ints.max()} "
        f"avg={float(t.mean()):g} std={int(round(float(t.std())))} "
        f"p5={int(np.percentile(ints, 5, method='nearest'))} median={int(np.percentile(ints, 50, method='nearest'))} "
        f"p95={int(np.percentile(ints, 95, method='nearest'))}"
    )


class _PeakRss:
    """Samples this process's resident memory every 50 ms (like the tool's periodic monitor)."""

    def __init__(self) -> None:
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                for line in Path("/proc/self/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            except OSError:
                return
            self._stop.wait(0.05)

    def __enter__(self) -> "_PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    start_rss = _max_rss_mb()
    flags, unconsumed = parse_flags(argv)
    log("STARTING!")
    if unconsumed:
        error(f"Unconsumed cmdline flags: {' '.join(unconsumed)}")
        return 1
    graph = str(flags["graph"])
    threads = int(flags["num_threads"])  # type: ignore[arg-type]
    log("Log parameter values verbosely: [0]")
    log(f"Min num runs: [{flags['num_runs']}]")
    log(f"Min warmup runs: [{flags['warmup_runs']}]")
    log(f"Num threads: [{threads}]")
    log(f"Graph: [{graph}]")
    log(f"Use xnnpack: [{int(bool(flags['use_xnnpack']))}]")
    if not graph:
        error("Please specify the name of your TF Lite input file with --graph")
        return 1
    path = Path(graph)
    try:
        head = path.read_bytes()[:8]
    except OSError:
        error(f"Could not open '{graph}'.")
        error("Failed to mmap model " + graph)
        return 1
    if head[4:8] != b"TFL3":
        error(f"Model provided has model identifier '{head[4:8].decode('latin-1')}', should be 'TFL3'")
        error("Failed to load model " + graph)
        return 1
    log(f"Loaded model {graph}")
    log(f"The input model file size (MB): {path.stat().st_size / 1e6:g}")

    from android_bench.local_device import load_tflite
    from android_bench.timing import time_runs
    from etf.common import EtfError

    try:
        invoke, init_ms = load_tflite(path, threads if threads > 0 else 1, use_xnnpack=bool(flags["use_xnnpack"]))
    except EtfError as exc:
        error(str(exc))
        return 1
    init_rss = _max_rss_mb()
    log(f"Initialized session in {init_ms:g}ms.")
    run_delay = max(0.0, float(flags["run_delay"]))  # type: ignore[arg-type]
    max_secs = float(flags["max_secs"])  # type: ignore[arg-type]
    with _PeakRss() as peak:
        warm = time_runs(invoke, runs=max(1, int(flags["warmup_runs"])), warmup=0,  # type: ignore[arg-type]
                         min_secs=float(flags["warmup_min_secs"]), max_secs=max_secs, run_delay_s=run_delay)
        log(f"Running benchmark for at least {flags['warmup_runs']} iterations and at least "
            f"{flags['warmup_min_secs']:g} seconds but terminate if exceeding {max_secs:g} seconds.")
        log(_stat_line(warm.timed_us))
        log()
        timed = time_runs(invoke, runs=int(flags["num_runs"]), warmup=0,  # type: ignore[arg-type]
                          min_secs=float(flags["min_secs"]), max_secs=max_secs, run_delay_s=run_delay)
        log(f"Running benchmark for at least {flags['num_runs']} iterations and at least "
            f"{flags['min_secs']:g} seconds but terminate if exceeding {max_secs:g} seconds.")
        log(_stat_line(timed.timed_us))
        log()
    warm_us = warm.timed_us
    log(f"Inference timings in us: Init: {int(round(init_ms * 1000))}, First inference: {int(round(warm_us[0]))}, "
        f"Warmup (avg): {float(np.mean(warm_us)):g}, Inference (avg): {float(np.mean(timed.timed_us)):g}")
    log("Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the "
        "actual memory footprint of the model at runtime. Take the information at your discretion.")
    log(f"Memory footprint delta from the start of the tool (MB): init={init_rss - start_rss:g} "
        f"overall={_max_rss_mb() - start_rss:g}")
    if flags["report_peak_memory_footprint"] and peak.peak_kb:
        log(f"Overall peak memory footprint (MB) via periodic monitoring: {peak.peak_kb / 1024.0:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
