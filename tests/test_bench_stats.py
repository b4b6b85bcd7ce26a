"""Measurement protocol, statistics, device-condition parsing, and the batch shell script (pure parts)."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

from android_bench.adb_script import HEARTBEAT, build_batch_script, split_batch_output
from android_bench.stats import CV_WARN, MeasureProtocol, parse_governors, parse_temperatures, summarize_times
from etf.common import EtfError


def test_summary_statistics_match_numpy():
    times = [10.0, 11.0, 9.5, 10.5, 30.0]
    s = summarize_times(times, model="m.tflite", device="local", runtime="x", threads=2, warmup=3)
    assert s.median_ms == pytest.approx(np.median(times))
    assert s.mean_ms == pytest.approx(np.mean(times))
    assert s.std_ms == pytest.approx(np.std(times))
    assert (s.min_ms, s.max_ms, s.runs, s.threads, s.warmup) == (9.5, 30.0, 5, 2, 3)
    assert s.cv == pytest.approx(np.std(times) / np.mean(times))


def test_high_variation_warns_and_low_variation_does_not():
    noisy = summarize_times([10, 10, 10, 14], model="a", device="d", runtime="r", threads=1, warmup=0)
    steady = summarize_times([10, 10.1, 9.9, 10], model="a", device="d", runtime="r", threads=1, warmup=0)
    assert noisy.cv > CV_WARN and any("variation" in w for w in noisy.warnings)
    assert steady.cv < CV_WARN and steady.warnings == []


def test_stats_dict_has_the_interface_fields():
    d = summarize_times([1.0, 2.0], model="a", device="d", runtime="r", threads=1, warmup=0).to_dict()
    for key in ("median_ms", "mean_ms", "std_ms", "runs", "device", "cv", "warnings", "governor", "temperature_c"):
        assert key in d


@pytest.mark.parametrize("kwargs", [{"runs": 0}, {"warmup": -1}, {"threads": 0}, {"cooldown_s": -1.0}])
def test_protocol_rejects_bad_settings(kwargs):
    with pytest.raises(EtfError):
        MeasureProtocol(**kwargs)


def test_no_runs_is_an_error():
    with pytest.raises(EtfError):
        summarize_times([], model="a", device="d", runtime="r", threads=1, warmup=0)


def test_governor_and_temperature_parsing():
    assert parse_governors("schedutil\nschedutil\nperformance\n") == "performance,schedutil"
    assert parse_governors("") is None
    # millidegrees and degrees, an unreadable zone's junk, and an implausible reading
    assert parse_temperatures("41000 38500\n45 -273000 oops 999999") == pytest.approx(45.0)
    assert parse_temperatures("") is None


def test_batch_script_runs_in_sh_and_splits_per_model(tmp_path):
    # A fake "benchmark_model" that prints its --graph flag: checks the script's quoting, pinning and markers.
    binary = tmp_path / "benchmark_model"
    binary.write_text('#!/bin/sh\nfor a in "$@"; do echo "arg $a"; done\n[ "$2" = "--num_threads=2" ] || exit 3\n')
    binary.chmod(0o755)
    (tmp_path / "m0.tflite").write_bytes(b"x")
    (tmp_path / "m1.tflite").write_bytes(b"y")
    script = build_batch_script(str(tmp_path), ["m0.tflite", "m1.tflite"], threads=2, runs=7, warmup=2,
                                cpu_mask="1", cooldown_s=0, extra_args=["--verbose=false"])
    text = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, timeout=60).stdout
    sections, finished = split_batch_output(text)
    assert finished and sorted(sections) == [0, 1]
    assert sections[0].exit_code == 0
    assert f"arg --graph={tmp_path}/m0.tflite" in sections[0].output
    assert "arg --num_runs=7" in sections[1].output and "arg --verbose=false" in sections[1].output
    assert not (tmp_path / "m0.tflite").exists()  # the script removes its models at the end


def test_split_ignores_heartbeats_and_reports_a_cut_run():
    text = (f"__ETF_BEGIN__ 0\n__ETF_GOVERNOR__ schedutil schedutil\n__ETF_TEMP__ 41000\nline a\n{HEARTBEAT}\n"
            "line b\n__ETF_END__ 0 0\n__ETF_BEGIN__ 1\n__ETF_GOVERNOR__ \n__ETF_TEMP__ \npartial")
    sections, finished = split_batch_output(text)
    assert not finished
    assert sections[0].output == "line a\nline b\n" and sections[0].exit_code == 0
    assert sections[0].governors.split() == ["schedutil", "schedutil"]
    assert sections[1].exit_code is None and sections[1].output == "partial"
