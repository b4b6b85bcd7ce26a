"""Predictor files are data: JSON (format 3) evaluated by numpy, equal to scikit-learn's predictions; a pickle
of an older etf, or any other file, is never unpickled (load_for_device refits, LatencyPredictor.load refuses)."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from etf.common import EtfError
from latency import table as tbl
from latency.cli.predict import main as predict_main
from latency.operators import decompose, log_features
from latency.regressors import residual_features
from latency.predictor import (FORMAT_VERSION, LatencyPredictor, OldPredictorFile, load_for_device,
                               predictor_path)
from supernet.space import TABLE1
from latency.setting import Setting
from tests.test_latency_predictor import SIZE, _e2e_rows, _op_rows

#: The full-resolution head: its one resize row gives the 'constant' kind model, so every mode is exercised.
ST = Setting("dev", SIZE, 1, head="logits")


class _Payload:
    """Unpickling this creates ``marker``: proof that a loader ran a pickle."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _old_pickle(path: Path, marker: Path) -> Path:
    """A file like etf's format 2 (a pickled dict), carrying a payload that would run code when unpickled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"format": 2, "device": "dev", "size": SIZE, "kinds": _Payload(marker)},
                                  protocol=pickle.HIGHEST_PROTOCOL))
    return path


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    d = tmp_path_factory.mktemp("tables")
    tbl.write_csv_atomic(_op_rows(drift=1.02, head="logits"), tbl.ops_path(d, ST, write=True))
    tbl.write_csv_atomic(_e2e_rows(range(1000, 1008), "logits"), tbl.e2e_path(d, ST, write=True))
    return d


@pytest.fixture(scope="module")
def fitted():
    return LatencyPredictor.fit(_op_rows(drift=1.02, head="logits"), _e2e_rows(range(1000, 1008), "logits"), ST, "fp")


@pytest.fixture(scope="module")
def configs():
    return [TABLE1.sample(s) for s in range(5000, 5200)]


def test_numpy_models_equal_sklearn_on_table_and_random_operators(fitted, configs):
    assert set(fitted.info["modes"].values()) == {"tiled-costs", "trees", "linear", "constant"}  # every mode
    random_ops = {op for cfg in configs for op in decompose(cfg, SIZE)}
    checked = 0
    for kind, m in fitted.kinds.items():
        if m.mode == "constant":
            continue
        ops = [op for op in random_ops if op.kind == kind]
        table_ops = _table_ops(kind)
        for group in (table_ops, ops):
            if m.mode == "tiled-costs":  # the trees on the cost sum's residual
                x = np.array([residual_features(o) for o in group])
                np.testing.assert_allclose(m.model.residual.predict(x), m.model.residual_estimator.predict(x),
                                           rtol=0, atol=1e-12)
                checked += len(group)
                continue
            if m.mode == "trees":
                x = np.array([log_features(o) for o in group])
            else:
                x = np.array([[float(o.features()[-1])] for o in group])
            ours, theirs = m.model.predict(x), m.estimator.predict(x)
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
            checked += len(group)
    assert checked > 1000


def _table_ops(kind: str):
    from latency.operators import parse_key

    rows = _op_rows(drift=1.02, head="logits")
    return [parse_key(k) for k in rows.loc[rows["kind"] == kind, "key"]]


def test_json_round_trip_predicts_exactly_like_the_fitted_predictor(fitted, configs, tmp_path):
    path = fitted.save(tmp_path / "p.predictor.json")
    loaded = LatencyPredictor.load(path, ST)
    assert all(m.estimator is None for m in loaded.kinds.values())  # no scikit-learn object after loading
    want, got = fitted.predict_many(configs), loaded.predict_many(configs)
    assert np.array_equal(want, got) or np.abs(want - got).max() <= 1e-12 * np.abs(want).max()
    for cfg in configs[:5]:
        assert [ms for _, ms in loaded.operator_latencies(cfg)] == \
            pytest.approx([ms for _, ms in fitted.operator_latencies(cfg)], rel=1e-12, abs=1e-15)
    assert (loaded.correction, loaded.ref_nominal, loaded.fingerprint, loaded.info) == \
        (fitted.correction, fitted.ref_nominal, fitted.fingerprint, fitted.info)
    assert {k: m.lookup for k, m in loaded.kinds.items()} == {k: m.lookup for k, m in fitted.kinds.items()}


def test_the_file_is_plain_json_without_pickle(fitted, tmp_path):
    path = fitted.save(tmp_path / "p.predictor.json")
    raw = path.read_bytes()
    assert raw.isascii() and not raw.startswith(b"\x80")

    def no_constant(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    state = json.loads(raw, parse_constant=no_constant)
    assert state["format"] == FORMAT_VERSION == 3 and state["etf"] == "latency-predictor"
    assert (state["device"], state["size"]) == ("dev", SIZE)
    mbconv = state["kinds"]["mbconv"]["model"]
    assert state["kinds"]["mbconv"]["mode"] == "tiled-costs" and mbconv["tiles"] == [16, 32]
    assert len(mbconv["common"]) == len(mbconv["scale"]) and mbconv["weights"]  # per stage position
    trees = mbconv["residual"]
    assert len(trees["trees"]) == 200
    assert set(trees["trees"][0]) == {"children_left", "children_right", "feature", "threshold", "value"}
    assert set(state["kinds"]["head"]["model"]) == {"coef", "intercept"}

    def plain(v) -> bool:
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(x) for k, x in v.items())
        if isinstance(v, list):
            return all(plain(x) for x in v)
        return v is None or isinstance(v, (str, int, float, bool))

    assert plain(state)
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file


@pytest.mark.parametrize("where", ["same path", "old .pkl path"])
def test_load_for_device_refits_an_old_pickle_with_one_line_and_never_unpickles_it(tables, tmp_path, capsys, where,
                                                                                   fitted, configs):
    d = tmp_path / "t"
    d.mkdir()
    for src in tables.iterdir():
        (d / src.name).write_bytes(src.read_bytes())
    marker = tmp_path / "unpickled"
    json_path = predictor_path(d, ST)
    old = json_path if where == "same path" else json_path.with_name(f"{ST.stem}.predictor.pkl")
    _old_pickle(old, marker)
    capsys.readouterr()
    pred = load_for_device(ST, d)
    err = capsys.readouterr().err
    assert not marker.exists()
    assert err.count("\n") == 1 and err.startswith(f"etf: {old} was saved by an older etf (pickle); refitted "
                                                   f"from the table"), err
    assert json.loads(json_path.read_text())["format"] == 3
    assert np.array_equal(pred.predict_many(configs[:20]), fitted.predict_many(configs[:20]))
    again = load_for_device(ST, d)  # now the JSON file is current: loaded, silently
    assert capsys.readouterr().err == "" and again.fingerprint == pred.fingerprint


def test_load_refuses_old_foreign_and_damaged_files_with_one_line(fitted, tmp_path, capsys):
    marker = tmp_path / "unpickled"
    old = _old_pickle(tmp_path / "old.predictor.pkl", marker)
    with pytest.raises(OldPredictorFile, match="saved by an older etf") as info:
        LatencyPredictor.load(old)
    assert isinstance(info.value, EtfError) and "\n" not in str(info.value)
    assert not marker.exists()

    good = json.loads(fitted.save(tmp_path / "good.json").read_text())
    mb = good["kinds"]["mbconv"]["model"]
    cases = {
        "garbage.bin": b"\x00\x01 not a predictor \xff",
        "other.json": json.dumps({"format": 3, "hello": 1}).encode(),
        "list.json": b"[1, 2, 3]",
        "newer.json": json.dumps({**good, "format": 4}).encode(),
        "damaged.json": json.dumps({**good, "kinds": {"mbconv": {**good["kinds"]["mbconv"], "mode": "magic"}}}).encode(),
        "badtree.json": json.dumps({**good, "kinds": {"mbconv": {**good["kinds"]["mbconv"], "model": {
            **mb, "residual": {**mb["residual"], "n_features": 1}}}}}).encode(),
        "badcosts.json": json.dumps({**good, "kinds": {"mbconv": {**good["kinds"]["mbconv"], "model": {
            **mb, "common": mb["common"][:-1]}}}}).encode(),
        "truncated.json": json.dumps(good).encode()[:1000],
    }
    for name, raw in cases.items():
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(EtfError) as info:
            LatencyPredictor.load(tmp_path / name)
        assert "\n" not in str(info.value) and str(tmp_path / name) in str(info.value), name

    # the CLI: one line, exit 2, no traceback, nothing unpickled
    assert predict_main(["--device", "dev", "--size", str(SIZE), "--arch", "topformer-tiny",
                         "--predictor", str(old)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "older etf (pickle)" in err and not marker.exists()
