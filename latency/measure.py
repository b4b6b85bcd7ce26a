"""Paired measurement of whole networks: each network timed right beside a whole-network reference, in rounds.

Why: the device's speed moves (on this shared CPU a ~3 ms operator went from 2.55 to 4.50 ms during one
profile; one network measured 56 and 80 ms two minutes apart). A raw latency mixes the network with the speed
of the moment; the ratio network / reference measured beside it does not, when the drift scales both.

Protocol, per round: ``ref, A, ref, B, ref, C, ref`` (every network has a reference on each side), the networks'
order rotated by one each round so no network always follows the same neighbour. Per network the result holds
the median over rounds of ``network / mean(adjacent references)``, the reference's median over the whole run,
and the network's raw median over rounds.

Each visit's time in the ratio is the visit's *fastest* run when the device reports one (``min_ms``), its median
otherwise: on this 2-core machine a 2-thread run is slowed whenever something else holds a core, for a run or
for seconds, and the fastest run of a visit is the one nothing interrupted. Measured twice in a row (50 held-out
+ 16 correction subnets at 512 px, 3 rounds x 10 runs): the two ratios of a subnet differed by 1.4% (median;
7.8% at the 90th percentile) with the fastest run, by 2.7% (8.5%) with the median; with 1 thread (5 runs a
visit) 1.2% (3.0%) against 1.7% (4.8%) (latency/RESULTS.md).

A slowdown that lasts a whole round is another matter: with 2 threads here, while something else holds a core
for tens of seconds, TopFormer-Tiny ran 12.8 ms instead of 7.5 and larger networks lost less, so their ratios
fell by 14-42% (18 of 50 held-out subnets of one report; the other 32, timed at 7.3-7.7 ms, were within -4..+6%
of the prediction). Such a round is *off-regime*: its reference ran more than ``REGIME_TOLERANCE`` slower than the
fastest reference known for the setting (the caller's ``baseline_ms``, e.g. the table's fastest, or an earlier
round). It is timed again after a pause, up to ``REGIME_RETRIES`` times, then kept; when a retry is no faster
than the attempt before, the device has drifted (drift is what the ratio cancels): that speed becomes the call's
baseline and no further round is retried for it, so a stale baseline costs one extra round, not three per round. Raw latencies (``raw_ms``, ``ref_ms``) stay medians: what a user reads as "the latency".

How many rounds: at least ``MIN_ROUNDS``, then more, up to ``MAX_ROUNDS``, while any network's ratio has a
relative standard error (:func:`ratio_se`) above ``TARGET_SE``; a quiet device stops at the minimum. On this
shared CPU on 2026-11-28 one subnet's ratio moved by ~7% (standard deviation) from round to round, so the
median of 3 rounds was itself uncertain by ~5%: 30 subnets timed in 15 rounds and scored on their first r rounds
(``benchmarks/bench_rounds.py``; the same predictor, nothing refitted) were 90% within ±10% of it at 3 rounds and
100% from 7, MAPE 5.7% at 3 and 3.3-3.8% from 6 on (latency/RESULTS.md).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from etf.common import EtfError

from latency.networks import REFERENCE_PRESET  # noqa: F401 (re-exported: the preset a measurement pairs with)
#: A round whose reference ran this much slower than the fastest known is off-regime and timed again.
REGIME_TOLERANCE = 0.25
#: At most this many extra attempts per off-regime round (then it is kept as it is).
REGIME_RETRIES = 2
#: Whole networks measured for the latency tables, the report and the search: at least this many rounds ...
MIN_ROUNDS = 3
#: ... and more, up to this many, while a network's ratio is less certain than ``TARGET_SE`` (module doc).
MAX_ROUNDS = 9
#: Relative standard error of a measured ratio (:func:`ratio_se`) at which no more rounds are timed.
TARGET_SE = 0.015
#: Revision of this protocol, recorded with held-out rows so that a report never mixes measurements made under
#: another one (1: a fixed 3 rounds; 2: 3 rounds, then more while a ratio is uncertain).
PROTOCOL = 2


@dataclass(frozen=True)
class PairedResult:
    """One network measured with the paired protocol: ``ratio`` to the reference, both medians (ms)."""

    ratio: float
    ref_ms: float
    raw_ms: float
    std_ms: float
    rounds: int
    runs: int
    #: rounds timed again because the reference ran off-regime (:func:`off_regime`)
    retried: int = 0
    #: relative standard error of ``ratio`` (:func:`ratio_se`)
    se: float = float("inf")


def round_order(n: int, round_index: int) -> list[int]:
    """The networks' order in round ``round_index``: ``0..n-1`` rotated left by ``round_index``."""
    if n <= 0:
        return []
    k = round_index % n
    return list(range(k, n)) + list(range(k))


