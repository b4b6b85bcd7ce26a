"""The latency setting as a key: file names, recorded settings, refusal of mixed settings, legacy tables.

Fast: the tables here are the formula tables of test_latency_predictor.py (test data with a known answer), written
in one setting and then read or refused in others; real profiling per head is in test_latency_profile.py.
"""
from __future__ import annotations

import pytest

from etf.common import EtfError
from latency import table as tbl
from latency.cli.predict import main as predict_main
from latency.predictor import LatencyPredictor, fit_from_tables, load_for_device, predictor_path
from latency.setting import Setting, check_precision, make_setting
from supernet.presets import PRESETS
from tests.test_latency_predictor import SIZE, _e2e_rows, _op_rows


def test_stem_names_every_field_and_is_file_safe():
    assert Setting("local", 512, 1).stem == "local_512_t1_fp32_logits8"
    assert Setting("pixel 7/pro", 256, 4, "fp32", "labels").stem == "pixel-7-pro_256_t4_fp32_labels"
    stems = {Setting("d", 64, t, "fp32", h).stem for t in (1, 2) for h in ("logits8", "labels", "logits")}
    assert len(stems) == 6  # every setting its own files
    assert tbl.ops_path("tables", Setting("local", 512, 2, head="logits"), write=True).name == \
        "local_512_t2_fp32_logits.csv"


def test_setting_round_trips_and_names_the_first_difference():
    s = Setting("local", 512, 2, "fp32", "labels")
    assert Setting.from_dict(s.to_dict()) == s
    assert s.difference(s) is None
    assert s.difference(Setting("local", 512, 2, "fp32", "logits8")) == "head labels, not logits8"
    assert s.difference(Setting("local", 512, 1, "fp32", "labels")) == "threads 2, not 1"
    with pytest.raises(EtfError, match="was fitted for head labels, not logits8"):
        s.check(Setting("local", 512, 2), "predictor")


@pytest.mark.parametrize("kwargs, needle", [({"head": "full"}, "unknown head 'full'"),
                                            ({"precision": "int4"}, "unknown precision 'int4'"),
                                            ({"threads": 0}, "threads must be a positive integer")])
def test_bad_setting_fields_are_one_line_errors(kwargs, needle):
    args = {"device": "local", "size": 64, "threads": 1} | kwargs
    with pytest.raises(EtfError, match=needle):
        Setting(**args)


def test_precisions_other_than_fp32_say_they_are_not_available_until_conversion_supports_them():
    from latency.setting import available_precisions

    assert check_precision("fp32") == "fp32"
    if "fp16" not in available_precisions():
        with pytest.raises(EtfError, match="precision fp16 is not available yet"):
            make_setting("local", 64, 1, "fp16")
    assert make_setting("local", 64).threads == 1  # the local device's default


def _write(d, setting: Setting, head_col: str | None = None) -> None:
    ops, e2e = _op_rows(head=setting.head), _e2e_rows(range(1000, 1008), setting.head)
    for df in (ops, e2e):
        df["device"], df["threads"], df["head"] = setting.device, setting.threads, head_col or setting.head
    tbl.write_csv_atomic(ops, tbl.ops_path(d, setting, write=True))
    tbl.write_csv_atomic(e2e, tbl.e2e_path(d, setting, write=True))


def test_two_settings_two_tables_and_each_predictor_refuses_the_other(tmp_path):
    a, b = Setting("dev", SIZE, 1, head="logits8"), Setting("dev", SIZE, 1, head="labels")
    _write(tmp_path, a)
    _write(tmp_path, b)
    pa, pb = load_for_device(a, tmp_path), load_for_device(b, tmp_path)
    cfg = PRESETS["topformer-tiny"]
    assert [op.kind for op, _ in pb.operator_latencies(cfg)][-1] == "labels"
    assert pb.predict(cfg) > pa.predict(cfg)  # the formula gives the labels op a cost: it is counted
    assert predictor_path(tmp_path, a) != predictor_path(tmp_path, b)
    assert (pa.setting, pb.setting) == (a, b)
    assert pa.head == "logits8" and pb.head == "labels"
    with pytest.raises(EtfError, match="fitted for head logits8, not labels"):
        LatencyPredictor.load(predictor_path(tmp_path, a), b)
    with pytest.raises(EtfError, match="fitted for head labels, not logits8"):
        pb.check_for(a)
    meta_free = {p.name for p in tmp_path.iterdir()}
    assert {"dev_64_t1_fp32_logits8.csv", "dev_64_t1_fp32_labels.csv"} <= meta_free


