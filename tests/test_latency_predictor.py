"""Predictor fitting, caching, persistence and bad tables, on a table whose latencies follow a known formula.

The formula (latency = FLOPs-proportional term + fixed per-operator cost; network = 1.2 x sum + 0.3) is test
data with a known answer, so the tests can check that the fitted predictor recovers it; the measured tables
are exercised by the slow tests in test_latency_profile.py.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from latency import table as tbl
from latency.operators import decompose, parse_key
from latency.plan import designed_sample, interleave
from latency.predictor import Correction, LatencyPredictor, accuracy, load_for_device
from latency.setting import Setting
from etf.common import EtfError
from supernet.presets import PRESETS
from supernet.size import model_size
from supernet.space import TABLE1

SIZE = 64
ST = Setting("dev", SIZE, 1)  # 1 thread, fp32, head logits8


def at(device: str = "dev", size: int = SIZE, **kw) -> Setting:
    return Setting(device, size, kw.pop("threads", 1), **kw)
KIND_COST = {"stem": 0.01, "mbconv": 0.02, "pool": 0.005, "transformer": 0.05, "injection": 0.03, "head": 0.04,
             "resize": 0.02, "labels": 0.01}


def true_ms(op) -> float:
    elems = op.features()[-1] if op.kind in ("pool", "resize", "labels") else 0
    return KIND_COST[op.kind] + op.flops() * 2e-8 + elems * 1e-9


def true_net(cfg, head: str = "logits8") -> float:
    return 1.2 * sum(true_ms(op) for op in decompose(cfg, SIZE, head=head)) + 0.3


def _op_rows(drift: float = 1.0, head: str = "logits8") -> pd.DataFrame:
    rows = []
    for i, op in enumerate(interleave(designed_sample(SIZE, head=head))):
        ref = 0.5 * (drift if i % 3 == 0 else 1.0)  # a third of the rows ran at another speed (drift)
        ms = true_ms(op) * ref / 0.5
        rows.append({"key": op.key, "kind": op.kind, "phase": "design", "device": "dev", "device_kind": "local",
                     "runtime": "r", "threads": 1, "size": SIZE, "median_ms": ms, "mean_ms": ms, "std_ms": 0.0,
                     "min_ms": ms, "max_ms": ms, "cv": 0.0, "runs": 5, "warmup": 1, "ref_ms": ref, "batch": int(i % 3 == 0),
                     "timestamp": "t", "converter": "c", "precision": "fp32", "head": head})
    return pd.DataFrame(rows, columns=tbl.OP_COLUMNS)


def _e2e_rows(seeds, head: str = "logits8") -> pd.DataFrame:
    rows = []
    for s in seeds:
        cfg = TABLE1.sample(s)
        rows.append({"arch_key": cfg.key(), "arch_json": cfg.to_json(indent=None), "seed": s,
                     "purpose": "correction", "device": "dev", "size": SIZE, "flops": model_size(cfg, SIZE).flops,
                     "median_ms": true_net(cfg, head), "std_ms": 0.0, "runs": 5, "ref_ms": 0.5, "timestamp": "t",
                     "threads": 1, "precision": "fp32", "head": head})
    return pd.DataFrame(rows, columns=tbl.E2E_COLUMNS)


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    d = tmp_path_factory.mktemp("tables")
    tbl.write_csv_atomic(_op_rows(drift=1.02), tbl.ops_path(d, ST, write=True))
    tbl.write_csv_atomic(_e2e_rows(range(1000, 1008)), tbl.e2e_path(d, ST, write=True))
    return d


@pytest.fixture(scope="module")
def predictor(tables):
    return load_for_device(ST, tables)


def test_measured_operators_are_looked_up_as_measured(predictor):
    rows = _op_rows(drift=1.02)
    for _, row in rows.head(40).iterrows():
        op_ms = predictor.kinds[row["kind"]].lookup[row["key"]]
        assert op_ms == pytest.approx(row["median_ms"])  # the reference operator is a record, not a scale
        assert predictor.ref_nominal == 0.5  # the median reference: the speed of most batches
        if row["ref_ms"] == 0.5:
            assert op_ms == pytest.approx(true_ms(parse_key(row["key"])))


def test_predictions_match_the_known_formula_on_unseen_subnets(predictor):
    cfgs = [TABLE1.sample(s) for s in range(30)]
    pred = predictor.predict_many(cfgs)
    truth = np.array([true_net(c) for c in cfgs])
    acc = accuracy(pred, truth)
    assert acc["mape_pct"] < 10 and acc["kendall_tau"] > 0.7, acc
    assert predictor.correction.n == 8


def test_vectorised_path_equals_per_config_and_per_operator_paths(predictor):
    cfgs = [TABLE1.sample(s) for s in range(40, 60)] + list(PRESETS.values())
    many = predictor.predict_many(cfgs)
    assert many.shape == (len(cfgs),)
    for cfg, m in zip(cfgs, many):
        assert predictor.predict(cfg) == pytest.approx(m)
        by_op = sum(ms for _, ms in predictor.operator_latencies(cfg))
        assert predictor.correction(by_op) == pytest.approx(m)


def test_correction_fit_recovers_a_line():
    x = np.arange(1.0, 9.0)
    c = Correction.fit(x, 1.2 * x + 0.3)
    assert (c.a, c.b, c.form) == (pytest.approx(1.2), pytest.approx(0.3), "affine")


def test_an_affine_correction_keeps_its_edge_ratio_outside_the_fitted_range():
    """Inside the sums it was fitted on the line; outside, the sum times the line's ratio at the nearer end (a
    line on a few noisy networks extrapolates badly); a saved correction keeps its range."""
    x = np.arange(1.0, 9.0)
    c = Correction.fit(x, 0.9 * x + 0.5)
    assert (c.form, c.lo, c.hi) == ("affine", 1.0, 8.0)
    inside = np.array([1.0, 3.5, 8.0])
    np.testing.assert_allclose(c(inside), 0.9 * inside + 0.5)
    edge_hi, edge_lo = (0.9 * 8.0 + 0.5) / 8.0, (0.9 * 1.0 + 0.5) / 1.0
    np.testing.assert_allclose(c(np.array([12.0, 0.5])), [12.0 * edge_hi, 0.5 * edge_lo])
    assert c(16.0) == pytest.approx(16.0 * edge_hi)
    again = Correction.from_state(json.loads(json.dumps(c.state())))
    assert again == c and again(12.0) == pytest.approx(c(12.0))
    # a pure ratio has no range to keep; an affine one saved without its range (an older etf) is refused
    assert Correction.fit(x, 1.1 * x)(20.0) == pytest.approx(22.0)
    with pytest.raises(EtfError, match="refit it from its table"):
        Correction.from_state({"a": 0.9, "b": 0.5, "n": 8, "form": "affine"})


def test_correction_on_fewer_than_eight_subnets_is_a_ratio():
    """Four points on a line still give a ratio: a free line on so few extrapolates badly (latency/predictor.py)."""
    c = Correction.fit([1.0, 2.0, 3.0, 4.0], [1.5, 2.7, 3.9, 5.1])
    assert c.form == "ratio" and c.b == 0.0 and c.n == 4


def test_correction_keeps_no_intercept_that_only_fits_noise():
    rng = np.random.default_rng(0)
    x = rng.uniform(30, 70, 16)
    y = 1.02 * x * rng.normal(1.0, 0.03, 16)  # a pure ratio plus 3% noise: a free line would chase the noise
    c = Correction.fit(x, y)
    assert c.form == "ratio" and c.b == 0.0 and c.a == pytest.approx(1.02, abs=0.02)
    assert Correction.fit([], []).a == 1.0
    assert Correction.fit([2.0], [3.0]).a == pytest.approx(1.5)


def _anchor_rows(scale: float) -> pd.DataFrame:
    """End-to-end rows of the anchors (smallest config, presets) measured at ``scale`` x their true latency."""
    rows = []
    for cfg in [TABLE1.min_config(), *PRESETS.values()]:
        rows.append({"arch_key": cfg.key(), "arch_json": cfg.to_json(indent=None), "seed": None,
                     "purpose": "correction", "device": "dev", "size": SIZE, "flops": model_size(cfg, SIZE).flops,
                     "median_ms": scale * true_net(cfg), "std_ms": 0.0, "runs": 5, "ref_ms": 0.5, "timestamp": "t",
                     "threads": 1, "precision": "fp32", "head": "logits8"})
    return pd.DataFrame(rows, columns=tbl.E2E_COLUMNS)


@pytest.mark.parametrize("n_random, fitted_on", [(6, 6), (5, 9)])
def test_correction_leaves_the_anchors_out_once_six_space_subnets_are_measured(n_random, fitted_on):
    # anchors 30% faster than the random subnets' rule: they must not pull the correction once 6 random exist
    e2e = pd.concat([_anchor_rows(0.7), _e2e_rows(range(1000, 1000 + n_random))], ignore_index=True)
    pred = LatencyPredictor.fit(_op_rows(), e2e, ST)
    assert pred.info["correction_fitted_on"] == fitted_on
    fresh = [TABLE1.sample(s) for s in range(7000, 7010)]
    err = np.abs(pred.predict_many(fresh) / np.array([true_net(c) for c in fresh]) - 1)
    if n_random >= 6:
        assert np.median(err) < 0.03, err
    else:  # too few space subnets: the anchors stay in and drag the prediction down
        assert np.median(err) > 0.05, err


def test_a_predictor_fitted_by_an_older_revision_is_refitted_on_load(tables, tmp_path):
    d = tmp_path / "t"
    shutil.copytree(tables, d)
    first = load_for_device(ST, d)
    path = d / tbl.table_stem(d, ST).with_suffix(".predictor.json").name
    state = json.loads(path.read_text())
    state["info"]["fit_revision"] = 1
    state["correction"]["a"] = 99.0  # what an older fit could have left
    path.write_text(json.dumps(state))
    again = load_for_device(ST, d)
    assert again.correction.a == pytest.approx(first.correction.a)
    assert json.loads(path.read_text())["info"]["fit_revision"] == again.info["fit_revision"]


def test_save_load_round_trip_and_wrong_device_or_size(predictor, tmp_path):
    path = predictor.save(tmp_path / "p.pkl")
    loaded = LatencyPredictor.load(path, ST)
    cfgs = [TABLE1.sample(s) for s in range(5)]
    assert np.allclose(loaded.predict_many(cfgs), predictor.predict_many(cfgs))
    assert loaded.setting == ST
    with pytest.raises(EtfError, match="fitted for device dev, not pixel"):
        LatencyPredictor.load(path, at("pixel"))
    with pytest.raises(EtfError, match="fitted for input size 64, not 512"):
        LatencyPredictor.load(path, at(size=512))
    with pytest.raises(EtfError, match="fitted for head logits8, not labels"):
        LatencyPredictor.load(path, at(head="labels"))
    with pytest.raises(EtfError, match="fitted for threads 1, not 2"):
        LatencyPredictor.load(path, at(threads=2))
    with pytest.raises(EtfError, match="fitted for precision fp32, not int8"):
        LatencyPredictor.load(path, at(precision="int8"))
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(EtfError, match="not a latency predictor"):
        LatencyPredictor.load(tmp_path / "junk.pkl")


def test_predictor_is_refitted_when_the_table_changes(tables, tmp_path):
    d = tmp_path / "t"
    shutil.copytree(tables, d)
    first = load_for_device(ST, d)
    assert load_for_device(ST, d).fingerprint == first.fingerprint
    rows = tbl.read_ops(d, ST)
    tbl.write_csv_atomic(rows.iloc[:-1], tbl.ops_path(d, ST, write=True))
    assert load_for_device(ST, d).fingerprint != first.fingerprint


def test_missing_table_says_run_etf_profile(tmp_path):
    with pytest.raises(EtfError, match="no latency table for pixel, 512 px, 1 thread, fp32, head logits8: run "
                                       "etf-profile --device pixel --size 512 --threads 1 --head logits8"):
        load_for_device(at("pixel", 512), tmp_path)


@pytest.mark.parametrize("value", ["abc", "-1", "", "inf"])
def test_corrupted_row_is_named_by_line(tables, tmp_path, value):
    d = tmp_path / "t"
    shutil.copytree(tables, d)
    path = tbl.ops_path(d, ST, write=True)
    rows = pd.read_csv(path, dtype=str, keep_default_na=False)
    rows.loc[3, "median_ms"] = value
    rows.to_csv(path, index=False)
    with pytest.raises(EtfError, match=r"line 5: median_ms="):
        load_for_device(ST, d)


def test_truncated_or_garbled_table_is_an_error(tables, tmp_path):
    d = tmp_path / "t"
    shutil.copytree(tables, d)
    path = tbl.ops_path(d, ST, write=True)
    path.write_text("key,kind\n\"unterminated,x\n")
    with pytest.raises(EtfError, match="corrupted|lacks column"):
        load_for_device(ST, d)


def test_table_from_another_device_or_size_is_refused(tables, tmp_path):
    d = tmp_path / "t"
    d.mkdir()
    shutil.copy(tbl.ops_path(tables, ST), tbl.ops_path(d, at(size=96), write=True))
    with pytest.raises(EtfError, match="at input size 64, not 96"):
        load_for_device(at(size=96), d)
    shutil.copy(tbl.ops_path(tables, ST), tbl.ops_path(d, at("pixel"), write=True))
    with pytest.raises(EtfError, match="measured on dev"):
        load_for_device(at("pixel"), d)
    shutil.copy(tbl.ops_path(tables, ST), tbl.ops_path(d, at(head="labels"), write=True))
    with pytest.raises(EtfError, match="with head logits8, not labels"):
        load_for_device(at(head="labels"), d)


def test_report_evaluation_against_baselines_and_drift_record(tables, predictor):
    from latency.cli.report import evaluate

    e2e = tbl.read_e2e(tables, ST)
    held = _e2e_rows(range(2000, 2030))
    held["ref_ms"] = 0.55  # the device runs 10% slower in the report window than when profiled
    held["median_ms"] *= 1.1
    res = evaluate(predictor, e2e, held)
    raw, norm = res["metrics"]["raw"], res["metrics"]["reference_normalised"]
    assert set(raw) == {"predictor", "flops_linear", "operator_sum"}
    assert raw["predictor"]["n"] == 30
    assert res["drift"]["change_pct"] == pytest.approx(10.0)
    # scaled back by the reference, the measurements are the formula again: the predictor is close to it and
    # at least as good as the FLOPs line fitted on the same subnets
    assert norm["predictor"]["mape_pct"] < 10 and norm["predictor"]["mape_pct"] <= norm["flops_linear"]["mape_pct"]
    assert raw["predictor"]["mape_pct"] > norm["predictor"]["mape_pct"]  # the 10% slowdown shows up raw
