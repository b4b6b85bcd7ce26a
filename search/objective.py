"""The search objective: a costly accuracy signal under an instant (batched) latency constraint.

Every search algorithm talks to one :class:`Objective`. It caches accuracy by ``cfg.key()``, counts the
evaluations a search asks for (a config asked twice costs one), enforces the evaluation/time budget, keeps the
best feasible config seen so far (accuracy first, lower latency on ties) and times predictor calls apart from
accuracy evaluations. Pure: no files; a search log plugs in through ``cache`` and ``on_evaluate``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from etf.common import EtfError
from supernet.space import ArchConfig

#: Predicted latency (ms) of many configs at once; must be cheap (the search calls it for every candidate).
LatencyFn = Callable[[Sequence[ArchConfig]], np.ndarray]
#: The accuracy signal of one config (e.g. supernet mIoU % after BN recalibration); costly.
AccuracyFn = Callable[[ArchConfig], float]

#: Slack on the constraint so that a config predicted exactly at the target counts as feasible.
FEASIBILITY_EPS = 1e-9


class BudgetExhausted(Exception):
    """Raised inside a search when the next new accuracy evaluation would exceed the budget."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def out_of_budget(objective: "Objective") -> EtfError:
    """The one-line error for a search whose budget ran out before it evaluated a single config (e.g.
    ``--minutes`` smaller than one evaluation): not the same as an infeasible target."""
    b = objective.budget
    spent = (f"{b.max_minutes:g} min" if objective.exhausted() == "time" else f"{b.max_evals} evaluations")
    return EtfError(f"the search budget ({spent}) ran out before the first evaluation; give it more "
                    "(--minutes / --budget)")


@dataclass(frozen=True)
class Budget:
    """How much a search may spend: distinct accuracy evaluations and/or wall-clock minutes (None = no limit)."""

    max_evals: int | None = 50
    max_minutes: float | None = None


@dataclass(frozen=True)
class EvalRecord:
    """One accuracy evaluation of a search, in the order the search asked for it."""

    iteration: int  # 1-based count of this search's distinct evaluations
    algo: str
    cfg: ArchConfig
    key: str
    latency: float  # the constraint's value (predicted ms, or GFLOPs for a FLOPs target)
    accuracy: float
    is_best: bool  # became the best feasible config seen so far
    seconds: float  # time spent computing the accuracy (0 when it came from the cache)
    cached: bool  # answered from a previous run's log / a shared cache
    timestamp: float


