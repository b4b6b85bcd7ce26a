"""Time an inference callable the way ``benchmark_model`` does: warm-up runs, then timed runs (microseconds).

Shared by the local device and by the ``benchmark_model``-compatible runner, so both report the same thing.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class RunTimings:
    """Per-run wall times in microseconds: the warm-up runs (the first is "first inference") and timed runs."""

    warmup_us: list[float]
    timed_us: list[float]

    @property
    def first_us(self) -> float | None:
        return self.warmup_us[0] if self.warmup_us else (self.timed_us[0] if self.timed_us else None)


def _timed(run: Callable[[], None]) -> float:
    start = time.perf_counter_ns()
    run()
    return (time.perf_counter_ns() - start) / 1000.0


def time_runs(
    run: Callable[[], None],
    *,
    runs: int,
    warmup: int,
    min_secs: float = 0.0,
    warmup_min_secs: float = 0.0,
    max_secs: float = 150.0,
    run_delay_s: float = 0.0,
) -> RunTimings:
    """Run ``warmup`` untimed-for-stats runs then ``runs`` timed runs; ``*_secs`` extend a phase like the tool."""
    warm: list[float] = []
    start = time.monotonic()
    while (len(warm) < warmup or time.monotonic() - start < warmup_min_secs) and time.monotonic() - start < max_secs:
        warm.append(_timed(run))
    timed: list[float] = []
    start = time.monotonic()
    while len(timed) < runs or time.monotonic() - start < min_secs:
        timed.append(_timed(run))
        if time.monotonic() - start >= max_secs:
            break
        if run_delay_s > 0:
            time.sleep(run_delay_s)
    return RunTimings(warmup_us=warm, timed_us=timed)


def random_input(shape: tuple[int, ...], dtype: np.dtype, rng: np.random.Generator) -> np.ndarray:
    """A random tensor of ``shape`` and ``dtype`` (uniform in [0, 1) for floats, small ints otherwise)."""
    dtype = np.dtype(dtype)
    shape = tuple(1 if (d is None or int(d) < 1) else int(d) for d in shape)
    if dtype.kind == "f":
        return rng.random(shape, dtype=np.float32).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(dtype)
    if dtype.kind in "iu":
        return rng.integers(0, 8, size=shape).astype(dtype)
    raise ValueError(f"unsupported input dtype {dtype}")
