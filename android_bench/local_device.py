"""The ``local`` device: this machine's CPU, TFLite through the LiteRT interpreter (XNNPACK) and ONNX Runtime."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from android_bench.device import Device, DeviceStatus, ProgressFn
from android_bench.model_files import ONNX, model_kind
from android_bench.stats import BenchStats, MeasureProtocol, parse_governors, parse_temperatures, summarize_times
from android_bench.timing import RunTimings, random_input, time_runs
from etf.common import EtfError
from etf.quiet import captured

GOVERNOR_GLOB = "/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor"
THERMAL_GLOB = "/sys/class/thermal/thermal_zone*/temp"


def _read_glob(pattern: str) -> str:
    """Concatenated contents of the readable files matching ``pattern`` (unreadable ones are skipped)."""
    import glob

    parts = []
    for name in sorted(glob.glob(pattern)):
        try:
            parts.append(Path(name).read_text())
        except OSError:
            continue
    return "\n".join(parts)


def read_local_conditions() -> tuple[str | None, float | None]:
    """CPU governor summary and hottest thermal zone (deg C) of this machine, None where not exposed."""
    return parse_governors(_read_glob(GOVERNOR_GLOB)), parse_temperatures(_read_glob(THERMAL_GLOB))


def load_tflite(path: Path, threads: int, use_xnnpack: bool = True) -> tuple[Callable[[], None], float]:
    """Load a .tflite into a LiteRT interpreter with random inputs; return (invoke, init_ms)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if use_xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        with captured("LiteRT interpreter creation", tail=False):  # XNNPACK/TFLite INFO lines from C++
            start = time.perf_counter()
            interp = Interpreter(model_path=str(path), num_threads=threads, experimental_op_resolver_type=resolver)
            interp.allocate_tensors()
            init_ms = (time.perf_counter() - start) * 1000.0
    except (ValueError, RuntimeError) as exc:
        raise EtfError(f"LiteRT cannot load {path}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
    rng = np.random.default_rng(0)
    for detail in interp.get_input_details():
        interp.set_tensor(detail["index"], random_input(tuple(detail["shape"]), detail["dtype"], rng))
    return interp.invoke, init_ms


def load_onnx(path: Path, threads: int) -> tuple[Callable[[], None], float]:
    """Load a .onnx into an ONNX Runtime CPU session with random inputs; return (run, init_ms)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    start = time.perf_counter()
    try:
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception classes for bad files
        raise EtfError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0][:200]}") from None
    init_ms = (time.perf_counter() - start) * 1000.0
    rng = np.random.default_rng(0)
    type_map = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
                "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
                "tensor(int8)": np.int8, "tensor(bool)": np.bool_}
    feeds = {}
    for inp in sess.get_inputs():
        if inp.type not in type_map:
            raise EtfError(f"{path}: input {inp.name!r} has unsupported type {inp.type}")
        shape = tuple(d if isinstance(d, int) else 1 for d in inp.shape)
        feeds[inp.name] = random_input(shape, type_map[inp.type], rng)

    def run() -> None:
        sess.run(None, feeds)

    return run, init_ms


def _rss_mb() -> float | None:
    """This process's resident memory now (Linux ``/proc``), None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


class LocalDevice(Device):
    """This CPU. ``.tflite`` runs in LiteRT with XNNPACK, ``.onnx`` in ONNX Runtime, ``threads`` intra-op threads."""

    kind = "local"

    def __init__(self, name: str = "local", threads: int = 1, cooldown_s: float = 0.5) -> None:
        self.name = name
        self.default_threads = threads
        self.default_cooldown_s = cooldown_s

    def _benchmark_one(self, path: Path, protocol: MeasureProtocol) -> BenchStats:
        kind = model_kind(path)
        threads = self.threads_for(protocol)
        governor, temperature = read_local_conditions()
        rss_before = _rss_mb()
        if kind == ONNX:
            run, init_ms = load_onnx(path, threads)
            runtime = "onnxruntime-cpu"
        else:
            run, init_ms = load_tflite(path, threads)
            runtime = "litert-xnnpack"
        try:
            timings: RunTimings = time_runs(run, runs=protocol.runs, warmup=protocol.warmup, max_secs=float("inf"))
        except (RuntimeError, ValueError) as exc:
            raise EtfError(f"inference failed for {path}: {str(exc).splitlines()[0][:200]}") from None
        first = timings.first_us
        rss_after = _rss_mb()
        footprint = max(0.0, rss_after - rss_before) if rss_before is not None and rss_after is not None else None
        return summarize_times(
            [t / 1000.0 for t in timings.timed_us],
            model=path.name, device=self.name, runtime=runtime, threads=threads, warmup=protocol.warmup,
            init_ms=init_ms,
            first_inference_ms=None if first is None else first / 1000.0,
            warmup_avg_ms=float(np.mean(timings.warmup_us)) / 1000.0 if timings.warmup_us else None,
            peak_memory_mb=footprint,
            model_bytes=path.stat().st_size,
            path=str(path.resolve()),
            governor=governor,
            temperature_c=temperature,
        )

    def _benchmark_many(
        self, paths: list[Path], protocol: MeasureProtocol, progress: ProgressFn | None
    ) -> list[BenchStats]:
        for p in paths:  # fail on a bad file before spending time on the good ones
            model_kind(p)
        results = []
        cooldown = self.cooldown_for(protocol)
        for i, path in enumerate(paths):
            if i and cooldown > 0:
                time.sleep(cooldown)
            results.append(self._benchmark_one(path, protocol))
            if progress:
                progress(i + 1, len(paths), path.name)
        return results

    def check(self) -> DeviceStatus:
        return DeviceStatus(self.name, self.kind, True, f"this CPU ({os.cpu_count()} cores)",
                            {"cpus": os.cpu_count()})

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "threads": self.default_threads,
                "cooldown_s": self.default_cooldown_s}
