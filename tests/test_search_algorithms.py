"""Unit tests of the search algorithms (coordinate descent, cd-block, random, evolution) and the search log.

The constraint is a real function of the config: GFLOPs at 512x512 from ``supernet.size.model_size``.
The accuracy signal here is an ANALYTIC PROXY used ONLY in these algorithm unit tests (a smooth, deterministic
function of parameter count and a few coordinates, standing in for the costly supernet mIoU); the real signal
is exercised by the CLI and demo tests.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from etf.common import EtfError
from supernet.presets import PRESETS
from supernet.size import model_size
from supernet.space import TABLE1, ArchConfig
from search.algorithms import ALGORITHMS, run_search
from search.coordinate_descent import (is_cnn_coordinate, is_per_block, is_vit_coordinate, minimum_latency,
                                       ordered)
from search.log import SearchLog, read_log, run_id
from search.objective import Budget, Objective


def gflops(cfgs) -> np.ndarray:
    """The constraint: analytic GFLOPs at 512x512 (real, from the project's one FLOPs function)."""
    return np.array([model_size(c, 512, 150).flops / 1e9 for c in cfgs])


class ProxyAccuracy:
    """ANALYTIC PROXY accuracy (unit tests only): grows with parameters, prefers some ViT choices; counts calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, cfg: ArchConfig) -> float:
        self.calls.append(cfg.key())
        params = model_size(cfg, 64, 150).params
        vit = sum(v.heads * v.depth * (1.0 - abs(v.mlp_ratio - 2.0)) for v in cfg.vits)
        return 30.0 + 6.0 * math.tanh(params / 3e6) + 0.05 * vit + 0.01 * (cfg.stem_width == 24)


TARGET = 1.0  # GFLOPs: between TopFormer-Tiny (0.58) and -Small (1.16)


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_every_evaluated_config_is_feasible_and_budget_is_respected(algo):
    acc = ProxyAccuracy()
    res = run_search(algo, acc, gflops, TARGET, budget=Budget(max_evals=25), seed=1, unit="GFLOPs")
    assert 1 <= res.evaluations <= 25
    assert res.evaluations == len(res.records) == len({r.key for r in res.records})
    assert len(acc.calls) == len(set(acc.calls)) == res.fresh_evaluations == res.evaluations
    recomputed = gflops([r.cfg for r in res.records])
    assert np.all(recomputed <= TARGET + 1e-9)
    assert res.best_latency <= TARGET
    assert res.best_accuracy == max(r.accuracy for r in res.records)
    assert res.best.key() == next(r.key for r in reversed(res.records) if r.is_best)
    for r in res.records:
        TABLE1.validate(r.cfg)


@pytest.mark.parametrize("algo, order", [("cd", "space"), ("cd-block", "space"), ("cd", "coarse-first"),
                                         ("cd", "shuffled")])
def test_incumbent_never_gets_worse(algo, order):
    res = run_search(algo, ProxyAccuracy(), gflops, TARGET, budget=Budget(max_evals=60), unit="GFLOPs", order=order)
    bests = [(r.accuracy, -r.latency) for r in res.records if r.is_best]
    assert bests == sorted(bests) and len(bests) >= 2  # strictly improving moves, and it did move
    start = res.records[0]
    assert start.key == PRESETS["topformer-tiny"].key()  # the largest preset under 1 GFLOP
    assert res.best_accuracy > start.accuracy
    # a budget that stops mid-sweep still returns the best incumbent, never a worse one
    for n in (1, 2, 7, 13):
        short = run_search(algo, ProxyAccuracy(), gflops, TARGET, budget=Budget(max_evals=n), unit="GFLOPs",
                           order=order)
        assert short.evaluations == n and short.stop_reason == "budget"
        assert short.best_accuracy >= start.accuracy
        assert short.best_accuracy == max(r.accuracy for r in short.records)


def test_cd_converges_and_stops_when_a_sweep_improves_nothing():
    acc = ProxyAccuracy()
    res = run_search("cd", acc, gflops, 0.7, budget=Budget(max_evals=None), unit="GFLOPs")
    assert res.stop_reason == "converged"
    # convergence: no single-coordinate feasible change of the winner is better
    obj = Objective(ProxyAccuracy(), gflops, 0.7, budget=Budget(None))
    best_score = obj.score(res.best)
    for coord in TABLE1.coordinates(res.best):
        for v in TABLE1.choices(coord):
            cand = TABLE1.with_value(res.best, coord, v)
            if obj.is_feasible(obj.latency(cand)):
                assert obj.score(cand) <= best_score


def test_cache_evaluates_each_config_once():
    acc = ProxyAccuracy()
    obj = Objective(acc, gflops, TARGET, budget=Budget(max_evals=3))
    tiny = PRESETS["topformer-tiny"]
    a1 = obj.accuracy(tiny)
    a2 = obj.accuracy(tiny)
    assert a1 == a2 and len(acc.calls) == 1 and obj.evaluations == 1
    # a value from a previous run's log is not recomputed but still counts against this run's budget
    warm = Objective(acc, gflops, TARGET, budget=Budget(max_evals=1), cache={tiny.key(): 12.5})
    assert warm.accuracy(tiny) == 12.5 and len(acc.calls) == 1 and warm.evaluations == 1
    assert warm.records[0].cached and warm.exhausted() == "budget"


def test_cd_block_alternates_cnn_and_vit_parts():
    res = run_search("cd-block", ProxyAccuracy(), gflops, TARGET, budget=Budget(max_evals=None), unit="GFLOPs")
    names = [p.block for p in res.phases]
    assert names[:4] == ["cnn", "vit", "cnn", "vit"]
    assert any(p.improved for p in res.phases if p.block == "cnn")
    assert any(p.improved for p in res.phases if p.block == "vit")
    by_iter = {r.iteration: r for r in res.records}
    for p in res.phases:
        recs = [by_iter[i] for i in range(p.start_evaluations + 1, p.end_evaluations + 1)]
        if not recs:
            continue
        if p.block == "cnn":  # only CNN coordinates change inside a CNN phase
            assert len({r.cfg.vits for r in recs}) == 1
        else:
            assert len({(r.cfg.stem_width, r.cfg.stages, r.cfg.decoder_width, r.cfg.fuse) for r in recs}) == 1
    assert is_vit_coordinate("vits.2.heads") and is_cnn_coordinate("stages.0.width")
    assert is_cnn_coordinate("decoder_width") and not is_cnn_coordinate("vits.0.depth")


def test_infeasible_target_names_the_smallest_reachable_value():
    floor_cfg, floor = minimum_latency(gflops, TABLE1)
    assert floor <= gflops([TABLE1.min_config()])[0]
    for algo in ("cd", "cd-block"):
        with pytest.raises(EtfError) as err:
            run_search(algo, ProxyAccuracy(), gflops, floor * 0.9, unit="GFLOPs")
        msg = str(err.value)
        assert "infeasible" in msg and f"{floor:.3f}" in msg and "\n" not in msg
    # exactly at the floor it is feasible and starts from the fastest config found
    res = run_search("cd", ProxyAccuracy(), gflops, floor, budget=Budget(5), unit="GFLOPs")
    assert res.best_latency <= floor + 1e-9


def test_given_start_must_be_feasible():
    with pytest.raises(EtfError, match="above the target"):
        run_search("cd", ProxyAccuracy(), gflops, TARGET, start=PRESETS["topformer-small"], unit="GFLOPs")


@pytest.mark.parametrize("algo", ["random", "evo"])
def test_baselines_are_deterministic_per_seed(algo):
    a = run_search(algo, ProxyAccuracy(), gflops, TARGET, budget=Budget(20), seed=3, unit="GFLOPs")
    b = run_search(algo, ProxyAccuracy(), gflops, TARGET, budget=Budget(20), seed=3, unit="GFLOPs")
    c = run_search(algo, ProxyAccuracy(), gflops, TARGET, budget=Budget(20), seed=4, unit="GFLOPs")
    assert [r.key for r in a.records] == [r.key for r in b.records]
    assert [r.key for r in a.records] != [r.key for r in c.records]


class Killed(Exception):
    """Stands in for the process dying after some evaluations (the log is durable row by row)."""


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_killed_search_resumes_from_its_log_to_the_same_result(tmp_path, algo):
    budget = Budget(max_evals=30)
    full = run_search(algo, ProxyAccuracy(), gflops, TARGET, budget=budget, seed=2, unit="GFLOPs")

    log_path = tmp_path / "search_log.csv"
    run = run_id(algo, TARGET, "GFLOPs", 2, 30)
    dying = ProxyAccuracy()

    def accuracy_then_die(cfg):
        if len(dying.calls) == 11:
            raise Killed
        return dying(cfg)

    log = SearchLog(log_path)
    with pytest.raises(Killed):
        run_search(algo, accuracy_then_die, gflops, TARGET, budget=budget, seed=2, unit="GFLOPs",
                   on_evaluate=log.writer(run))
    assert len(read_log(log_path)) == 11
    with open(log_path, "a") as f:  # a kill in the middle of writing a row
        f.write('cd:1GFLOPs,12,cd,deadbeef,"{""stem')

    resumed_acc = ProxyAccuracy()
    log2 = SearchLog(log_path)
    assert len(log2.rows) == 11
    res = run_search(algo, resumed_acc, gflops, TARGET, budget=budget, seed=2, unit="GFLOPs", cache=log2.cache(),
                     on_evaluate=log2.writer(run))
    assert res.best.key() == full.best.key() and res.best_accuracy == full.best_accuracy
    assert [r.key for r in res.records] == [r.key for r in full.records]
    assert len(resumed_acc.calls) == full.evaluations - 11  # logged evaluations were not recomputed
    rows = read_log(log_path)
    assert [r.iteration for r in rows] == list(range(1, full.evaluations + 1))
    assert [r.key for r in rows] == [r.key for r in full.records]
    # rerunning a finished search computes nothing and writes nothing
    again = ProxyAccuracy()
    SearchLog(log_path)
    res2 = run_search(algo, again, gflops, TARGET, budget=budget, seed=2, unit="GFLOPs",
                      cache=SearchLog(log_path).cache(), on_evaluate=SearchLog(log_path).writer(run))
    assert again.calls == [] and res2.best.key() == full.best.key() and len(read_log(log_path)) == len(rows)


def test_log_with_a_foreign_header_is_refused(tmp_path):
    p = tmp_path / "search_log.csv"
    p.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(EtfError, match="not a search log"):
        SearchLog(p)


def test_unknown_algorithm_and_bad_budget():
    with pytest.raises(EtfError, match="unknown search algorithm"):
        run_search("anneal", ProxyAccuracy(), gflops, TARGET)
    with pytest.raises(EtfError, match="at least 1"):
        run_search("cd", ProxyAccuracy(), gflops, TARGET, budget=Budget(0))


def test_coarse_first_order_sweeps_stage_level_coordinates_before_per_block_ones():
    coords = TABLE1.coordinates(PRESETS["topformer-small"])
    out = ordered(coords, "coarse-first")
    assert sorted(out) == sorted(coords)
    first_fine = next(i for i, c in enumerate(out) if is_per_block(c))
    assert not any(is_per_block(c) for c in out[:first_fine]) and all(is_per_block(c) for c in out[first_fine:])
    assert ordered(coords, "space") == coords
    with pytest.raises(EtfError, match="unknown sweep order"):
        run_search("cd", ProxyAccuracy(), gflops, TARGET, order="random")
    # with coarse-first the first sweep touches no per-block coordinate before every stage-level one was tried
    res = run_search("cd", ProxyAccuracy(), gflops, TARGET, budget=Budget(max_evals=None), unit="GFLOPs",
                     order="coarse-first")
    assert res.stop_reason == "converged"
    first_block_change = next(i for i, r in enumerate(res.records[1:], 1)
                              if any(a.depth == b.depth and (a.kernels != b.kernels or a.expansions != b.expansions)
                                     and a.width == b.width for a, b in zip(r.cfg.stages, res.records[0].cfg.stages)))
    assert any(r.cfg.vits != res.records[0].cfg.vits for r in res.records[1:first_block_change])


def test_shuffled_order_is_a_seeded_permutation_that_changes_the_search():
    coords = TABLE1.coordinates(PRESETS["topformer-small"])
    a, b = ordered(coords, "shuffled", 0), ordered(coords, "shuffled", 1)
    assert sorted(a) == sorted(coords) and a == ordered(coords, "shuffled", 0) and a != b
    first_fine = next(i for i, c in enumerate(a) if is_per_block(c))  # depths before the blocks they create
    assert all(is_per_block(c) for c in a[first_fine:]) and not any(is_per_block(c) for c in a[:first_fine])
    runs = [run_search("cd", ProxyAccuracy(), gflops, TARGET, budget=Budget(max_evals=40), unit="GFLOPs",
                       order="shuffled", seed=seed) for seed in (0, 1, 0)]
    paths = [[r.key for r in res.records] for res in runs]
    assert paths[0] == paths[2] and paths[0] != paths[1]  # the seed, and only the seed, changes the path


@pytest.mark.parametrize("algo", ["cd", "cd-block"])
def test_anchors_start_from_the_most_accurate_feasible_landmark(algo):
    from search.coordinate_descent import feasible_anchors

    obj = Objective(ProxyAccuracy(), gflops, TARGET, budget=Budget(None))
    landmarks = feasible_anchors(obj, TABLE1)
    assert [c.key() for c in landmarks] == [PRESETS["topformer-tiny"].key(), TABLE1.min_config().key()]
    res = run_search(algo, ProxyAccuracy(), gflops, TARGET, budget=Budget(12), unit="GFLOPs", anchors=True)
    assert [r.key for r in res.records[:2]] == [c.key() for c in landmarks]  # both evaluated first
    best_landmark = max(res.records[:2], key=lambda r: (r.accuracy, -r.latency))
    assert res.best_accuracy >= best_landmark.accuracy
    # the descent's first move is a one-coordinate neighbour of the best landmark
    third = res.records[2].cfg
    assert TABLE1.distance(third, best_landmark.cfg) == 1
    # a given start is kept as is (no anchors evaluated)
    given = run_search(algo, ProxyAccuracy(), gflops, TARGET, budget=Budget(3), unit="GFLOPs", anchors=True,
                       start=TABLE1.min_config())
    assert given.records[0].key == TABLE1.min_config().key()
    assert PRESETS["topformer-tiny"].key() not in [r.key for r in given.records[:1]]


def test_grow_into_band_lands_between_floor_and_target_without_evaluating_accuracy():
    from search.coordinate_descent import grow_into_band

    acc = ProxyAccuracy()
    obj = Objective(acc, gflops, TARGET, budget=Budget(None), floor=0.95 * TARGET)
    small = TABLE1.min_config()
    assert gflops([small])[0] < 0.95 * TARGET
    grown = grow_into_band(obj, TABLE1, small, unit="GFLOPs")
    assert 0.95 * TARGET <= gflops([grown])[0] <= TARGET and acc.calls == []
    assert obj.is_feasible(gflops([grown])[0]) and not obj.is_feasible(gflops([small])[0])
    assert obj.under_target(gflops([small])[0])
    # a band no move can enter (narrower than any step from the start) is one clear error
    tight = Objective(acc, gflops, TARGET, budget=Budget(None), floor=TARGET - 1e-7)
    with pytest.raises(EtfError, match=r"no config predicted within \[.*\] GFLOPs is reachable"):
        grow_into_band(tight, TABLE1, small, unit="GFLOPs")


@pytest.mark.parametrize("algo", ["cd", "cd-block", "random"])
def test_a_floor_keeps_every_evaluated_config_in_the_band(algo):
    """A search told to use its budget (the refinement's fill): every config it scores lies in [floor, target]."""
    floor = 0.9 * TARGET
    start = TABLE1.min_config() if algo.startswith("cd") else None  # far below the band: grown into it
    res = run_search(algo, ProxyAccuracy(), gflops, TARGET, budget=Budget(max_evals=12), seed=2, unit="GFLOPs",
                     start=start, floor=floor)
    values = gflops([r.cfg for r in res.records])
    assert res.evaluations >= 1 and np.all(values >= floor - 1e-9) and np.all(values <= TARGET + 1e-9)
    assert floor <= res.best_latency <= TARGET
