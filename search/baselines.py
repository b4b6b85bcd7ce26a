"""Baselines for the search, on the same :class:`~search.objective.Objective` (same budget, same signal).

- random search: uniform samples of the space, rejected by the (batched) latency constraint, evaluated in order;
- evolutionary search after Once-for-All's evolution finder: a feasible random population, the top-k as
  parents, children by mutation and uniform crossover, each child rejected until it meets the constraint.
Our own code, pure (no I/O). Both return (best config, stop reason).
"""
from __future__ import annotations

import random
from typing import Callable

from etf.common import EtfError
from supernet.space import TABLE1, ArchConfig, SearchSpace

from search.objective import BudgetExhausted, Objective, out_of_budget

#: Samples drawn per batched predictor call.
SAMPLE_BATCH = 256


def _feasible_sampler(objective: Objective, space: SearchSpace, rng: random.Random,
                      max_draws: int) -> Callable[[], ArchConfig | None]:
    """A generator-like function that returns the next feasible uniform sample (None after ``max_draws``)."""
    pool: list[ArchConfig] = []
    drawn = 0

    def next_feasible() -> ArchConfig | None:
        nonlocal drawn
        while not pool:
            if drawn >= max_draws:
                return None
            batch = [space.sample(rng) for _ in range(SAMPLE_BATCH)]
            drawn += len(batch)
            pool.extend(reversed(objective.feasible(batch)))
        return pool.pop()

    return next_feasible


def _none_feasible(objective: Objective, draws: int, unit: str) -> EtfError:
    if objective.exhausted():  # the budget ran out before the first evaluation: not the target's fault
        return out_of_budget(objective)
    return EtfError(f"no feasible config in {draws} uniform samples under {objective.target:g} {unit}; the "
                    f"target is too tight for random sampling (use --algo cd, which starts from the fastest configs)")


def random_search(objective: Objective, space: SearchSpace = TABLE1, seed: int = 0,
                  max_draws: int = 500_000, unit: str = "ms") -> tuple[ArchConfig, str]:
    """Rejection sampling under the constraint: evaluate feasible uniform samples until the budget runs out."""
    rng = random.Random(seed)
    sample = _feasible_sampler(objective, space, rng, max_draws)
    reason = "samples"
    try:
        while (cfg := sample()) is not None:
            objective.accuracy(cfg)
    except BudgetExhausted as exc:
        reason = exc.reason
    if objective.best is None:
        raise _none_feasible(objective, max_draws, unit)
    return objective.best, reason


def default_population(budget_evals: int | None) -> int:
    """Population size for a budget: about a quarter of it, between 4 and 50 (OFA uses 100 at 500+ evals)."""
    if budget_evals is None:
        return 50
    return max(4, min(50, budget_evals // 4))


def evolutionary_search(objective: Objective, space: SearchSpace = TABLE1, seed: int = 0,
                        population: int | None = None, parent_ratio: float = 0.25, mutation_ratio: float = 0.5,
                        mutate_prob: float = 0.1, max_tries: int = 200, max_stalled: int = 20,
                        max_draws: int = 500_000, unit: str = "ms") -> tuple[ArchConfig, str]:
    """OFA-style evolution: keep the top ``parent_ratio`` of the population, refill it with mutants
    (``mutation_ratio``) and crossovers of parents, every child re-drawn until feasible (up to ``max_tries``)."""
    rng = random.Random(seed)
    size = population or default_population(objective.budget.max_evals)
    n_parents = max(2, int(round(size * parent_ratio)))
    n_mutants = int(round(size * mutation_ratio))
    sample = _feasible_sampler(objective, space, rng, max_draws)

    def feasible_child(make: Callable[[], ArchConfig]) -> ArchConfig | None:
        for _ in range(max_tries):
            child = make()
            if objective.is_feasible(objective.latency(child)):
                return child
        return None

    reason = "stalled"
    pop: list[ArchConfig] = []
    try:
        while len(pop) < size:
            cfg = sample()
            if cfg is None:
                break
            if objective.seen(cfg):
                continue
            objective.accuracy(cfg)
            pop.append(cfg)
        if not pop:
            raise _none_feasible(objective, max_draws, unit)
        stalled = 0
        while stalled < max_stalled:
            before = objective.evaluations
            unique = list({c.key(): c for c in pop}.values())
            parents = sorted(unique, key=objective.score, reverse=True)[:n_parents]
            if len(parents) < 2:
                parents = parents * 2
            children: list[ArchConfig] = []
            for _ in range(n_mutants):
                child = feasible_child(lambda: space.mutate(rng.choice(parents), mutate_prob, rng))
                if child is not None:
                    objective.accuracy(child)
                    children.append(child)
            while len(parents) + len(children) < size:
                child = feasible_child(lambda: space.crossover(*rng.sample(parents, 2), rng))
                if child is None:
                    break
                objective.accuracy(child)
                children.append(child)
            pop = parents + children
            stalled = stalled + 1 if objective.evaluations == before else 0
    except BudgetExhausted as exc:
        reason = exc.reason
    assert objective.best is not None
    return objective.best, reason


__all__ = ["random_search", "evolutionary_search", "default_population", "SAMPLE_BATCH"]
