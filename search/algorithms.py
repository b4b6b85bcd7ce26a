"""One entry point for every search algorithm: ``run_search(algo, accuracy_fn, latency_fn, target, ...)``.

Builds the :class:`~search.objective.Objective`, runs ``cd``, ``cd-block``, ``random`` or ``evo`` on it and
returns a :class:`SearchResult` with the winner, the evaluation history and the cost split. Pure: the caller
plugs a search log in through ``cache`` / ``on_evaluate``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

from etf.common import EtfError
from supernet.space import TABLE1, ArchConfig, SearchSpace

from search.baselines import evolutionary_search, random_search
from search.coordinate_descent import Phase, block_coordinate_descent, coordinate_descent
from search.objective import AccuracyFn, Budget, EvalRecord, LatencyFn, Objective, out_of_budget

ALGORITHMS = ("cd", "cd-block", "random", "evo")


@dataclass
class SearchResult:
    """What a search found and what it cost."""

    algo: str
    target: float
    unit: str
    best: ArchConfig
    best_accuracy: float
    best_latency: float
    evaluations: int  # distinct configs evaluated by this search
    evals_to_best: int  # evaluation count at which the winner was first evaluated
    stop_reason: str  # converged | budget | time | samples | stalled
    records: list[EvalRecord]
    wall_seconds: float
    accuracy_seconds: float  # time spent computing accuracies (cache hits cost 0)
    predictor_seconds: float
    predictor_calls: int  # configs whose latency was predicted
    predictor_batches: int
    fresh_evaluations: int  # accuracies computed now (the rest came from the log/cache)
    phases: list[Phase] = field(default_factory=list)

    @property
    def predictor_calls_per_s(self) -> float:
        return self.predictor_calls / self.predictor_seconds if self.predictor_seconds > 0 else float("inf")

    def summary(self) -> dict:
        """A JSON-friendly summary (no per-evaluation records)."""
        return {
            "algo": self.algo, "target": self.target, "unit": self.unit, "best_key": self.best.key(),
            "best_accuracy": self.best_accuracy, "best_latency": self.best_latency,
            "evaluations": self.evaluations, "evals_to_best": self.evals_to_best, "stop_reason": self.stop_reason,
            "wall_s": round(self.wall_seconds, 3), "accuracy_s": round(self.accuracy_seconds, 3),
            "predictor_s": round(self.predictor_seconds, 4), "predictor_calls": self.predictor_calls,
            "predictor_batches": self.predictor_batches,
            "predictor_calls_per_s": round(self.predictor_calls_per_s, 1),
            "fresh_evaluations": self.fresh_evaluations,
            "phases": [p.__dict__ for p in self.phases],
        }


def run_search(algo: str, accuracy_fn: AccuracyFn, latency_fn: LatencyFn, target: float, *,
               budget: Budget = Budget(), seed: int = 0, space: SearchSpace = TABLE1,
               start: ArchConfig | None = None, presets: Mapping[str, ArchConfig] | None = None,
               cache: Mapping[str, float] | None = None, on_evaluate: Callable[[EvalRecord], None] | None = None,
               unit: str = "ms", order: str = "space", anchors: bool = False, floor: float = 0.0) -> SearchResult:
    """Run one search algorithm under ``latency_fn(cfgs) <= target`` and return its :class:`SearchResult`.

    Deterministic for a deterministic accuracy function (or a ``cache`` holding the previous run's values),
    the same ``seed`` and an evaluation budget: that is what makes a killed search resumable from its log.
    ``order`` is the coordinate sweep order of cd / cd-block ('space', 'coarse-first' or 'shuffled' by ``seed``); ``anchors`` makes them
    start from the most accurate feasible preset / min config instead of the largest feasible preset. ``floor``
    > 0 also requires ``latency_fn(cfg) >= floor`` (a search told to use its latency budget; cd / cd-block grow
    their start into the band)."""
    if algo not in ALGORITHMS:
        raise EtfError(f"unknown search algorithm {algo!r}; use one of {', '.join(ALGORITHMS)}")
    if budget.max_evals is not None and budget.max_evals < 1:
        raise EtfError(f"the evaluation budget must be at least 1, not {budget.max_evals}")
    if budget.max_minutes is not None and not budget.max_minutes > 0:
        raise EtfError(f"the time budget must be positive, not {budget.max_minutes:g} minutes")
    t0 = time.perf_counter()
    obj = Objective(accuracy_fn, latency_fn, target, budget=budget, algo=algo, cache=cache, on_evaluate=on_evaluate,
                    floor=floor)
    phases: list[Phase] = []
    if algo == "cd":
        _, phases, reason = coordinate_descent(obj, space, start, presets, unit=unit, order=order, anchors=anchors,
                                               seed=seed)
    elif algo == "cd-block":
        _, phases, reason = block_coordinate_descent(obj, space, start, presets, unit=unit, order=order,
                                                     anchors=anchors, seed=seed)
    elif algo == "random":
        _, reason = random_search(obj, space, seed, unit=unit)
    else:
        _, reason = evolutionary_search(obj, space, seed, unit=unit)
    if obj.best is None:  # the budget ran out before the first evaluation (a tiny --minutes)
        raise out_of_budget(obj)
    return SearchResult(
        algo=algo, target=target, unit=unit, best=obj.best, best_accuracy=obj.best_accuracy,
        best_latency=obj.best_latency, evaluations=obj.evaluations, evals_to_best=obj.evals_to_best,
        stop_reason=reason, records=list(obj.records), wall_seconds=time.perf_counter() - t0,
        accuracy_seconds=obj.accuracy_seconds, predictor_seconds=obj.predictor_seconds,
        predictor_calls=obj.predictor_calls, predictor_batches=obj.predictor_batches,
        fresh_evaluations=obj.fresh_evaluations, phases=phases,
    )


__all__ = ["ALGORITHMS", "SearchResult", "run_search"]