def round_sequence(n: int, round_index: int) -> list[int]:
    """One round as indices into ``[reference, net0, net1, ...]``: ``0`` is the reference, ``i + 1`` network ``i``;
    ``[0, a, 0, b, 0, ...]`` ending with the reference, so every network has a reference on each side."""
    seq = [0]
    for i in round_order(n, round_index):
        seq += [i + 1, 0]
    return seq


def round_values(n: int, rounds: Sequence[Sequence[float]], fastest: Sequence[Sequence[float]] | None
                  ) -> tuple[list[list[float]], list[list[float]], list[float]]:
    """Per network its per-round ratios (on ``fastest`` when given) and raw medians, and every reference visit."""
    ratios: list[list[float]] = [[] for _ in range(n)]
    raws: list[list[float]] = [[] for _ in range(n)]
    refs: list[float] = []
    for r, times in enumerate(rounds):
        seq = round_sequence(n, r)
        low = fastest[r] if fastest is not None else times
        if len(times) != len(seq) or len(low) != len(seq):
            raise ValueError(f"round {r} has {len(times)} timings, expected {len(seq)}")
        refs += [t for idx, t in zip(seq, times) if idx == 0]
        for pos in range(1, len(seq), 2):
            net = seq[pos] - 1
            beside = (low[pos - 1] + low[pos + 1]) / 2
            ratios[net].append(low[pos] / beside)
            raws[net].append(times[pos])
    return ratios, raws, refs


def ratio_se(ratios: Sequence[float]) -> float:
    """Relative standard error of the median of a network's per-round ratios (1.2533 x sample standard deviation
    / sqrt(rounds) / median): how far its measured ratio may sit from what more rounds would give; ``inf`` with
    fewer than 3 rounds, where a spread says nothing."""
    if len(ratios) < 3:
        return float("inf")
    return 1.2533 * statistics.stdev(ratios) / len(ratios) ** 0.5 / statistics.median(ratios)


def summarize_rounds(n: int, rounds: Sequence[Sequence[float]], runs: int = 0,
                     fastest: Sequence[Sequence[float]] | None = None) -> list[PairedResult]:
    """Per-network :class:`PairedResult` from the medians (ms) timed in each round, in the order
    :func:`round_sequence` gave (round ``r``'s list holds one median per entry of ``round_sequence(n, r)``);
    ``fastest``: each visit's fastest run in the same layout, which the ratios are then taken on (module doc)."""
    ratios, raws, refs = round_values(n, rounds, fastest)
    if not refs:
        raise ValueError("no rounds")
    ref_med = statistics.median(refs)
    return [PairedResult(ratio=statistics.median(ratios[i]), ref_ms=ref_med, raw_ms=statistics.median(raws[i]),
                         std_ms=statistics.pstdev(raws[i]) if len(raws[i]) > 1 else 0.0, rounds=len(raws[i]),
                         runs=runs, se=ratio_se(ratios[i]))
            for i in range(n)]


def off_regime(round_ref_ms: float, baseline_ms: float | None, tolerance: float = REGIME_TOLERANCE) -> bool:
    """True when a round's reference (the median of its reference visits' fastest runs) ran more than
    ``tolerance`` slower than ``baseline_ms``, the fastest reference known for this setting: the device was in
    another state (a core taken, throttled), in which networks do not keep their ratios (module doc)."""
    return baseline_ms is not None and round_ref_ms > (1.0 + tolerance) * baseline_ms


#: A retry whose reference came back at least this fraction of the attempt before is "no faster": drift.
NO_FASTER = 0.9


