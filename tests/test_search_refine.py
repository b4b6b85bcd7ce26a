"""The closed loop of etf-search --refine: the measured winner is recorded, the predictor refitted, the search rerun.

Real parts end to end at 64x64: an untrained seeded supernet as the accuracy signal, a latency table whose
operator latencies follow a known formula with paired end-to-end rows (ratios to TopFormer-Tiny from the formula),
deliberately biased: the recorded reference latency is 1 us (a table made on an imaginary fast machine), so every
prediction is hundreds of times too optimistic. The real export (litert-torch)
and the real local device (LiteRT) measure the winner beside the reference; the refit must catch the bias.
"""
from __future__ import annotations

import math

import pandas as pd
import pytest

from latency import table as tbl
from latency.measure import REFERENCE_PRESET
from latency.predictor import load_for_device
from latency.setting import Setting
from supernet.presets import PRESETS
from supernet.space import TABLE1

from search import pieces
from search.pipeline import SearchJob, fills_before_timing, refine_stop, run_job
from tests.test_latency_predictor import SIZE, _op_rows, true_net


def test_refine_stop_reasons():
    assert "within" in refine_stop(103.0, 100.0, 0, 2, False, True)
    assert "within" in refine_stop(96.0, 100.0, 5, 2, True, False)  # within wins over everything
    assert "no latency table" in refine_stop(130.0, 100.0, 0, 2, False, False)
    assert "same winner" in refine_stop(130.0, 100.0, 1, 2, True, True)
    assert "round limit" in refine_stop(80.0, 100.0, 2, 2, False, True)  # far under the target is not a stop
    assert refine_stop(80.0, 100.0, 1, 2, False, True) is None
    assert refine_stop(130.0, 100.0, 0, 0, False, True).startswith("round limit")  # --refine 0: record only
    # under the target and the predictor right about it (within 5%): a refit cannot help, stop
    assert "predictor is right" in refine_stop(80.0, 100.0, 0, 2, False, True, predicted_ms=82.0)
    # told to fill the budget (etf-search's default), a right predictor is no reason to stop: search the band
    assert refine_stop(80.0, 100.0, 0, 2, False, True, predicted_ms=82.0, fill=True) is None
    assert "round limit" in refine_stop(80.0, 100.0, 2, 2, False, True, predicted_ms=82.0, fill=True)
    assert refine_stop(80.0, 100.0, 0, 2, False, True, predicted_ms=90.0) is None  # predictor 12% off: refit
    assert refine_stop(130.0, 100.0, 0, 2, False, True, predicted_ms=131.0) is None  # over the target: search again


