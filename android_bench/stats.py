"""The measurement protocol and the statistics record every device kind returns (pure functions).

Protocol: ``warmup`` untimed runs, ``runs`` timed runs, median and spread, a cool-down pause between models,
and a warning when the run-to-run coefficient of variation (std / mean) is above :data:`CV_WARN`.
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from etf.common import EtfError

#: Run-to-run variation (std / mean) above which a result carries a "noisy" warning.
CV_WARN = 0.05


@dataclass(frozen=True)
class MeasureProtocol:
    """How one model is timed: warm-up runs, timed runs, threads, and the pause between models."""

    runs: int = 50
    warmup: int = 5
    threads: int | None = None
    cooldown_s: float | None = None

    def __post_init__(self) -> None:
        if self.runs < 1:
            raise EtfError(f"--runs must be at least 1, got {self.runs}")
        if self.warmup < 0:
            raise EtfError(f"--warmup must be 0 or more, got {self.warmup}")
        if self.threads is not None and self.threads < 1:
            raise EtfError(f"--threads must be at least 1, got {self.threads}")
        if self.cooldown_s is not None and self.cooldown_s < 0:
            raise EtfError(f"--cooldown must be 0 or more seconds, got {self.cooldown_s}")


@dataclass
class BenchStats:
    """Latency statistics of one model on one device (milliseconds), plus the conditions they were taken in.

    ``peak_memory_mb``: on a phone, benchmark_model's periodic peak when reported, else its max-RSS growth
    ("overall"); locally, the resident memory that loading and running the model added to this process.
    ``governor`` / ``temperature_c``: CPU frequency governors and the hottest thermal zone, when readable.
    """

    model: str
    device: str
    runtime: str
    threads: int
    runs: int
    warmup: int
    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    cv: float
    init_ms: float | None = None
    first_inference_ms: float | None = None
    warmup_avg_ms: float | None = None
    peak_memory_mb: float | None = None
    model_bytes: int | None = None
    cpu_mask: str | None = None
    governor: str | None = None
    temperature_c: float | None = None
    warnings: list[str] = field(default_factory=list)
    path: str | None = None  # the model file on this machine

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``etf-bench --json`` object)."""
        return asdict(self)


def cv_warning(cv: float, threshold: float = CV_WARN) -> str | None:
    """The warning text for a coefficient of variation above ``threshold``, else None."""
    if cv > threshold:
        return (
            f"run-to-run variation is {cv:.1%} (above {threshold:.0%}): the numbers are noisy; close other "
            "work on the device, let it cool, or raise --runs"
        )
    return None


def summarize_times(
    times_ms: Iterable[float],
    *,
    model: str,
    device: str,
    runtime: str,
    threads: int,
    warmup: int,
    **extra: Any,
) -> BenchStats:
    """Build :class:`BenchStats` from per-run times (ms); adds the high-variation warning when due."""
    times = [float(t) for t in times_ms]
    if not times:
        raise EtfError(f"no timed runs were recorded for {model}")
    mean = statistics.fmean(times)
    std = statistics.pstdev(times) if len(times) > 1 else 0.0
    cv = std / mean if mean > 0 else 0.0
    warnings = list(extra.pop("warnings", []))
    note = cv_warning(cv)
    if note:
        warnings.append(note)
    return BenchStats(
        model=model, device=device, runtime=runtime, threads=threads, runs=len(times), warmup=warmup,
        median_ms=statistics.median(times), mean_ms=mean, std_ms=std, min_ms=min(times), max_ms=max(times),
        cv=cv, warnings=warnings, **extra,
    )


def parse_governors(text: str) -> str | None:
    """Summarise ``scaling_governor`` contents (one word per CPU), e.g. ``schedutil`` or ``performance,schedutil``."""
    names = sorted({w for w in text.split() if w.isidentifier()})
    return ",".join(names) if names else None


def parse_temperatures(text: str) -> float | None:
    """Hottest plausible reading (deg C) among ``thermal_zone*/temp`` values (millidegrees or degrees)."""
    best: float | None = None
    for word in text.split():
        try:
            value = float(word)
        except ValueError:
            continue
        celsius = value / 1000.0 if abs(value) >= 200 else value
        if 0.0 < celsius < 150.0:
            best = celsius if best is None else max(best, celsius)
    return best
