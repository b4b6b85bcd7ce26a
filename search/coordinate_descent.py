"""Latency-constrained coordinate descent over the search space (the Efficient-TopFormer search).

Start from a feasible config; sweep the coordinates one at a time (``TABLE1.coordinates``): for the current
coordinate predict the latency of every other allowed value with the rest held (one batched call), evaluate the
feasible ones' accuracy (cached), and move to the best by (accuracy, lower latency) if it beats the incumbent.
Repeat sweeps until a full sweep improves nothing or the budget runs out. The incumbent only ever moves to a
strictly better config, so the objective never goes down. ``block_coordinate_descent`` alternates the whole
CNN part and the whole ViT part, each run to convergence, as the study did. Pure: no I/O.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from etf.common import EtfError
from supernet.space import TABLE1, ArchConfig, SearchSpace

from search.objective import AccuracyFn, BudgetExhausted, LatencyFn, Objective

CoordFilter = Callable[[str], bool]


def is_vit_coordinate(coord: str) -> bool:
    """ViT part: every ``vits.*`` coordinate."""
    return coord.startswith("vits.")


def is_cnn_coordinate(coord: str) -> bool:
    """CNN part: stem, MBConv stages and the convolutional decoder (width, fuse): everything but the ViT."""
    return not is_vit_coordinate(coord)


#: Sweep orders: the space's own (stem, each stage's width, depth, per-block kernels/expansions, ViT stages,
#: decoder), coarse-first (every stage-level coordinate first, per-block kernels and expansions last) or
#: shuffled (a seeded permutation of the stage-level coordinates, then of the per-block ones: the same search
#: from another order, so that repeated runs of a deterministic algorithm show a spread that means something).
ORDERS = ("space", "coarse-first", "shuffled")


def is_per_block(coord: str) -> bool:
    """A per-block coordinate (``stages.i.kernels.b`` / ``stages.i.expansions.b``)."""
    return coord.count(".") == 3


def ordered(coords: list[str], order: str, seed: int = 0) -> list[str]:
    """``coords`` in sweep order (``seed`` picks the permutation of 'shuffled'). Depth coordinates always precede
    the per-block ones they create, so a move never shifts the coordinates before the current position."""
    if order == "space":
        return coords
    if order == "coarse-first":
        return [c for c in coords if not is_per_block(c)] + [c for c in coords if is_per_block(c)]
    if order == "shuffled":
        rng = random.Random(seed)
        coarse, fine = [c for c in coords if not is_per_block(c)], [c for c in coords if is_per_block(c)]
        rng.shuffle(coarse)
        rng.shuffle(fine)
        return coarse + fine
    raise EtfError(f"unknown sweep order {order!r}; use one of {', '.join(ORDERS)}")


#: The two blocks cd-block alternates, in order.
CNN_VIT_BLOCKS: tuple[tuple[str, CoordFilter], ...] = (("cnn", is_cnn_coordinate), ("vit", is_vit_coordinate))


@dataclass
class Phase:
    """One block run of cd-block (or the single block of plain cd): where it started and what it reached."""

    block: str
    start_evaluations: int
    end_evaluations: int = 0
    sweeps: int = 0
    improved: bool = False


# ----------------------------------------------------------------------------------------------------------
# Latency-only helpers (cheap: predictor calls only)
# ----------------------------------------------------------------------------------------------------------


def minimum_latency(latency_fn: LatencyFn, space: SearchSpace = TABLE1,
                    starts: Sequence[ArchConfig] = (), max_sweeps: int = 10) -> tuple[ArchConfig, float]:
    """The smallest predicted latency the space reaches: coordinate descent on the latency alone, from the
    min config (and any extra ``starts``). Uses only batched predictor calls."""
    best_cfg, best_lat = None, float("inf")
    for start in [space.min_config(), *starts]:
        cfg = start
        lat = float(np.asarray(latency_fn([cfg]), dtype=float)[0])
        for _ in range(max_sweeps):
            moved = False
            i = 0
            while i < len(coords := space.coordinates(cfg)):
                coord = coords[i]
                i += 1
                cur = space.value(cfg, coord)
                cands = [space.with_value(cfg, coord, v) for v in space.choices(coord) if v != cur]
                if not cands:
                    continue
                lats = np.asarray(latency_fn(cands), dtype=float)
                j = int(np.argmin(lats))
                if lats[j] < lat - 1e-12:
                    cfg, lat, moved = cands[j], float(lats[j]), True
            if not moved:
                break
        if lat < best_lat:
            best_cfg, best_lat = cfg, lat
    assert best_cfg is not None
    return best_cfg, best_lat


def infeasible_message(latency_fn: LatencyFn, target: float, unit: str, space: SearchSpace = TABLE1) -> str:
    """The one-line error for a target no config meets, naming the smallest value the space reaches."""
    _, low = minimum_latency(latency_fn, space)
    what = "predicted latency" if unit == "ms" else unit
    return (f"target {target:g} {unit} is infeasible: the smallest {what} the search space reaches is "
            f"{low:.3f} {unit}; ask for at least that")


def find_start(objective: Objective, space: SearchSpace = TABLE1, presets: Mapping[str, ArchConfig] | None = None,
               start: ArchConfig | None = None, unit: str = "ms") -> ArchConfig:
    """A feasible starting config: ``start`` if given (must meet the target), else the largest preset under the
    target (highest constraint value), else the min config, else the min-latency config. With a floor
    (``objective.floor``) a start below it is grown into the band (:func:`grow_into_band`).

    Raises :class:`EtfError` when even the fastest config found misses the target, or no config reachable from
    the start lies in the band."""
    cfg = _start_under_target(objective, space, presets, start, unit)
    if not objective.is_feasible(objective.latency(cfg)):
        cfg = grow_into_band(objective, space, cfg, unit)
    return cfg


def _start_under_target(objective: Objective, space: SearchSpace, presets: Mapping[str, ArchConfig] | None,
                        start: ArchConfig | None, unit: str) -> ArchConfig:
    if start is not None:
        space.validate(start)
        lat = objective.latency(start)
        if not objective.under_target(lat):
            raise EtfError(f"the given start config is predicted at {lat:.3f} {unit}, above the target "
                           f"{objective.target:g} {unit}")
        return start
    if presets is None:
        from supernet.presets import PRESETS

        presets = PRESETS
    cands = list(presets.values())
    if cands:
        lats = objective.latencies(cands)
        fits = [(lat, i) for i, lat in enumerate(lats) if objective.under_target(lat)]
        if fits:
            return cands[max(fits)[1]]
    low_cfg = space.min_config()
    if objective.under_target(objective.latency(low_cfg)):
        return low_cfg
    low_cfg, low = minimum_latency(objective.latency_fn, space)
    objective.latency(low_cfg)
    if objective.under_target(low):
        return low_cfg
    what = "predicted latency" if unit == "ms" else unit
    raise EtfError(f"target {objective.target:g} {unit} is infeasible: the smallest {what} the search space "
                   f"reaches is {low:.3f} {unit}; ask for at least that")


def grow_into_band(objective: Objective, space: SearchSpace, cfg: ArchConfig, unit: str = "ms",
                   max_steps: int = 200) -> ArchConfig:
    """From ``cfg`` (under the target, below ``objective.floor``): single-coordinate moves that raise the constraint
    without passing the target, until it lies in [floor, target]: the move that lands in the band with the
    smallest value when there is one, else the largest step that stays below the floor. Predictor calls only (no
    accuracy is evaluated): the search then runs inside the band from there. Raises :class:`EtfError` when no
    move leads into the band."""
    lat = objective.latency(cfg)
    for _ in range(max_steps):
        if objective.is_feasible(lat):
            return cfg
        cands = [space.with_value(cfg, coord, v) for coord in space.coordinates(cfg) for v in space.choices(coord)
                 if v != space.value(cfg, coord)]
        lats = objective.latencies(cands)
        inside = [(float(v), i) for i, v in enumerate(lats) if objective.is_feasible(v)]
        if inside:
            return cands[min(inside)[1]]
        up = [(float(v), i) for i, v in enumerate(lats) if lat < v and objective.under_target(v)]
        if not up:
            break
        lat, i = max(up)
        cfg = cands[i]
    raise EtfError(f"no config predicted within [{objective.floor:.3f}, {objective.target:g}] {unit} is reachable "
                   f"by growing the start (stuck at {lat:.3f} {unit})")


def feasible_anchors(objective: Objective, space: SearchSpace = TABLE1,
                     presets: Mapping[str, ArchConfig] | None = None) -> list[ArchConfig]:
    """The well-trained landmarks of the space that meet the target: the presets (largest first) and the min
    config (the sandwich rule trains the min subnet at every step)."""
    if presets is None:
        from supernet.presets import PRESETS

        presets = PRESETS
    cands = list(presets.values()) + [space.min_config()]
    lats = objective.latencies(cands)
    fits = sorted((-lat, i) for i, lat in enumerate(lats) if objective.is_feasible(lat))
    return [cands[i] for _, i in fits]


# ----------------------------------------------------------------------------------------------------------
# Coordinate descent
# ----------------------------------------------------------------------------------------------------------


def best_along(objective: Objective, space: SearchSpace, incumbent: ArchConfig, coord: str) -> ArchConfig:
    """The best feasible config that differs from ``incumbent`` only in ``coord`` (or ``incumbent`` itself
    when none is strictly better by (accuracy, lower latency))."""
    current = space.value(incumbent, coord)
    cands = [space.with_value(incumbent, coord, v) for v in space.choices(coord) if v != current]
    best, best_score = incumbent, objective.score(incumbent)
    for cfg in objective.feasible(cands):
        score = objective.score(cfg)
        if score > best_score:
            best, best_score = cfg, score
    return best


def sweep(objective: Objective, space: SearchSpace, incumbent: ArchConfig,
          include: CoordFilter = lambda c: True, order: str = "space", seed: int = 0) -> tuple[ArchConfig, bool]:
    """One pass over the coordinates accepted by ``include``; returns the new incumbent and whether it moved.

    The coordinate list is re-read after each move (a new depth adds or removes per-block coordinates after
    the current one, never before it, so the position stays valid)."""
    moved = False
    i = 0
    while True:
        coords = ordered([c for c in space.coordinates(incumbent) if include(c)], order, seed)
        if i >= len(coords):
            return incumbent, moved
        new = best_along(objective, space, incumbent, coords[i])
        i += 1
        if new is not incumbent:
            incumbent, moved = new, True


def _descend(objective: Objective, space: SearchSpace, incumbent: ArchConfig,
             blocks: Sequence[tuple[str, CoordFilter]], phases: list[Phase], max_sweeps: int,
             order: str, seed: int = 0) -> ArchConfig:
    """Run each block to convergence in turn; stop after a round in which no block improved."""
    while True:
        round_improved = False
        for name, include in blocks:
            phase = Phase(name, objective.evaluations)
            phases.append(phase)
            while phase.sweeps < max_sweeps:
                incumbent, moved = sweep(objective, space, incumbent, include, order, seed)
                phase.sweeps += 1
                phase.end_evaluations = objective.evaluations
                if not moved:
                    break
                phase.improved = round_improved = True
            phase.end_evaluations = objective.evaluations
        if not round_improved or len(blocks) == 1:  # one block: it already ran to convergence
            return incumbent


def coordinate_descent(objective: Objective, space: SearchSpace = TABLE1, start: ArchConfig | None = None,
                       presets: Mapping[str, ArchConfig] | None = None,
                       blocks: Sequence[tuple[str, CoordFilter]] = (("all", lambda c: True),),
                       max_sweeps: int = 50, unit: str = "ms", order: str = "space", anchors: bool = False,
                       seed: int = 0
                       ) -> tuple[ArchConfig, list[Phase], str]:
    """Coordinate descent from a feasible start; returns (incumbent, phases, stop reason).

    With ``anchors`` (and no given ``start``) the feasible presets and the min config are evaluated first and the
    descent starts from the most accurate of them instead of the largest preset.
    ``blocks`` restricts and orders the coordinates: one block is plain CD; :data:`CNN_VIT_BLOCKS` is cd-block.
    The stop reason is 'converged' or the budget's reason ('budget' / 'time')."""
    ordered([], order)  # validate the order before any work
    incumbent = find_start(objective, space, presets, start, unit)
    phases: list[Phase] = []
    try:
        objective.accuracy(incumbent)
        if anchors and start is None:
            for cfg in feasible_anchors(objective, space, presets):
                if objective.score(cfg) > objective.score(incumbent):
                    incumbent = cfg
        incumbent = _descend(objective, space, incumbent, blocks, phases, max_sweeps, order, seed)
    except BudgetExhausted as exc:
        if phases:
            phases[-1].end_evaluations = objective.evaluations
        return incumbent, phases, exc.reason
    return incumbent, phases, "converged"


def block_coordinate_descent(objective: Objective, space: SearchSpace = TABLE1, start: ArchConfig | None = None,
                             presets: Mapping[str, ArchConfig] | None = None, max_sweeps: int = 50,
                             unit: str = "ms", order: str = "space", anchors: bool = False, seed: int = 0
                             ) -> tuple[ArchConfig, list[Phase], str]:
    """cd-block: coordinate descent over the whole CNN part to convergence, then the whole ViT part, alternating
    until a round improves neither (the Efficient-TopFormer study's schedule)."""
    return coordinate_descent(objective, space, start, presets, CNN_VIT_BLOCKS, max_sweeps, unit, order,
                              anchors, seed)


__all__ = [
    "LatencyFn", "AccuracyFn", "Phase", "CNN_VIT_BLOCKS", "is_cnn_coordinate", "is_vit_coordinate",
    "ORDERS", "ordered", "feasible_anchors", "grow_into_band", "is_per_block", "minimum_latency", "infeasible_message", "find_start", "best_along", "sweep", "coordinate_descent",
    "block_coordinate_descent",
]
