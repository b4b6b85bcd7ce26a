"""Parse the text printed by TFLite's ``benchmark_model`` into numbers (pure, no I/O).

Handles the formats of several tool generations: the old ``Average inference timings in us: Warmup: ...,
Init: ..., Inference: ...`` summary, the newer ``Inference timings in us: Init: ..., First inference: ...``
summary, ``count=... avg=... std=...`` lines with or without ``p5/median/p95``, log prefixes (``INFO:``,
logcat's ``I tflite  :``) and the memory lines (``Peak memory footprint``, ``Memory footprint delta``,
``Overall peak memory footprint ... via periodic monitoring``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from etf.common import EtfError

_NUM = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"

# A per-run statistics line: ``count=50 first=... curr=... min=... max=... avg=... std=...`` (+ p5/median/p95).
_COUNT_LINE = re.compile(
    rf"count=(?P<count>\d+)\s+first=(?P<first>{_NUM})\s+curr=(?P<curr>{_NUM})\s+min=(?P<min>{_NUM})\s+"
    rf"max=(?P<max>{_NUM})\s+avg=(?P<avg>{_NUM})\s+std=(?P<std>{_NUM})"
    rf"(?:\s+p5=(?P<p5>{_NUM})\s+median=(?P<median>{_NUM})\s+p95=(?P<p95>{_NUM}))?"
)
# Newer summary (TF >= 2.1 or so).
_SUMMARY_NEW = re.compile(
    rf"Inference timings in us:\s*Init:\s*(?P<init>{_NUM}),\s*First inference:\s*(?P<first>{_NUM}),\s*"
    rf"Warmup \(avg\):\s*(?P<warmup>{_NUM}),\s*Inference \(avg\):\s*(?P<avg>{_NUM})"
)
# Older summary: ``Average inference timings in us: Warmup: W, Init: I, no stats: A`` (or ``Inference: A``).
_SUMMARY_OLD = re.compile(
    rf"Average inference timings in us:\s*Warmup:\s*(?P<warmup>{_NUM}),\s*Init:\s*(?P<init>{_NUM}),\s*"
    rf"(?:no stats|Inference):\s*(?P<avg>{_NUM})"
)
_PEAK_PERIODIC = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring:\s*(?P<mb>{_NUM})")
_MEM_FOOTPRINT = re.compile(
    rf"(?P<kind>Peak memory footprint|Memory footprint delta from the start of the tool) \(MB\):\s*"
    rf"init=(?P<init>{_NUM})\s+overall=(?P<overall>{_NUM})"
)
_ERROR_LINE = re.compile(r"\b(?:ERROR|Error|FATAL|Failed|failed|Could not|could not|Unconsumed cmdline flags)\b")


@dataclass(frozen=True)
class BenchmarkModelOutput:
    """The numbers one ``benchmark_model`` run reported; times in milliseconds, memory in MB."""

    inference_avg_ms: float
    count: int | None = None
    inference_std_ms: float | None = None
    inference_min_ms: float | None = None
    inference_max_ms: float | None = None
    inference_median_ms: float | None = None
    init_ms: float | None = None
    first_inference_ms: float | None = None
    warmup_avg_ms: float | None = None
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    peak_memory_mb: float | None = None
    summary_format: str = "inference-timings"  # or "average-inference-timings" (older tools)


def _ms(us_text: str | None) -> float | None:
    return None if us_text is None else float(us_text) / 1000.0


def _first_error_line(text: str) -> str | None:
    for line in text.splitlines():
        if _ERROR_LINE.search(line) and "count=" not in line:
            return line.strip()[:200]
    return None


def _excerpt(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return "the output was empty"
    return f"last line was {lines[-1][:120]!r}"


def parse_benchmark_output(text: str) -> BenchmarkModelOutput:
    """Parse ``benchmark_model`` output text; raise :class:`EtfError` (one line) when it holds no result.

    The timed-run statistics come from the last ``count=... first=...`` line that is not an op-profiling
    ``Timings (microseconds):`` line; the summary line gives init, first inference and warm-up average.
    """
    if not isinstance(text, str):
        raise EtfError(f"benchmark_model output must be text, got {type(text).__name__}")
    summary_new = None
    summary_old = None
    count_lines: list[re.Match[str]] = []
    for line in text.splitlines(keepends=True):
        if not line.endswith(("\n", "\r")):
            continue  # an unterminated last line may be cut mid-number: never trust it
        m = _COUNT_LINE.search(line)
        if m and "Timings (" not in line[: m.start()] and summary_new is None and summary_old is None:
            count_lines.append(m)
        summary_new = summary_new or _SUMMARY_NEW.search(line)
        summary_old = summary_old or _SUMMARY_OLD.search(line)
    summary = summary_new or summary_old
    if summary is None:
        err = _first_error_line(text)
        if err:
            raise EtfError(f"benchmark_model failed: {err}")
        if count_lines:
            raise EtfError("benchmark_model output is truncated: it ends before the timing summary line")
        raise EtfError(f"benchmark_model output has no timing results ({_excerpt(text)})")

    timed = count_lines[-1] if count_lines else None
    avg_us = summary.group("avg")
    if timed is not None and len(count_lines) == 1 and summary_new is not None:
        # Only one count line: it is the warm-up line if its avg equals the summary's warm-up average.
        if float(timed.group("avg")) != float(avg_us) and float(timed.group("avg")) == float(summary.group("warmup")):
            timed = None

    complete = text[: text.rfind("\n") + 1]
    peak = _PEAK_PERIODIC.search(complete)
    footprint = _MEM_FOOTPRINT.search(complete)
    mem_init = float(footprint.group("init")) if footprint else None
    mem_overall = float(footprint.group("overall")) if footprint else None
    if peak is not None:
        peak_mb: float | None = float(peak.group("mb"))
    elif footprint is not None and footprint.group("kind") == "Peak memory footprint":
        peak_mb = mem_overall
    else:
        peak_mb = None

    return BenchmarkModelOutput(
        inference_avg_ms=float(avg_us) / 1000.0,
        count=int(timed.group("count")) if timed else None,
        inference_std_ms=_ms(timed.group("std")) if timed else None,
        inference_min_ms=_ms(timed.group("min")) if timed else None,
        inference_max_ms=_ms(timed.group("max")) if timed else None,
        inference_median_ms=_ms(timed.group("median")) if timed else None,
        init_ms=_ms(summary.group("init")),
        first_inference_ms=_ms(summary.group("first")) if summary_new else None,
        warmup_avg_ms=_ms(summary.group("warmup")),
        memory_init_mb=mem_init,
        memory_overall_mb=mem_overall,
        peak_memory_mb=peak_mb,
        summary_format="inference-timings" if summary_new else "average-inference-timings",
    )
