"""The paired measurement protocol and the reference-relative predictor under a drifting device.

Synthetic data with a known truth (tests/test_latency_predictor's operator formula): the device's speed is
multiplied by a factor in 0.6-1.4 between measurements; a network and the reference measured right beside it
share the factor (up to 2% noise). The ratio-based correction must recover the true relation, the raw fit must not.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from etf.common import EtfError
from latency import table as tbl
from latency.measure import REFERENCE_PRESET, measure_paired, round_order, round_sequence, summarize_rounds
from latency.predictor import LatencyPredictor, accuracy, load_for_device
from supernet.presets import PRESETS
from supernet.size import model_size
from supernet.space import TABLE1, ArchConfig
from tests.test_latency_predictor import SIZE, ST, _op_rows, true_net


# -- the protocol's math ------------------------------------------------------------------------------------
def test_rounds_rotate_the_networks_and_put_a_reference_on_each_side():
    assert [round_order(3, r) for r in range(4)] == [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2]]
    assert round_sequence(3, 1) == [0, 2, 0, 3, 0, 1, 0]
    assert round_sequence(0, 0) == [0]


def test_ratios_are_taken_against_the_adjacent_references_and_medianed_over_rounds():
    # round 0: ref 10, A 20, ref 30, B 60, ref 30 -> A/20 = 1.0, B/30 = 2.0
    # round 1 (B first): ref 5, B 10, ref 5, A 5, ref 5 -> B 2.0, A 1.0
    # round 2: ref 10, A 30, ref 10, B 20, ref 10 -> A 3.0, B 2.0
    rounds = [[10, 20, 30, 60, 30], [5, 10, 5, 5, 5], [10, 30, 10, 20, 10]]
    a, b = summarize_rounds(2, rounds, runs=7)
    assert a.ratio == pytest.approx(1.0) and b.ratio == pytest.approx(2.0)
    assert a.raw_ms == pytest.approx(20.0) and b.raw_ms == pytest.approx(20.0)
    assert a.ref_ms == pytest.approx(10.0)  # median of the 11 reference timings (5 x3, 10 x6, 30 x2)
    assert a.rounds == 3 and a.runs == 7
    with pytest.raises(ValueError):
        summarize_rounds(2, [[1, 2, 3]])



def test_ratio_se_is_the_median_s_standard_error_relative_to_it():
    from latency.measure import ratio_se

    assert ratio_se([2.0, 2.0]) == math.inf  # fewer than 3 rounds say nothing about the spread
    assert ratio_se([2.0, 2.0, 2.0]) == 0.0
    # sd of [1.9, 2.0, 2.1] is 0.1; 1.2533 x 0.1 / sqrt(3) / 2.0
    assert ratio_se([1.9, 2.0, 2.1]) == pytest.approx(1.2533 * 0.1 / math.sqrt(3) / 2.0)


class _NoisyDevice:
    """Reference 10 ms; network ``noisy`` alternates 18 / 22 ms (a 10% round-to-round swing), ``steady`` 30 ms."""

    kind = "local"

    def __init__(self):
        self.visits = 0

    def benchmark_many(self, paths, runs, warmup, threads=None, cooldown_s=None):
        out = []
        for p in paths:
            if str(p) == "noisy":
                self.visits += 1
            ms = {"ref": 10.0, "steady": 30.0, "noisy": 18.0 if self.visits % 2 else 22.0}[str(p)]
            out.append(type("S", (), {"median_ms": ms, "min_ms": ms})())
        return out


def test_more_rounds_follow_while_a_ratio_is_uncertain_and_stop_at_the_limit():
    (steady,) = measure_paired(_NoisyDevice(), ["steady"], "ref", rounds=3, runs=2, warmup=0, max_rounds=9)
    assert steady.rounds == 3 and steady.se == 0.0 and steady.ratio == pytest.approx(3.0)  # certain: the minimum
    a, b = measure_paired(_NoisyDevice(), ["steady", "noisy"], "ref", rounds=3, runs=2, warmup=0, max_rounds=9)
    assert a.rounds == b.rounds == 9 and b.se > 0.015  # one uncertain network keeps the batch going, up to 9
    (fixed,) = measure_paired(_NoisyDevice(), ["noisy"], "ref", rounds=3, runs=2, warmup=0)
    assert fixed.rounds == 3  # no max_rounds: a fixed count, as before
    (loose,) = measure_paired(_NoisyDevice(), ["noisy"], "ref", rounds=3, runs=2, warmup=0, max_rounds=9,
                              target_se=0.1)
    assert loose.rounds == 3 and loose.se <= 0.1
    with pytest.raises(EtfError):
        measure_paired(_NoisyDevice(), ["noisy"], "ref", rounds=3, max_rounds=2)


class _DriftingDevice:
    """A device whose speed changes on every timed model (factor 0.6-1.4, a slow walk): returns medians."""

    kind = "local"

    def __init__(self, true_ms: dict[str, float], seed: int = 0):
        self.true_ms, self.rng, self.speed, self.calls = true_ms, np.random.default_rng(seed), 1.0, []

    def benchmark_many(self, paths, runs, warmup, threads=None, cooldown_s=None):
        out = []
        for p in paths:
            self.speed = float(np.clip(self.speed * self.rng.uniform(0.97, 1.03), 0.6, 1.4))
            self.calls.append(str(p))
            out.append(type("S", (), {"median_ms": self.true_ms[str(p)] * self.speed})())
        return out


def test_measure_paired_cancels_a_slow_drift_and_visits_in_rotated_order():
    dev = _DriftingDevice({"ref": 10.0, "a": 20.0, "b": 35.0})
    a, b = measure_paired(dev, ["a", "b"], "ref", rounds=4, runs=3, warmup=1)
    assert dev.calls[:5] == ["ref", "a", "ref", "b", "ref"] and dev.calls[5:10] == ["ref", "b", "ref", "a", "ref"]
    assert a.ratio == pytest.approx(2.0, rel=0.03) and b.ratio == pytest.approx(3.5, rel=0.03)
    with pytest.raises(EtfError):
        measure_paired(dev, ["a"], "ref", rounds=0)


# -- the predictor on ratios under synthetic drift -------------------------------------------------------------
def _drifting_e2e(seeds, rng, purpose="correction", paired=True) -> pd.DataFrame:
    """End-to-end rows measured on a device whose speed factor is drawn in 0.6-1.4 for each measurement."""
    ref_true = true_net(PRESETS[REFERENCE_PRESET])
    rows = []
    for i, s in enumerate(seeds):
        cfg = TABLE1.sample(s)
        speed = rng.uniform(0.6, 1.4)
        ref_net = ref_true * speed * rng.uniform(0.99, 1.01)  # measured right beside it: same speed, some noise
        ms = true_net(cfg) * speed * rng.uniform(0.99, 1.01)
        rows.append({"arch_key": cfg.key(), "arch_json": cfg.to_json(indent=None), "seed": s, "purpose": purpose,
                     "device": "dev", "size": SIZE, "flops": model_size(cfg, SIZE).flops, "median_ms": ms, "std_ms": 0.0, "runs": 5,
                     "ref_ms": 0.5, "timestamp": f"2026-01-01T00:00:{i:02d}+00:00", "threads": 1, "precision": "fp32",
                     "head": "logits8",
                     "ref_net_ms": ref_net if paired else math.nan, "ratio": ms / ref_net if paired else math.nan})
    return pd.DataFrame(rows, columns=tbl.E2E_COLUMNS)


def _weights_e2e(seeds, per_weight_ms: float) -> pd.DataFrame:
    """Paired end-to-end rows of a device where a whole network also pays ``per_weight_ms`` per weight, a cost
    its operators timed alone do not show (their weights stay in the cache between runs)."""
    def true(cfg):
        return true_net(cfg) + per_weight_ms * model_size(cfg, SIZE).params

    ref = true(PRESETS[REFERENCE_PRESET])
    rows = _drifting_e2e(seeds, np.random.default_rng(0))
    for i, r in rows.iterrows():
        ms = true(ArchConfig.from_json(r["arch_json"]))
        rows.loc[i, ["median_ms", "ref_net_ms", "ratio"]] = [ms, ref, ms / ref]
    return rows


def test_the_ratio_correction_charges_a_network_for_its_weights_once_eight_are_measured(tmp_path):
    """Networks slower than their operators by a cost that grows with their weights: from 8 fitted networks on
    the correction is ``a * sum + w * weights`` (both relative to TopFormer-Tiny), fresh subnets land within
    0.5% (median; 2% at most), the term survives a save and load; with 7 networks the sum-only correction stays."""
    per_weight = 2e-6  # ms per weight: 10-40% of these small networks' latency
    def truth(cfgs):
        ref = true_net(PRESETS[REFERENCE_PRESET]) + per_weight * model_size(PRESETS[REFERENCE_PRESET], SIZE).params
        return np.array([(true_net(c) + per_weight * model_size(c, SIZE).params) / ref for c in cfgs])

    fresh = [TABLE1.sample(s) for s in range(7000, 7030)]
    pred = LatencyPredictor.fit(_op_rows(), _weights_e2e(range(1000, 1010), per_weight), ST)
    rc = pred.ratio_correction
    assert rc.form == "ratio+weights" and rc.w > 0 and pred.info["ratio_correction"]["w"] == rc.w
    assert pred.weight_count_many([fresh[0]])[0] == model_size(fresh[0], SIZE).params
    err = np.abs(pred.predict_ratio_many(fresh) / truth(fresh) - 1)
    assert np.median(err) < 0.005 and np.max(err) < 0.02, err
    back = LatencyPredictor.load(pred.save(tmp_path / "p.json"))
    assert back.ratio_correction == rc and back.ref_weights == pred.ref_weights
    np.testing.assert_allclose(back.predict_ratio_many(fresh), pred.predict_ratio_many(fresh))
    with pytest.raises(EtfError, match="weights term"):
        rc(1.0)  # called without the networks' weights
    few = LatencyPredictor.fit(_op_rows(), _weights_e2e(range(1000, 1007), per_weight), ST)
    assert few.ratio_correction.w == 0.0 and few.ratio_correction.form != "ratio+weights"
    assert np.median(np.abs(few.predict_ratio_many(fresh) / truth(fresh) - 1)) > np.median(err)


def test_the_weights_term_is_fitted_on_relative_errors_not_absolute_ones():
    """The correction is judged by |predicted / measured - 1| (the report, the search's +-5%): its two
    coefficients minimise exactly that, so the largest networks' absolute residuals do not set the line."""
    from latency.predictor import Correction

    rng = np.random.default_rng(3)
    x = rng.uniform(0.6, 4.0, 20)  # operator sums relative to Tiny's
    p = x * rng.uniform(0.5, 1.5, 20)  # weight counts relative to Tiny's
    y = (0.95 * x + 0.08 * p) * (1 + rng.normal(0, 0.03, 20)) + np.where(x > 3.5, 0.4, 0.0)  # big nets off
    rc = Correction.fit(x, y, p)
    assert rc.form == "ratio+weights" and rc.a > 0 and rc.w > 0

    def rel_sse(a: float, w: float) -> float:
        return float(np.sum(((a * x + w * p) / y - 1) ** 2))

    a_abs, w_abs = np.linalg.lstsq(np.column_stack([x, p]), y, rcond=None)[0]
    assert rel_sse(rc.a, rc.w) < rel_sse(a_abs, w_abs)
    for da, dw in [(1e-3, 0), (-1e-3, 0), (0, 1e-3), (0, -1e-3)]:  # and it is the minimum
        assert rel_sse(rc.a, rc.w) <= rel_sse(rc.a + da, rc.w + dw)


def test_ratio_correction_recovers_the_true_relation_where_the_raw_fit_does_not():
    rng = np.random.default_rng(3)
    ops = _op_rows()
    e2e = _drifting_e2e(range(1000, 1012), rng)
    pred = LatencyPredictor.fit(ops, e2e, ST)
    assert pred.mode == "ratio" and pred.info["paired_subnets"] == 12
    fresh = [TABLE1.sample(s) for s in range(7000, 7030)]
    speed_now = 1.3  # the device is slow right now; the reference measured now says so
    truth = np.array([true_net(c) * speed_now for c in fresh])
    ref_now = true_net(PRESETS[REFERENCE_PRESET]) * speed_now
    ratio_acc = accuracy(pred.predict_many(fresh, ref_ms=ref_now), truth)
    raw = LatencyPredictor.fit(ops, e2e.assign(ratio=math.nan, ref_net_ms=math.nan), ST)
    assert raw.mode == "raw"
    raw_acc = accuracy(raw.predict_many(fresh), truth)
    assert ratio_acc["mape_pct"] < 2.5 and ratio_acc["within_5_pct"] == 100.0, ratio_acc
    assert raw_acc["mape_pct"] > 10.0, raw_acc  # the drift landed in the raw fit (and it does not know "now")
    # ranking survives either way; only the scale moves: tau of the ratio predictor is (near) perfect
    assert ratio_acc["kendall_tau"] > 0.95


def test_latest_paired_row_sets_the_current_reference_and_the_state_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    e2e = _drifting_e2e(range(1000, 1006), rng)
    pred = LatencyPredictor.fit(_op_rows(), e2e, ST)
    newest = e2e.sort_values("timestamp").iloc[-1]
    assert pred.ref_current_ms == pytest.approx(newest["ref_net_ms"])
    cfg = TABLE1.sample(7001)
    assert pred.predict(cfg, ref_ms=20.0) == pytest.approx(2 * pred.predict(cfg, ref_ms=10.0))
    back = LatencyPredictor.load(pred.save(tmp_path / "p.json"))
    assert back.mode == "ratio" and back.predict(cfg) == pytest.approx(pred.predict(cfg))
    with pytest.raises(EtfError):
        pred.with_reference(float("nan"))


def test_a_measured_network_is_predicted_at_its_measured_ratio_and_the_rest_by_the_correction(tmp_path):
    """A winner measured 8% over what the line says stays 8% over after the refit (one point among ten barely moves
    the line), so the next refinement does not pick it again; networks never measured still get the line."""
    rng = np.random.default_rng(4)
    e2e = _drifting_e2e(range(1000, 1010), rng)
    line = LatencyPredictor.fit(_op_rows(), e2e, ST)
    win = TABLE1.sample(4242)
    measured = 1.08 * float(line.predict_ratio_many([win])[0])
    twice = [measured * 0.99, measured * 1.01]  # measured twice (two refinements): its median ratio
    rows = [{**e2e.iloc[0].to_dict(), "arch_key": win.key(), "arch_json": win.to_json(indent=None), "seed": -1,
             "purpose": "winner", "ratio": r, "timestamp": f"2026-01-01T00:01:0{i}+00:00"} for i, r in enumerate(twice)]
    pred = LatencyPredictor.fit(_op_rows(), pd.concat([e2e, pd.DataFrame(rows)], ignore_index=True), ST)
    assert pred.info["measured_networks"] == 11 and pred.measured_ratios[win] == pytest.approx(measured)
    assert pred.predict_ratio_many([win])[0] == pytest.approx(measured)
    assert pred.predict(win, ref_ms=10.0) == pytest.approx(10.0 * measured)
    fresh = TABLE1.sample(7003)
    weights = pred.weight_count_many([fresh]) / pred.ref_weights if pred.ratio_correction.w else None
    assert pred.predict_ratio_many([fresh, win])[0] == pytest.approx(
        float(pred.ratio_correction.with_weights(pred.operator_sum_many([fresh]) / pred.ref_sum, weights)[0]))
    for i, r in e2e.iterrows():  # the correction subnets too: each answered with its own measurement
        assert pred.predict_ratio_many([ArchConfig.from_json(r["arch_json"])])[0] == pytest.approx(r["ratio"])
    back = LatencyPredictor.load(pred.save(tmp_path / "p.json"))
    assert back.measured_ratios == pred.measured_ratios and back.predict(win) == pytest.approx(pred.predict(win))


def test_a_ratio_predictor_saved_without_its_measured_networks_is_refitted_not_trusted(tmp_path):
    """A file saved before measured networks were kept in it would answer a measured winner with the line: it is
    refused with one line when loaded directly, and refitted from the table by load_for_device."""
    import json

    rng = np.random.default_rng(5)
    tbl.write_csv_atomic(_op_rows(), tbl.ops_path(tmp_path, ST, write=True))
    tbl.write_csv_atomic(_drifting_e2e(range(1000, 1006), rng), tbl.e2e_path(tmp_path, ST))
    fitted = load_for_device(ST, tmp_path)
    path = next(tmp_path.glob("*.predictor.json"))
    state = json.loads(path.read_text())
    assert len(state.pop("measured_ratios")) == 6
    path.write_text(json.dumps(state))
    with pytest.raises(EtfError, match="saved before measured networks were kept") as err:
        LatencyPredictor.load(path)
    assert "\n" not in str(err.value)
    again = load_for_device(ST, tmp_path)
    assert again.measured_ratios == fitted.measured_ratios and len(again.measured_ratios) == 6
    assert "measured_ratios" in json.loads(path.read_text())


# -- the one way rows are added: purposes, paired columns, old tables ------------------------------------------------
def test_add_e2e_rows_records_purposes_and_paired_columns_and_refits(tmp_path):
    rng = np.random.default_rng(1)
    tbl.write_csv_atomic(_op_rows(), tbl.ops_path(tmp_path, ST, write=True))
    tbl.write_csv_atomic(_drifting_e2e(range(1000, 1006), rng), tbl.e2e_path(tmp_path, ST))
    before = load_for_device(ST, tmp_path)
    win = TABLE1.sample(4242)
    ref_now = 99.0
    assert tbl.add_e2e_rows(tmp_path, ST, [(win, 50.0, 1.0, 10, ref_now, 50.0 / ref_now)], purpose="winner")
    assert not tbl.add_e2e_rows(tmp_path, ST, [(win, 50.0, 1.0, 10, ref_now, 50.0 / ref_now)],
                                purpose="winner")  # identical: no write
    # the same config measured for another purpose is another row, not a duplicate
    assert tbl.add_e2e_rows(tmp_path, ST, [(win, 51.0, 1.0, 10)], purpose="bench")
    e2e = tbl.read_e2e(tmp_path, ST)
    assert sorted(e2e[e2e["arch_key"] == win.key()]["purpose"]) == ["bench", "winner"]
    assert math.isnan(float(e2e[e2e["purpose"] == "bench"]["ratio"].iloc[0]))
    after = load_for_device(ST, tmp_path)  # the fingerprint changed: refitted
    assert after.fingerprint != before.fingerprint
    assert after.info["correction_purposes"] == {"correction": 6, "winner": 1, "bench": 1}
    assert after.ref_current_ms == pytest.approx(ref_now)  # the newest paired measurement is the device now
    with pytest.raises(EtfError, match="purpose"):
        tbl.add_e2e_rows(tmp_path, ST, [(win, 50.0, 1.0, 10)], purpose="whatever")


def test_a_search_scales_unmeasured_networks_to_the_winners_the_table_measured(tmp_path):
    from latency.predictor import scaled_to_winners

    rng = np.random.default_rng(3)
    tbl.write_csv_atomic(_op_rows(), tbl.ops_path(tmp_path, ST, write=True))
    tbl.write_csv_atomic(_drifting_e2e(range(1000, 1008), rng), tbl.e2e_path(tmp_path, ST))
    plain = load_for_device(ST, tmp_path)
    assert scaled_to_winners(plain, tbl.read_e2e(tmp_path, ST)).region_scale == 1.0  # no winners: unchanged
    ref = true_net(PRESETS[REFERENCE_PRESET])
    winners = [TABLE1.sample(s) for s in (7001, 7002)]  # the search's corner runs 10% faster than the table says
    tbl.add_e2e_rows(tmp_path, ST, [(w, 0.9 * true_net(w), 0.1, 10, ref, 0.9 * true_net(w) / ref) for w in winners],
                     purpose="winner")
    e2e = tbl.read_e2e(tmp_path, ST)
    refitted = load_for_device(ST, tmp_path)
    scaled = scaled_to_winners(load_for_device(ST, tmp_path), e2e)
    modelled = refitted.modelled_ratio_many(winners)
    want = math.exp(np.mean(np.log([0.9 * true_net(w) / ref / m for w, m in zip(winners, modelled)])))
    assert scaled.region_scale == pytest.approx(want) and 0.85 < want < 0.95  # the refit alone moved little
    assert scaled.info["winner_scale"] == {"scale": pytest.approx(want), "winners": 2}
    other = TABLE1.sample(7003)  # an unmeasured network is scaled, a measured winner keeps its measurement
    assert scaled.predict_ratio_many([other])[0] == pytest.approx(want * refitted.predict_ratio_many([other])[0])
    assert scaled.predict_ratio_many(winners) == pytest.approx([0.9 * true_net(w) / ref for w in winners], rel=1e-9)
    assert load_for_device(ST, tmp_path).region_scale == 1.0  # search-local: the saved predictor never carries it
    assert "region_scale" not in scaled.state()


def test_old_tables_without_paired_columns_still_read_in_raw_mode(tmp_path):
    rng = np.random.default_rng(2)
    old = _drifting_e2e(range(1000, 1006), rng)[tbl.E2E_REQUIRED]
    tbl.write_csv_atomic(_op_rows(), tbl.ops_path(tmp_path, ST, write=True))
    tbl.write_csv_atomic(old, tbl.e2e_path(tmp_path, ST))
    e2e = tbl.read_e2e(tmp_path, ST)
    assert e2e["ratio"].isna().all() and e2e["ref_net_ms"].isna().all()
    assert load_for_device(ST, tmp_path).mode == "raw"
    bad = _drifting_e2e(range(1000, 1003), rng)
    bad.loc[1, "ratio"] = -1.0
    tbl.write_csv_atomic(bad, tbl.e2e_path(tmp_path, ST))
    with pytest.raises(EtfError, match="line 3"):
        tbl.read_e2e(tmp_path, ST)


# -- held-out: fresh seeds per table fingerprint, expiry with the table and the window ---------------------------------
def test_heldout_seeds_are_never_reused_for_a_table_and_rows_expire(tmp_path):
    import time as _time

    from latency.measure import PROTOCOL
    from latency.report import (REPORT_SEED_BASE, fresh_heldout_configs, read_seed_ledger, seeds_path,
                                valid_heldout)

    first = fresh_heldout_configs(4, set(), set())
    assert [s for s, _ in first] == list(range(REPORT_SEED_BASE, REPORT_SEED_BASE + 4))
    used = {s for s, _ in first}
    second = fresh_heldout_configs(4, {first[0][1].key()}, used)
    assert not used & {s for s, _ in second}  # a seed drawn once for this table is never drawn again
    now = _time.time()
    stamp = lambda h: _time.strftime("%Y-%m-%dT%H:%M:%S+00:00", _time.gmtime(now - 3600 * h))  # noqa: E731
    rows = pd.DataFrame({"arch_key": ["a", "b", "c", "d"], "table_fingerprint": ["fp1", "fp1", "fp2", "fp1"],
                         "timestamp": [stamp(0.5), stamp(7.0), stamp(0.1), stamp(0.2)],
                         "protocol": [PROTOCOL, PROTOCOL, PROTOCOL, PROTOCOL - 1]})
    # b too old, c other table, d measured under an older protocol (fewer rounds)
    assert list(valid_heldout(rows, "fp1", now=now, window_h=6.0)["arch_key"]) == ["a"]
    assert valid_heldout(rows.drop(columns="protocol"), "fp1", now=now, window_h=6.0).empty  # protocol 1
    assert list(valid_heldout(rows, "fp2", now=now, window_h=6.0)["arch_key"]) == ["c"]
    path = seeds_path(str(tmp_path), ST)
    assert read_seed_ledger(path) == {}
    tbl.write_json_atomic({"fp1": [50000, 50001]}, path)
    assert read_seed_ledger(path) == {"fp1": [50000, 50001]}
    # a new table of the setting (fingerprint fp2) skips every seed drawn before, under any table
    from latency.report import seeds_drawn
    assert seeds_drawn({}) == set()
    assert seeds_drawn({"fp1": [50000, 50001], "fp0": [50007]}) == {50000, 50001, 50007}
    tbl.write_json_atomic({"fp1": 3}, path)
    with pytest.raises(EtfError, match="ledger"):
        read_seed_ledger(path)


def test_evaluate_uses_the_reference_beside_each_heldout_subnet_in_ratio_mode():
    from latency.report import evaluate

    rng = np.random.default_rng(5)
    e2e = _drifting_e2e(range(1000, 1012), rng)
    pred = LatencyPredictor.fit(_op_rows(), e2e, ST)
    held = _drifting_e2e(range(8000, 8020), rng, purpose="heldout")  # a new window, its own speeds
    res = evaluate(pred, e2e, held)
    m = res["metrics"]["raw"]
    assert m["predictor"]["mape_pct"] < 3.0 < m["predictor_raw"]["mape_pct"], m
    # the drift line compares the reference network beside the held-out subnets with its latency at fit time
    assert res["drift"]["reference"].startswith(REFERENCE_PRESET)
    assert res["drift"]["table_ref_ms"] == pytest.approx(pred.ref_current_ms)
    assert res["drift"]["report_ref_ms"] == pytest.approx(float(np.median(held["ref_net_ms"])))
    held_slow = held.assign(ref_net_ms=held["ref_net_ms"] * 1.3, median_ms=held["median_ms"] * 1.3)
    slow = evaluate(pred, e2e, held_slow)
    assert slow["drift"]["change_pct"] == pytest.approx(res["drift"]["change_pct"] * 1.3 + 30, abs=1e-6)
    assert slow["metrics"]["reference_normalised"]["predictor"]["mape_pct"] == pytest.approx(
        res["metrics"]["reference_normalised"]["predictor"]["mape_pct"])  # scaled back: the same numbers
    # in ratio terms the held-out rows are predicted ratio vs measured ratio, in ms of the table's frame
    paired = res["measured"]["paired_ratio"]
    assert paired == pytest.approx(held["ratio"].to_numpy(float) * pred.ref_current_ms)
    assert slow["metrics"]["paired_ratio"] == res["metrics"]["paired_ratio"]  # ratios do not move with the speed
    assert set(res["metrics"]["paired_ratio"]) == {"predictor", "flops_linear", "operator_sum"}
    # another predictor of the setting is scored beside it on every basis; the plain sum can be another's
    slower_ops = _op_rows().assign(median_ms=lambda d: d["median_ms"] * 2.0)
    other = LatencyPredictor.fit(slower_ops, e2e, ST)
    both = evaluate(pred, e2e, held, {"own_operators": other}, plain=other)
    for basis in ("raw", "reference_normalised", "paired_ratio"):
        assert both["metrics"][basis]["own_operators"]["mape_pct"] == pytest.approx(
            res["metrics"][basis]["predictor"]["mape_pct"], rel=0.05)  # twice the sums: the ratio fit absorbs it
    assert both["series"]["operator_sum"] == pytest.approx(2.0 * res["series"]["operator_sum"])
    assert both["metrics"]["paired_ratio"]["operator_sum"] == pytest.approx(res["metrics"]["paired_ratio"]["operator_sum"])


def test_ratios_use_each_visits_fastest_run_when_given_and_raw_latencies_stay_medians():
    """A visit slowed for part of its runs (median 30 where nothing interrupted gives 20) moves the median-based
    ratio but not the fastest-run one."""
    medians = [[10, 30, 10], [10, 20, 10], [10, 20, 10]]
    fastest = [[10, 20, 10], [10, 20, 10], [10, 20, 10]]
    (a,) = summarize_rounds(1, medians, runs=5, fastest=fastest)
    assert a.ratio == pytest.approx(2.0) and a.raw_ms == pytest.approx(20.0) and a.ref_ms == pytest.approx(10.0)
    (b,) = summarize_rounds(1, [[10, 30, 10], [10, 30, 10], [10, 20, 10]], runs=5)
    assert b.ratio == pytest.approx(3.0)  # without fastest runs the slowed visits decide
    with pytest.raises(ValueError):
        summarize_rounds(1, medians, fastest=[[10, 20]] * 3)


class _TwoRegimeDevice:
    """Reference 7.5 ms and network 20 ms normally; while another process holds a core (the calls listed in
    ``contended``) the reference takes 12.8 ms and the network 25 ms: the ratio falls from 2.67 to 1.95."""

    kind = "local"

    def __init__(self, contended: set[int]):
        self.contended, self.calls = contended, 0

    def benchmark_many(self, paths, runs, warmup, threads=None, cooldown_s=None):
        slow = self.calls in self.contended
        self.calls += 1
        ms = {"ref": 12.8 if slow else 7.5, "net": 25.0 if slow else 20.0}
        return [type("S", (), {"median_ms": ms[str(p)], "min_ms": ms[str(p)]})() for p in paths]


def test_an_off_regime_round_is_timed_again_and_a_lasting_one_is_kept():
    from latency.measure import off_regime

    assert off_regime(9.5, 7.5) and not off_regime(9.3, 7.5) and not off_regime(99.0, None)
    dev = _TwoRegimeDevice(contended={1})  # round 1's first attempt is contended
    (res,) = measure_paired(dev, ["net"], "ref", rounds=3, runs=2, warmup=0, pause_s=0)
    assert dev.calls == 4 and res.retried == 1 and res.ratio == pytest.approx(20 / 7.5)
    dev = _TwoRegimeDevice(contended={0, 2})  # the table knows 7.5 ms; round 0 and a retry of round 1 are slow
    (res,) = measure_paired(dev, ["net"], "ref", rounds=2, runs=2, warmup=0, baseline_ms=7.5, pause_s=0)
    assert dev.calls == 4 and res.retried == 2 and res.ratio == pytest.approx(20 / 7.5)
    dev = _TwoRegimeDevice(contended=set(range(100)))  # a stale baseline: slower now for good (drift)
    (res,) = measure_paired(dev, ["net"], "ref", rounds=3, runs=2, warmup=0, baseline_ms=7.5, pause_s=0)
    assert dev.calls == 4 and res.retried == 1 and res.ratio == pytest.approx(25 / 12.8)  # one retry, then kept
    dev = _TwoRegimeDevice(contended=set(range(100)))  # slow all along, no baseline: drift, nothing retried
    (res,) = measure_paired(dev, ["net"], "ref", rounds=3, runs=2, warmup=0, pause_s=0)
    assert dev.calls == 3 and res.retried == 0


def test_heldout_file_reads_back_with_its_fingerprints_as_text(tmp_path):
    """A held-out file written by a report is read again by the next one (resume within the window): the hex
    fingerprint is text, not a latency to validate, and one that is all digits keeps its leading zero."""
    from latency.measure import PROTOCOL
    from latency.report import HELDOUT_COLUMNS, read_heldout, valid_heldout

    rows = _drifting_e2e(range(8000, 8003), np.random.default_rng(0), purpose="heldout")
    rows["timestamp"] = "2026-11-27T20:00:00+00:00"
    rows["table_fingerprint"] = ["4448143854964fb8", "0123456789012345", "4448143854964fb8"]
    rows["protocol"] = PROTOCOL
    path = tmp_path / "x.heldout.csv"
    tbl.write_csv_atomic(rows[HELDOUT_COLUMNS], path)
    back = read_heldout(path)
    assert list(back["table_fingerprint"]) == ["4448143854964fb8", "0123456789012345", "4448143854964fb8"]
    now = pd.Timestamp("2026-11-27T21:00:00+00:00").timestamp()
    assert len(valid_heldout(back, "0123456789012345", now=now)) == 1
    assert read_heldout(tmp_path / "none.csv").empty