@dataclass
class Objective:
    """Accuracy + constraint with caching, counting, budget and best-so-far tracking (see module doc)."""

    accuracy_fn: AccuracyFn
    latency_fn: LatencyFn
    target: float
    budget: Budget = field(default_factory=Budget)
    algo: str = "search"
    cache: Mapping[str, float] | None = None
    on_evaluate: Callable[[EvalRecord], None] | None = None
    clock: Callable[[], float] = time.monotonic
    floor: float = 0.0  # lower bound on the constraint (0: none): a search told to use its latency budget

    def __post_init__(self) -> None:
        self._memo: dict[str, float] = dict(self.cache or {})
        self._latency: dict[str, float] = {}
        self._seen: set[str] = set()  # keys this search has paid for
        self.records: list[EvalRecord] = []
        self.best: ArchConfig | None = None
        self.best_accuracy = float("-inf")
        self.best_latency = float("inf")
        self.evals_to_best = 0
        self.predictor_calls = 0  # configs whose latency was predicted
        self.predictor_batches = 0
        self.predictor_seconds = 0.0
        self.accuracy_seconds = 0.0
        self.fresh_evaluations = 0  # accuracies actually computed (not from the cache)
        self._t0 = self.clock()

    # -- constraint ---------------------------------------------------------------------------------------
    def latencies(self, cfgs: Sequence[ArchConfig]) -> np.ndarray:
        """Constraint values of ``cfgs`` (one batched predictor call, remembered per key)."""
        cfgs = list(cfgs)
        if not cfgs:
            return np.zeros(0)
        t = time.perf_counter()
        values = np.asarray(self.latency_fn(cfgs), dtype=float).reshape(-1)
        self.predictor_seconds += time.perf_counter() - t
        if values.shape[0] != len(cfgs):
            raise ValueError(f"latency function returned {values.shape[0]} values for {len(cfgs)} configs")
        self.predictor_calls += len(cfgs)
        self.predictor_batches += 1
        for cfg, v in zip(cfgs, values):
            self._latency[cfg.key()] = float(v)
        return values

    def latency(self, cfg: ArchConfig) -> float:
        """Constraint value of one config (cached)."""
        key = cfg.key()
        if key not in self._latency:
            self.latencies([cfg])
        return self._latency[key]

    def is_feasible(self, value: float) -> bool:
        """Within [``floor``, ``target``] (the floor is 0 unless the search must use its budget)."""
        return self.floor - FEASIBILITY_EPS <= value <= self.target + FEASIBILITY_EPS

    def under_target(self, value: float) -> bool:
        """Meets the target, whatever the floor."""
        return value <= self.target + FEASIBILITY_EPS

    def feasible(self, cfgs: Sequence[ArchConfig]) -> list[ArchConfig]:
        """The configs of ``cfgs`` that meet the target, in order (one batched predictor call)."""
        cfgs = list(cfgs)
        values = self.latencies(cfgs)
        return [c for c, v in zip(cfgs, values) if self.is_feasible(v)]

    # -- accuracy -----------------------------------------------------------------------------------------
    @property
    def evaluations(self) -> int:
        """Distinct configs this search has evaluated (cache hits from a previous run count: same search)."""
        return len(self._seen)

    def elapsed_minutes(self) -> float:
        return (self.clock() - self._t0) / 60.0

    def exhausted(self) -> str | None:
        """Why no new evaluation is allowed ('budget' or 'time'), or None."""
        if self.budget.max_evals is not None and self.evaluations >= self.budget.max_evals:
            return "budget"
        if self.budget.max_minutes is not None and self.elapsed_minutes() >= self.budget.max_minutes:
            return "time"
        return None

    def seen(self, cfg: ArchConfig) -> bool:
        return cfg.key() in self._seen

    def accuracy(self, cfg: ArchConfig) -> float:
        """The accuracy of a feasible ``cfg``; raises :class:`BudgetExhausted` when a new one is not allowed."""
        key = cfg.key()
        if key in self._seen:
            return self._memo[key]
        reason = self.exhausted()
        if reason:
            raise BudgetExhausted(reason)
        latency = self.latency(cfg)
        if not self.is_feasible(latency):
            raise ValueError(f"search asked for the accuracy of an infeasible config ({latency:.3f} outside "
                             f"[{self.floor}, {self.target}])")
        cached = key in self._memo
        seconds = 0.0
        if not cached:
            t = time.perf_counter()
            self._memo[key] = float(self.accuracy_fn(cfg))
            seconds = time.perf_counter() - t
            self.accuracy_seconds += seconds
            self.fresh_evaluations += 1
        acc = self._memo[key]
        self._seen.add(key)
        is_best = self.best is None or (acc, -latency) > (self.best_accuracy, -self.best_latency)
        if is_best:
            self.best, self.best_accuracy, self.best_latency = cfg, acc, latency
            self.evals_to_best = self.evaluations
        record = EvalRecord(self.evaluations, self.algo, cfg, key, latency, acc, is_best, seconds, cached, time.time())
        self.records.append(record)
        if self.on_evaluate is not None:
            self.on_evaluate(record)
        return acc

    def score(self, cfg: ArchConfig) -> tuple[float, float]:
        """(accuracy, -latency) of an evaluated or evaluable config: the order every search maximises."""
        return self.accuracy(cfg), -self.latency(cfg)


__all__ = ["LatencyFn", "AccuracyFn", "Budget", "BudgetExhausted", "EvalRecord", "Objective", "FEASIBILITY_EPS"]
