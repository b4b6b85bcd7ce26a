"""End to end at 64x64 on the local device: etf-profile -> table -> predictor -> etf-predict, and kill/resume.

Real conversions (litert-torch) and real measurements (LiteRT on this CPU), a handful of operators each.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from latency import table as tbl
from latency.plan import designed_sample, interleave
from latency.setting import Setting

ROOT = Path(__file__).resolve().parent.parent
SIZE = 64
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
ST = Setting("local", SIZE, 1)  # what etf-profile --device local --size 64 measures: 1 thread, fp32, logits8
LABELS = Setting("local", SIZE, 1, head="labels")


def run_cli(module: str, *args: str, timeout: int = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def predict(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``etf-predict`` in this process (saves a torch import per call); (exit code, stdout, stderr)."""
    from latency.cli.predict import main

    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def profile_args(out: Path, limit: int, batch: int) -> list[str]:
    return ["--device", "local", "--size", str(SIZE), "--out", str(out), "--limit", str(limit), "--batch",
            str(batch), "--e2e", "0", "--runs", "3", "--warmup", "1", "--no-progress"]


@pytest.fixture(scope="module")
def profiled(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tables")
    res = run_cli("latency.cli.profile", *profile_args(out, 7, 4), "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads(res.stdout)
    assert summary["local"]["rows"] == 7
    return out


@pytest.mark.slow
def test_profile_writes_one_row_per_operator_with_metadata(profiled):
    rows = tbl.read_ops(profiled, ST)
    planned = [op.key for op in interleave(designed_sample(SIZE))[:7]]
    assert list(rows["key"]) == planned
    assert set(rows["kind"]) == {"stem", "mbconv", "pool", "transformer", "injection", "head"}  # logits8: no resize
    assert set(rows["head"]) == {"logits8"} and set(rows["precision"]) == {"fp32"} and set(rows["threads"]) == {1}
    assert (rows["median_ms"] > 0).all() and (rows["ref_ms"] > 0).all() and (rows["runs"] == 3).all()
    assert (rows["device"] == "local").all() and (rows["size"] == SIZE).all()
    assert set(rows["runtime"]) == {"litert-xnnpack"}
    meta = tbl.read_json(tbl.meta_path(profiled, ST))
    assert meta["setting"] == ST.to_dict()
    assert meta["reduced"] and any("this run: --limit 7" in r for r in meta["reduced_reasons"])
    assert meta["timing"]["conversions"] >= 8 and [d["phase"] for d in meta["drift"]].count("design") == 2
    assert meta["plan"]["candidates"]["mbconv"] > 2000
    # every operator timed in 3 passes (the first, then two in shuffled batches); the table keeps the median
    passes = pd.read_csv(tbl.passes_path(profiled, ST))
    assert meta["passes_done"] == 3 and len(passes) == 21 and set(passes["pass"]) == {0, 1, 2}
    assert [d["phase"] for d in meta["drift"]].count("retime1") == 2  # 7 operators in batches of 4
    med = passes.groupby("key")["median_ms"].median()
    assert list(rows["median_ms"]) == pytest.approx(list(med[rows["key"]]))
    spread = passes.groupby("key")["median_ms"].max() / passes.groupby("key")["median_ms"].min() - 1
    d = meta["passes_disagree"]  # how many operators' passes disagree: the table's steadiness, kept with it
    assert (d["operators"], d["of"], d["threshold"]) == (int((spread > 0.3).sum()), 7, 0.3)
    assert d["unsteady"] == (d["operators"] > 0.25 * 7)


@pytest.mark.slow
def test_predict_cli_from_the_measured_table(profiled, capsys):
    code, out, err = predict(capsys, "--device", "local", "--arch", "topformer-tiny", "--size", str(SIZE),
                             "--tables", str(profiled), "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["predicted_ms"] > 0 and res["table_reduced"] is True
    rows = tbl.read_ops(profiled, ST)
    # the measured operators are looked up: the stem of topformer-tiny (width 16) is the first planned row
    code, out, _ = predict(capsys, "--device", "local", "--arch", "topformer-tiny", "--size", str(SIZE),
                           "--tables", str(profiled), "--json", "--breakdown")
    stem = json.loads(out)["operators"][0]
    assert stem["measured"] and stem["key"] == rows["key"].iloc[0]
    first = rows.iloc[0]
    assert stem["ms"] == pytest.approx(first["median_ms"], abs=1e-4)  # as measured  # the CLI rounds to 4 decimals


@pytest.mark.slow
def test_predict_cli_bad_inputs_are_one_line_errors(profiled, tmp_path, capsys):
    code, _, err = predict(capsys, "--device", "local", "--arch", "topformer-tiny", "--size", "128",
                           "--tables", str(profiled))
    assert code == 2 and "run etf-profile --device local --size 128 --threads 1 --head logits8 first" in err
    assert len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad"
    bad.mkdir()
    rows = pd.read_csv(tbl.ops_path(profiled, ST), dtype=str, keep_default_na=False)
    rows.loc[2, "median_ms"] = "garbage"
    rows.to_csv(tbl.ops_path(bad, ST, write=True), index=False)
    code, _, err = predict(capsys, "--device", "local", "--arch", "topformer-tiny", "--size", str(SIZE),
                           "--tables", str(bad))
    assert code == 2 and "line 4: median_ms='garbage'" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = predict(capsys, "--device", "local", "--arch", "no-such-preset", "--size", str(SIZE),
                           "--tables", str(profiled))
    assert code == 2 and "unknown preset" in err
    assert predict(capsys, "--device", "local", "--arch", "topformer-tiny", "--size", str(SIZE),
                   "--tables", str(profiled))[0] == 0  # fits and caches the predictor file used next
    code, _, err = predict(capsys, "--device", "pixel", "--arch", "topformer-tiny", "--size", str(SIZE),
                           "--predictor", str(profiled / f"{ST.stem}.predictor.json"))
    assert code == 2 and "fitted for device local, not pixel" in err


def _rows_now(out: Path) -> int:
    path = tbl.ops_path(out, ST, write=True)
    return len(pd.read_csv(path)) if path.exists() else 0


@pytest.mark.slow
def test_killed_profile_resumes_without_losing_or_duplicating_rows(tmp_path):
    out = tmp_path / "tables"
    args = profile_args(out, 8, 2)
    proc = subprocess.Popen([sys.executable, "-m", "latency.cli.profile", *args], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while _rows_now(out) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its conversion workers, mid-run
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = tbl.read_ops(out, ST)
    assert 2 <= len(before) < 8
    res = run_cli("latency.cli.profile", *args)
    assert res.returncode == 0, res.stderr[-2000:]
    after = tbl.read_ops(out, ST)
    planned = [op.key for op in interleave(designed_sample(SIZE))[:8]]
    assert sorted(after["key"]) == sorted(planned)  # nothing lost, nothing duplicated (read_ops rejects dups)
    kept = after.set_index("key").loc[list(before["key"])]
    assert list(kept["timestamp"]) == list(before["timestamp"])  # rows written before the kill are untouched
    passes = pd.read_csv(tbl.passes_path(out, ST))  # ... and their first timing is pass 0
    first = passes[passes["pass"] == 0].set_index("key").loc[list(before["key"])]
    assert list(first["median_ms"]) == pytest.approx(list(before["median_ms"]))
    assert passes.groupby("key")["pass"].nunique().eq(3).all() and len(passes) == 24
    assert not list(out.glob(".*.tmp"))


@pytest.mark.slow
def test_more_passes_retime_each_operator_once_more_and_a_rerun_times_nothing(profiled, tmp_path, capsys):
    """--passes 4 on a finished 3-pass table: one more timing per operator (from the cache: nothing converted)
    and the table's median follows; the same command again has nothing left to time."""
    from latency.cli.profile import main

    out = tmp_path / "four"
    shutil.copytree(profiled, out, ignore=shutil.ignore_patterns("*.predictor.json"))
    converted = tbl.read_json(tbl.meta_path(out, ST))["timing"]["conversions"]  # the fixture's, cumulative
    for _ in range(2):
        code = main(profile_args(out, 7, 4) + ["--passes", "4", "--json"])
        summary = json.loads(capsys.readouterr().out)["local"]
        passes = pd.read_csv(tbl.passes_path(out, ST))
        assert code == 0 and summary["passes"] == 4 and summary["measured_this_run"] == 0
        assert summary["timing"]["conversions"] == converted and len(passes) == 28
    rows = tbl.read_ops(out, ST).set_index("key")
    med = passes.groupby("key")["median_ms"].median()
    assert list(rows.loc[med.index, "median_ms"]) == pytest.approx(list(med))
    meta = tbl.read_json(tbl.meta_path(out, ST))
    assert [d["phase"] for d in meta["drift"]].count("retime3") == 2


@pytest.mark.slow
def test_report_measures_fresh_heldout_subnets_and_a_retest_only_retimes_them(profiled, tmp_path, capsys):
    """etf-predictor-report end to end: whole networks converted and timed beside TopFormer-Tiny, metrics per
    basis, the held-out rows and seed ledger written; --retest times the same subnets again, stores nothing, and a
    second report within the window measures no new subnet (its held-out file is left as it was). Two of each:
    the fewest the report accepts (conversions are most of this test's time)."""
    from latency.cli.profile import main as profile_main
    from latency.cli.report import main as report_main
    from latency.report import heldout_path, seeds_path

    out = tmp_path / "rep"
    shutil.copytree(profiled, out, ignore=shutil.ignore_patterns("*.predictor.json"))
    assert profile_main(["--device", "local", "--size", str(SIZE), "--out", str(out), "--e2e", "2", "--e2e-only",
                         "--runs", "3", "--warmup", "1", "--no-progress"]) == 0
    capsys.readouterr()
    args = ["--device", "local", "--size", str(SIZE), "--tables", str(out), "--n", "2", "--runs", "3",
            "--warmup", "1", "--no-progress", "--json"]
    assert report_main(args + ["--retest", "2"]) == 0
    rep = json.loads(capsys.readouterr().out)
    held = pd.read_csv(heldout_path(str(out), ST))
    assert rep["heldout"] == 2 and len(held) == 2 and (held["ratio"] > 0).all()
    assert set(held["seed"]) <= set(tbl.read_json(seeds_path(str(out), ST))[tbl.ops_fingerprint(out, ST)])
    paired = rep["metrics"]["paired_ratio"]["predictor"]
    assert paired["n"] == 2 and 0 <= paired["within_10_pct"] <= 100 and paired["mape_pct"] > 0
    ag = rep["retest"]["agreement"]
    assert ag["n"] == 2 and 0 <= ag["within_5_pct"] <= ag["within_10_pct"] <= 100
    assert ag["within_5_pct"] <= ag["ceiling_within_5_pct"] and ag["abs_diff_median_pct"] >= 0
    assert rep["retest"]["predictor_vs_first"]["within_10_pct"] == paired["within_10_pct"]
    assert rep["retest"]["predictor_vs_second"]["n"] == 2
    before = heldout_path(str(out), ST).read_bytes()
    assert report_main(args + ["--retest", "1"]) == 0
    rep2 = json.loads(capsys.readouterr().out)
    assert rep2["retest"]["agreement"]["n"] == 1 and heldout_path(str(out), ST).read_bytes() == before
    # rows of an earlier table expire but stay in the file; the new table draws a seed none of them used
    tbl.write_csv_atomic(held.assign(table_fingerprint="an-earlier-table"), heldout_path(str(out), ST))
    assert report_main(args) == 0
    assert json.loads(capsys.readouterr().out)["heldout"] == 2
    kept = pd.read_csv(heldout_path(str(out), ST))
    assert len(kept) == 4 and list(kept["seed"][:2]) == list(held["seed"])
    assert not set(kept["seed"][2:]) & set(held["seed"])


@pytest.mark.slow
def test_two_devices_profile_in_parallel_into_one_table_each(profiled, tmp_path, monkeypatch, capsys):
    """``--device local,cpu2`` (a second local-transport device from the device config): one table per device;
    the operators come from the shared conversion cache, so nothing is converted again."""
    from latency.cli.profile import main

    config = tmp_path / "devices.toml"
    config.write_text('[devices.cpu2]\ntransport = "local"\nthreads = 1\ncooldown_s = 0.0\n')
    monkeypatch.setenv("ETF_DEVICES", str(config))
    out = tmp_path / "two"
    code = main(profile_args(out, 3, 3) + ["--device", "local,cpu2", "--cache", str(profiled / "cache"), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and set(summary) == {"local", "cpu2"}
    a, b = tbl.read_ops(out, ST), tbl.read_ops(out, Setting("cpu2", SIZE, 1))
    assert list(a["key"]) == list(b["key"]) and len(a) == 3
    assert set(a["device"]) == {"local"} and set(b["device"]) == {"cpu2"}
    assert summary["local"]["timing"]["conversions"] == 0


@pytest.mark.slow
def test_profiling_another_head_writes_another_table_whose_predictor_refuses_the_first(profiled, tmp_path, capsys):
    """--head labels at 64 px: its own table (the labels operator measured as the 7th planned operator, the
    rest from the shared conversion cache), its own predictor; each predictor refuses the other head."""
    from latency.cli.profile import main

    out = tmp_path / "labels"
    shutil.copytree(profiled, out, ignore=shutil.ignore_patterns("*.predictor.json"))
    code = main(profile_args(out, 7, 4) + ["--head", "labels", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["local"]["setting"] == LABELS.to_dict()
    assert summary["local"]["timing"]["conversions"] == 1  # only the labels operator was new
    rows = tbl.read_ops(out, LABELS)
    assert list(rows["key"]) == [op.key for op in interleave(designed_sample(SIZE, head="labels"))[:7]]
    assert rows["kind"].iloc[-1] == "labels" and set(rows["head"]) == {"labels"}
    assert tbl.ops_path(out, LABELS) != tbl.ops_path(out, ST) and len(tbl.read_ops(out, ST)) == 7
    for asked, other in ((ST, LABELS), (LABELS, ST)):
        code, res, err = predict(capsys, "--device", "local", "--arch", "topformer-tiny", "--size", str(SIZE),
                                 "--tables", str(out), "--head", asked.head, "--json")
        assert code == 0, err
        assert json.loads(res)["setting"] == asked.to_dict()
        code, _, err = predict(capsys, "--device", "local", "--arch", "topformer-tiny", "--size", str(SIZE),
                               "--head", other.head, "--predictor", str(out / f"{asked.stem}.predictor.json"))
        assert code == 2 and f"fitted for head {asked.head}, not {other.head}" in err
        assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["int8"])
def test_a_quantized_setting_has_its_own_table_of_quantized_operators(profiled, tmp_path, capsys, precision):
    """--precision int8 at 64 px: every planned operator (multi-input pool, injection and head included)
    converted and quantized like a shipped file of that precision, into its own table and cache files; its
    predictor refuses fp32 and the fp32 predictor refuses it. (fp16 takes the same path with another recipe,
    android_bench.export.quantize.recipe_for, whose fp16 file tests/test_precision.py checks: one conversion
    run here is ~18 s of the suite.)"""
    from android_bench.export.oplist import tflite_ops
    from latency.cli.profile import main
    from latency.export_op import cache_path

    quant = Setting("local", SIZE, 1, precision)
    out = tmp_path / precision
    shutil.copytree(profiled, out, ignore=shutil.ignore_patterns("*.predictor.json"))
    code = main(profile_args(out, 7, 4) + ["--precision", precision, "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["local"]["setting"] == quant.to_dict()
    assert summary["local"]["timing"]["conversions"] == 8  # 7 operators + the reference, quantized from the fp32 files
    rows = tbl.read_ops(out, quant)
    assert len(rows) == 7 and set(rows["precision"]) == {precision} and (rows["median_ms"] > 0).all()
    names = {op.name for key in rows["key"] for op in tflite_ops(cache_path(out / "cache", key, precision))}
    assert ("QUANTIZE" in names) == (precision == "int8") and ("DEQUANTIZE" in names), names
    assert cache_path(out / "cache", rows["key"].iloc[0], precision) != cache_path(out / "cache", rows["key"].iloc[0])
    code, res, err = predict(capsys, "--device", "local", "--arch", "topformer-tiny", "--size", str(SIZE),
                             "--tables", str(out), "--precision", precision, "--json")
    assert code == 0, err
    assert json.loads(res)["setting"] == quant.to_dict()
    code, _, err = predict(capsys, "--device", "local", "--arch", "topformer-tiny", "--size", str(SIZE),
                           "--precision", "fp32", "--predictor", str(out / f"{quant.stem}.predictor.json"))
    assert code == 2 and f"precision {precision}, not fp32" in err


@pytest.fixture(scope="module")
def profiled14(profiled, tmp_path_factory) -> Path:
    """The 7-operator table extended to 14 (3 MBConv and 3 pools among them: enough for a forest and a line)."""
    from latency.cli.profile import main

    out = tmp_path_factory.mktemp("tables14")
    shutil.copytree(profiled, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.predictor.json"))
    assert main(profile_args(out, 14, 7)) == 0
    return out


@pytest.mark.slow
def test_adaptive_sampling_is_a_loop_that_refits_between_rounds(profiled14, tmp_path):
    """Two adaptive pools with one per round: two batches, the second picked after the first was measured."""
    from latency.profile import ProfileSettings, Profiler

    out = tmp_path / "adaptive"
    shutil.copytree(profiled14, out, ignore=shutil.ignore_patterns("*.predictor.json"))
    prof = Profiler(["local"], ProfileSettings(size=SIZE, tables_dir=str(out), batch=1, runs=3, warmup=1,
                                               adaptive={"pool": 2}, e2e=0), progress=False)
    picks_seen = []
    real = prof.adaptive_picks

    def spy(kind, k, pool, step=None):
        picks = real(kind, k, pool, step)
        picks_seen.append((len(prof.tables["local"]), [op.key for op in picks]))
        return picks
    prof.adaptive_picks = spy
    prof.run_adaptive()
    rows = tbl.read_ops(out, ST)
    added = rows[rows["phase"] == "adaptive"]
    assert len(added) == 2 and set(added["kind"]) == {"pool"} and added["batch"].nunique() == 2
    assert [(n, len(keys)) for n, keys in picks_seen] == [(14, 1), (15, 1), (16, 0)]  # refitted on 14, then 15 rows


def test_a_batch_whose_reference_ran_off_regime_is_timed_again(profiled14, tmp_path, monkeypatch):
    """The reference operator ran 2x slower than the device's fastest batch: the batch is timed again and the
    rows come from the second timing (latency/profile.py, off-regime batches)."""
    from latency.profile import ProfileSettings, Profiler

    out = tmp_path / "regime"
    shutil.copytree(profiled14, out, ignore=shutil.ignore_patterns("*.predictor.json"))
    prof = Profiler(["local"], ProfileSettings(size=SIZE, tables_dir=str(out), runs=3, warmup=1, e2e=0),
                    progress=False)
    fastest = prof._fastest_ref("local")
    retried_before = prof.meta["local"]["timing"].get("retried_batches", 0)  # the fixture's own run may have retried
    monkeypatch.setattr("latency.profile.time.sleep", lambda s: None)
    calls = []

    def fake(paths, interleave=False):
        slow = not calls
        calls.append(len(paths))
        stats = [type("S", (), {"runtime": "x", "threads": 1, "median_ms": 9.0 if slow else 1.0, "mean_ms": 1.0,
                                "std_ms": 0.0, "min_ms": 1.0, "max_ms": 1.0, "cv": 0.0, "runs": 3, "warmup": 1})()
                 for _ in paths]
        return {"local": (stats, [2 * fastest if slow else fastest])}
    prof._measure_all = fake
    from latency.operators import parse_key
    pools = [parse_key(k) for k in prof.tables["local"]["key"] if k.startswith("pool")]
    prof.tables["local"] = prof.tables["local"][~prof.tables["local"]["key"].str.startswith("pool")]
    prof.run_batch(pools, "design")
    rows = prof.tables["local"]
    assert calls == [len(pools), len(pools)] and prof.meta["local"]["timing"]["retried_batches"] == retried_before + 1
    assert (rows[rows["kind"] == "pool"]["median_ms"] == 1.0).all()


@pytest.mark.slow
def test_transfer_to_two_threads_measures_a_subset_maps_the_rest_and_a_full_run_replaces_the_mapped_rows(
        profiled14, tmp_path, capsys):
    """--threads 2 --transfer-from the 1-thread table: nothing converted again (one converted file serves every
    thread count), only the transfer subset measured on 2 threads, the rest mapped and marked; the predictor says
    where it came from; a later run without --transfer-from measures the mapped rows instead."""
    from latency.cli.profile import main
    from latency.transfer import MAPPED_PHASE, MEASURED_PHASE

    two = Setting("local", SIZE, 2)
    out = tmp_path / "transfer"
    shutil.copytree(profiled14, out, ignore=shutil.ignore_patterns("*.predictor.json"))
    source = tbl.read_ops(out, ST)
    code = main(profile_args(out, 14, 7) + ["--threads", "2", "--transfer-from", ST.stem, "--transfer-ops", "4",
                                            "--json"])
    summary = json.loads(capsys.readouterr().out)["local"]
    assert code == 0 and summary["setting"] == two.to_dict()
    assert summary["predictor_operators"] == ST.stem  # the folder's 1-thread table is what its predictor sums
    assert summary["timing"]["conversions"] == 0
    assert [r.split(" is ")[-1] for r in summary["reduced_reasons"]] == ["reduced; complete it first"]  # --limit 14
    rows = tbl.read_ops(out, two)
    assert set(rows["key"]) == set(source["key"]) and set(rows["threads"]) == {2}
    mapped, measured = rows[rows["phase"] == MAPPED_PHASE], rows[rows["phase"] == MEASURED_PHASE]
    assert len(mapped) == 2 and set(mapped["kind"]) == {"mbconv", "pool"} and len(measured) == 12
    x = summary["transfer"]
    assert (x["measured_ops"], x["mapped_ops"], x["from_setting"]) == (12, 2, ST.to_dict())
    assert set(x["maps"]) >= {"mbconv", "pool"}
    code, res, err = predict(capsys, "--device", "local", "--arch", "topformer-tiny", "--size", str(SIZE),
                             "--tables", str(out), "--threads", "2", "--json")
    assert code == 0, err
    info = json.loads(res)
    assert info["setting"] == two.to_dict() and info["transfer"]["mapped_ops"] == 2
    assert info["operators_from"] == ST.stem
    code = main(profile_args(out, 14, 7) + ["--threads", "2", "--json"])
    summary = json.loads(capsys.readouterr().out)["local"]
    rows = tbl.read_ops(out, two)
    assert code == 0 and "transfer" not in summary and summary["measured_this_run"] == 2
    assert not (rows["phase"] == MAPPED_PHASE).any() and len(rows) == 14
    assert "transfer" not in json.loads(tbl.meta_path(out, two).read_text())


def test_correction_subnets_start_with_the_smallest_config_and_the_presets():
    from latency.profile import correction_subnets
    from supernet.presets import PRESETS
    from supernet.space import TABLE1

    subnets = correction_subnets(7)
    keys = [c.key() for _, c in subnets]
    assert keys[:4] == [TABLE1.min_config().key(), *(c.key() for c in PRESETS.values())]
    assert [s for s, _ in subnets[:4]] == [None] * 4 and all(s is not None for s, _ in subnets[4:])
    assert len(set(keys)) == 7
    assert [c.key() for _, c in correction_subnets(2)] == keys[:2]


@pytest.mark.slow
def test_transformer_operator_export_keeps_the_attention(tmp_path):
    """A zero-initialised projection BN lets the converter delete the attention branch; the table must time it."""
    from latency.export_op import export_operator
    from latency.plan import designed_sample
    from android_bench.export.oplist import op_counts, tflite_ops

    op = designed_sample(SIZE)["transformer"][0]
    counts = op_counts(tflite_ops(export_operator(op, tmp_path / "t.tflite")))
    assert counts.get("BATCH_MATMUL", 0) == 2, counts  # q.k and attn.v


@pytest.mark.slow
def test_interleaved_measurement_gives_each_model_its_neighbouring_reference(profiled):
    from android_bench.device_config import resolve_device
    from latency.export_op import cache_path
    from latency.profile import measure_with_reference, reference_op

    cache = profiled / "cache"
    ref = cache_path(cache, reference_op(SIZE).key)
    models = sorted(p for p in cache.glob("*.tflite") if p != ref)[:2]
    dev = resolve_device("local")
    stats, refs = measure_with_reference(dev, ref, models, runs=3, warmup=1, interleave=True)
    assert len(stats) == len(refs) == 2 and all(s.median_ms > 0 for s in stats) and all(r > 0 for r in refs)
    stats, refs = measure_with_reference(dev, ref, models, runs=3, warmup=1, interleave=False)
    assert len(stats) == 2 and refs[0] == refs[1] > 0