def test_a_first_winner_predicted_under_the_band_is_grown_into_it_before_timing(tmp_path):
    job = SearchJob(out=tmp_path, target=10.0)  # fill, export, ms and 2 refinements: etf-search's defaults
    assert fills_before_timing(job, 0.0, [], 9.0)  # 10 % under: timing it could only confirm the miss
    assert not fills_before_timing(job, 0.0, [], 9.6)  # within 5 %: time it
    assert not fills_before_timing(job, 0.0, [], None)  # no prediction (GFLOPs): nothing to judge
    assert not fills_before_timing(job, 9.75, [], 9.0)  # already a band search
    assert not fills_before_timing(job, 0.0, [{"round": 0}], 9.0)  # after a timing the refinement decides
    for kw in ({"fill": False}, {"export": False}, {"refine": 0}, {"unit": "GFLOPs"}):
        assert not fills_before_timing(SearchJob(out=tmp_path, target=10.0, **kw), 0.0, [], 9.0), kw


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_winner_is_recorded_and_the_refitted_predictor_searches_again(tmp_path):
    import torch

    from supernet.training.checkpoint import save_checkpoint
    from supernet.model import TopFormerSupernet
    from supernet.data.synthetic import make_synthetic

    make_synthetic(tmp_path / "data", train=8, val=6, size=64, classes=4, seed=0)
    torch.manual_seed(0)
    ckpt = save_checkpoint({"model": TopFormerSupernet(num_classes=4).state_dict(), "num_classes": 4,
                            "iteration": 0}, tmp_path / "supernet.pt")
    device = pieces.resolve("local")
    stale_ref = 1e-3  # the table believes TopFormer-Tiny takes 1 us: every prediction is hundreds of times too low
    job_setting = SearchJob(out=tmp_path, target=1.0, size=SIZE, device="local").setting()
    st = Setting("local", SIZE, job_setting.threads)
    ops = _op_rows().assign(device="local", threads=st.threads)
    rows = []
    for i, s in enumerate(range(1000, 1008)):
        cfg = TABLE1.sample(s)
        ratio = true_net(cfg) / true_net(PRESETS[REFERENCE_PRESET])
        rows.append({"arch_key": cfg.key(), "arch_json": cfg.to_json(indent=None), "seed": s, "purpose": "correction",
                     "device": "local", "size": SIZE, "flops": 1.0, "median_ms": ratio * stale_ref, "std_ms": 0.0,
                     "runs": 5, "ref_ms": 0.5, "timestamp": f"2000-01-01T00:00:{i:02d}+00:00", "threads": st.threads,
                     "precision": "fp32", "head": "logits8",
                     "ref_net_ms": stale_ref, "ratio": ratio})
    tables = tmp_path / "tables"
    tbl.write_csv_atomic(ops, tbl.ops_path(tables, st, write=True))
    tbl.write_csv_atomic(pd.DataFrame(rows, columns=tbl.E2E_COLUMNS), tbl.e2e_path(tables, st, write=True))
    biased = load_for_device(st, tables)
    assert biased.mode == "ratio"
    target = 1.0  # ms at 64x64: everything looks feasible to the biased predictor
    job = SearchJob(out=tmp_path / "search", target=target, algo="cd-block", budget=8, supernet=ckpt,
                    data=tmp_path / "data", eval_size=64, n_calib=1, n_val=4, batch=4, size=SIZE, runs=6, warmup=1,
                    refine=1, device="local", tables=tables, evaluate_presets=False, fill=False)
    lines: list[str] = []
    summary = run_job(job, device=device, say=lines.append, progress=False)

    first = summary["refinements"][0]
    assert first["recorded"] and first["refitted_mode"] == "ratio", first
    # the refit took the reference timed beside the winner as the device's speed now: the stale table's
    # prediction (~1 us scale) is replaced by one on the measured scale
    assert first["refitted_predicted_ms"] > 10 * first["predicted_ms"], first
    e2e = tbl.read_e2e(tables, st)
    winners = e2e[e2e["purpose"] == "winner"]
    assert first["best_key"] in set(winners["arch_key"]) and math.isfinite(float(winners["ratio"].iloc[0]))
    assert summary["refine_stop"] and any(line.startswith("refinement stopped: ") for line in lines)
    searched = set(pd.read_csv(tmp_path / "search" / "search_log.csv")["run"])
    if not summary["refinements"][-1].get("infeasible"):
        assert len(searched) == len(summary["refinements"])  # one logged run per search, refits named +refitN
    if len(summary["refinements"]) > 1:  # searched again under the same target with the refitted predictor
        assert any("searching again under" in line for line in lines)
        assert summary["search_target"] == target
    else:
        assert "within" in summary["refine_stop"] or "same winner" in summary["refine_stop"], summary["refine_stop"]


def test_a_round_that_starts_from_a_config_is_not_labelled_with_anchors(tmp_path):
    from search.pipeline import _variant

    job = SearchJob(out=tmp_path, target=1.0)
    assert _variant(job, None) == "cd+anchors"
    assert _variant(job, PRESETS["topformer-tiny"]) == "cd"  # anchors are evaluated only without a start
    assert _variant(SearchJob(out=tmp_path, target=1.0, algo="cd-block", order="coarse-first", anchors=False),
                    None) == "cd-block@coarse-first"
    assert _variant(SearchJob(out=tmp_path, target=1.0, algo="random"), None) == "random"
