"""The one interface every device kind implements: time models, report :class:`BenchStats`, say if reachable."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from android_bench.stats import BenchStats, MeasureProtocol

#: ``progress(done, total, model_name)`` called after each model of a ``benchmark_many`` call.
ProgressFn = Callable[[int, int, str], None]



def setting_number(entry: dict[str, Any], key: str, default: float, *, low: float, integer: bool = False) -> float:
    """A numeric setting of a devices-TOML entry: ``default`` when absent, else a finite number (an integer when
    ``integer``) of at least ``low``; anything else (a string, a bool, NaN, too small) is a ValueError that
    names the key, so the caller can report one line instead of failing inside ``float()``."""
    import math

    if key not in entry:
        return default
    value = entry[key]
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise ValueError(f"{key} must be {kind}, got {value!r}")
    if not math.isfinite(value) or value < low:
        raise ValueError(f"{key} must be {kind} >= {low:g}, got {value!r}")
    return value

@dataclass
class DeviceStatus:
    """Result of a reachability check: ``ok`` plus a one-line detail (model name, or why it failed)."""

    name: str
    kind: str
    ok: bool
    detail: str
    info: dict[str, Any] = field(default_factory=dict)


class Device(ABC):
    """A place that runs models and times them. ``benchmark_many`` batches work (one connection, one run)."""

    name: str
    kind: str
    default_threads: int = 1
    default_cooldown_s: float = 0.5

    def benchmark(
        self,
        model_path: str | Path,
        *,
        runs: int = 50,
        warmup: int = 5,
        threads: int | None = None,
        cooldown_s: float | None = None,
    ) -> BenchStats:
        """Time one model (see :meth:`benchmark_many`)."""
        return self.benchmark_many([model_path], runs=runs, warmup=warmup, threads=threads, cooldown_s=cooldown_s)[0]

    def benchmark_many(
        self,
        model_paths: Sequence[str | Path],
        *,
        runs: int = 50,
        warmup: int = 5,
        threads: int | None = None,
        cooldown_s: float | None = None,
        progress: ProgressFn | None = None,
    ) -> list[BenchStats]:
        """Time several models in order with the same protocol; a cool-down pause separates models.

        Returns one :class:`BenchStats` per path, in the same order. Raises ``EtfError`` on bad input or a lost
        device (after removing whatever was pushed to it).
        """
        protocol = MeasureProtocol(runs=runs, warmup=warmup, threads=threads, cooldown_s=cooldown_s)
        paths = [Path(p).expanduser() for p in model_paths]
        return self._benchmark_many(paths, protocol, progress) if paths else []

    def threads_for(self, protocol: MeasureProtocol) -> int:
        return protocol.threads if protocol.threads is not None else self.default_threads

    def cooldown_for(self, protocol: MeasureProtocol) -> float:
        return protocol.cooldown_s if protocol.cooldown_s is not None else self.default_cooldown_s

    @abstractmethod
    def _benchmark_many(
        self, paths: list[Path], protocol: MeasureProtocol, progress: ProgressFn | None
    ) -> list[BenchStats]:
        ...

    @abstractmethod
    def check(self) -> DeviceStatus:
        """Is the device reachable and usable? Never raises for an unreachable device."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """The device's configuration as a JSON-ready dict (for ``etf-devices``)."""