def test_several_threads_sum_the_folders_1_thread_operators_and_the_fingerprint_covers_both(tmp_path, capsys):
    one, two = Setting("local", SIZE, 1), Setting("local", SIZE, 2)
    _write(tmp_path, two)
    alone = load_for_device(two, tmp_path)
    assert tbl.operator_setting(tmp_path, two) == two and "operators_from" not in alone.info
    _write(tmp_path, one)
    ops1 = tbl.read_ops(tmp_path, one)
    ops1["median_ms"] *= 3.0  # the 1-thread operators: three times slower, same ranking
    tbl.write_csv_atomic(ops1, tbl.ops_path(tmp_path, one))
    assert tbl.operator_setting(tmp_path, two) == one and tbl.operator_setting(tmp_path, one) == one
    pred = load_for_device(two, tmp_path)  # the 1-thread table appeared: refitted, on its rows
    assert pred.info["operators_from"] == one.stem and pred.setting == two
    cfg = PRESETS["topformer-tiny"]
    assert pred.operator_sum(cfg) == pytest.approx(3.0 * alone.operator_sum(cfg), rel=1e-6)
    own = fit_from_tables(two, tmp_path, own_operators=True)  # the report's baseline
    assert "operators_from" not in own.info and own.operator_sum(cfg) == pytest.approx(alone.operator_sum(cfg))
    # a change to the 1-thread operators changes the 2-thread predictor's fingerprints (held-out rows expire)
    fp, ofp = tbl.fingerprint(tmp_path, two), tbl.ops_fingerprint(tmp_path, two)
    ops1["median_ms"] *= 1.1
    tbl.write_csv_atomic(ops1, tbl.ops_path(tmp_path, one))
    assert tbl.fingerprint(tmp_path, two) != fp and tbl.ops_fingerprint(tmp_path, two) != ofp
    assert load_for_device(two, tmp_path).fingerprint == tbl.fingerprint(tmp_path, two)
    assert predict_main(["--device", "local", "--arch", "topformer-tiny", "--size", str(SIZE), "--tables",
                         str(tmp_path), "--threads", "2"]) == 0
    assert f"operators (the sum and the breakdown) timed in {one.stem}" in capsys.readouterr().out


def test_a_table_whose_rows_are_of_another_head_is_refused(tmp_path):
    s = Setting("dev", SIZE, 1, head="logits8")
    _write(tmp_path, s, head_col="logits")
    with pytest.raises(EtfError, match=r"has a row with head logits, not logits8 \(line 2\)"):
        load_for_device(s, tmp_path)
    rows = tbl.read_ops(tmp_path, s)
    rows.loc[3, "head"] = "logits8"
    with pytest.raises(EtfError, match="mixes settings: line 5 has head=logits8"):
        tbl.setting_of_rows(rows, "the table")


def _legacy(d) -> None:
    """A table as etf-profile wrote it before settings: <device>_<size>.csv without precision/head columns."""
    ops = _op_rows(head="logits").drop(columns=["precision", "head"])
    e2e = _e2e_rows(range(1000, 1008), "logits").drop(columns=["threads", "precision", "head"])
    stem = tbl.legacy_stem(d, "dev", SIZE)
    tbl.write_csv_atomic(ops, stem.with_suffix(".csv"))
    tbl.write_csv_atomic(e2e, stem.with_suffix(".e2e.csv"))


def test_a_legacy_table_is_read_as_the_setting_it_measured_and_refused_for_another(tmp_path, capsys):
    _legacy(tmp_path)
    old = Setting("dev", SIZE, 1, "fp32", "logits")
    assert tbl.legacy_setting(tmp_path, "dev", SIZE) == old
    pred = load_for_device(old, tmp_path)
    assert pred.setting == old
    assert "written before settings were recorded" in capsys.readouterr().err
    assert set(tbl.read_ops(tmp_path, old)["head"]) == {"logits"}
    with pytest.raises(EtfError, match=r"no latency table for dev, 64 px, 1 thread, fp32, head logits8: run "
                                       r"etf-profile .*is an older table measured with head logits, not logits8"):
        load_for_device(Setting("dev", SIZE, 1), tmp_path)


def test_etf_predict_takes_the_setting_and_refuses_a_predictor_of_another(tmp_path, capsys):
    s = Setting("local", SIZE, 1, head="labels")
    _write(tmp_path, s)
    assert predict_main(["--device", "local", "--arch", "topformer-tiny", "--size", str(SIZE), "--tables",
                         str(tmp_path), "--head", "labels", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"head": "labels"' in out and '"threads": 1' in out
    rc = predict_main(["--device", "local", "--arch", "topformer-tiny", "--size", str(SIZE), "--tables",
                       str(tmp_path), "--predictor", str(predictor_path(tmp_path, s))])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "fitted for head labels, not logits8" in err[0]
    rc = predict_main(["--device", "local", "--arch", "topformer-tiny", "--size", str(SIZE), "--tables",
                       str(tmp_path), "--precision", "int8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "int8" in err[0]


def test_add_e2e_rows_records_the_setting(tmp_path):
    s = Setting("dev", SIZE, 2, head="labels")
    _write(tmp_path, s)
    assert tbl.add_e2e_rows(tmp_path, s, [(PRESETS["topformer-tiny"], 3.0, 0.1, 10)])
    e2e = tbl.read_e2e(tmp_path, s)
    assert tbl.setting_of_rows(e2e, "e2e") == s
    assert e2e[e2e["arch_key"] == PRESETS["topformer-tiny"].key()]["head"].tolist() == ["labels"]