def time_again(ref_ms: float, baseline_ms: float | None, previous_ms: float | None = None) -> bool:
    """Whether a round (or a profiling batch) whose reference took ``ref_ms`` is timed again: it ran
    :func:`off_regime` against ``baseline_ms``, and it is not a retry that came back no faster than the attempt
    before (``previous_ms``: then the device is slower now, not interrupted, and timing again would not help)."""
    if previous_ms is not None and ref_ms >= NO_FASTER * previous_ms:
        return False
    return off_regime(ref_ms, baseline_ms)


def measure_paired(device: Any, models: Sequence[str | Path], reference_model: str | Path, rounds: int = 3,
                   runs: int = 10, warmup: int = 2, threads: int | None = None, baseline_ms: float | None = None,
                   retries: int = REGIME_RETRIES, pause_s: float = 1.0, max_rounds: int | None = None,
                   target_se: float = TARGET_SE) -> list[PairedResult]:
    """Time ``models`` on ``device`` with the paired protocol (at least ``rounds`` rounds, ``runs`` timed runs per
    model per visit); one ``benchmark_many`` round trip per round. More rounds follow, up to ``max_rounds``
    (default ``rounds``: a fixed count), while any model's ratio is less certain than ``target_se``
    (:func:`ratio_se`). A round whose reference ran off-regime
    (:func:`off_regime` against ``baseline_ms`` or the fastest reference of this call's earlier rounds) is timed
    again after ``pause_s`` x attempt, up to ``retries`` times; then it is kept. A retry whose reference is no
    faster than the attempt before means the device is slower now, not interrupted (a stale ``baseline_ms``,
    a warm phone): that state becomes the call's baseline and nothing more is retried for it. Returns one
    :class:`PairedResult` per model (``retried``: rounds timed again; ``se``: its ratio's standard error)."""
    max_rounds = rounds if max_rounds is None else max_rounds
    if rounds < 1 or runs < 1 or max_rounds < rounds:
        raise EtfError(f"paired measurement needs rounds >= 1, runs >= 1 and max rounds >= rounds, not {rounds}, "
                       f"{runs} and {max_rounds}")
    if not models:
        return []
    paths = [Path(reference_model)] + [Path(m) for m in models]
    timings: list[list[float]] = []
    fastest: list[list[float]] = []
    retried = 0
    best = baseline_ms
    r = 0
    while r < rounds or (r < max_rounds and not settled(len(models), timings, fastest, target_se)):
        seq = round_sequence(len(models), r)
        previous = None
        for attempt in range(retries + 1):
            stats = device.benchmark_many([paths[i] for i in seq], runs=runs, warmup=warmup, threads=threads,
                                          cooldown_s=0.0 if getattr(device, "kind", "") == "local" else None)
            low = [float(getattr(s, "min_ms", None) or s.median_ms) for s in stats]
            ref_now = statistics.median(t for i, t in zip(seq, low) if i == 0)
            if attempt == retries or not time_again(ref_now, best, previous):
                if previous is not None and ref_now >= NO_FASTER * previous:
                    best = ref_now  # timed again and no faster: the device is slower now (drift), not interrupted
                break
            retried += 1
            previous = ref_now
            time.sleep(pause_s * (attempt + 1))
        best = ref_now if best is None else min(best, ref_now)
        timings.append([float(s.median_ms) for s in stats])
        fastest.append(low)
        r += 1
    return [replace(res, retried=retried) for res in summarize_rounds(len(models), timings, runs, fastest)]


def settled(n: int, timings: Sequence[Sequence[float]], fastest: Sequence[Sequence[float]],
            target_se: float = TARGET_SE) -> bool:
    """Whether every one of ``n`` networks' ratios, over the rounds so far, is within ``target_se``."""
    ratios, _, _ = round_values(n, timings, fastest)
    return all(ratio_se(r) <= target_se for r in ratios)


__all__ = ["REFERENCE_PRESET", "REGIME_TOLERANCE", "REGIME_RETRIES", "MIN_ROUNDS", "MAX_ROUNDS", "TARGET_SE", "PROTOCOL",
           "ratio_se", "round_values", "settled", "off_regime", "time_again", "NO_FASTER", "PairedResult", "measure_paired", "round_order", "round_sequence", "summarize_rounds"]
