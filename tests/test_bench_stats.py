"""Measurement protocol, statistics, device-condition parsing, and the batch shell script (pure parts)."""
from __future__ import annotations

import os
import shlex
import shutil
import signal
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


# A work dir (from the user's devices TOML) that a shell would split at the space and run the rest of after ';'.
AWKWARD_DIR = "phone tmp;touch INJECTED"
FAKE_BENCHMARK_MODEL = (
    "#!/bin/sh\n"
    "case \"$1\" in --graph=*) ;; *) echo \"ERROR: first arg $1\"; exit 3 ;; esac\n"
    "[ -f \"${1#--graph=}\" ] || { echo \"ERROR: Could not open ${1#--graph=}\"; exit 4; }\n"
    "[ -n \"$ETF_FAKE_SLEEP\" ] && sleep \"$ETF_FAKE_SLEEP\"\n"
    "echo 'count=3 first=1000 curr=1000 min=900 max=1100 avg=1000 std=50'\n"
    "echo 'Inference timings in us: Init: 5000, First inference: 1200, Warmup (avg): 1100, Inference (avg): 1000'\n"
)


def _awkward_work_dir(tmp_path):
    """``tmp/phone tmp;touch INJECTED`` plus a ``tmp/phone`` sibling that an unquoted ``rm -rf`` would remove."""
    (tmp_path / "phone").mkdir()
    (tmp_path / "phone/keep").write_text("not ours")
    work = tmp_path / AWKWARD_DIR
    work.mkdir()
    return work


def _nothing_injected(tmp_path):
    return not list(tmp_path.rglob("INJECTED")) and (tmp_path / "phone/keep").exists()


def test_batch_script_quotes_a_work_dir_with_a_space_and_a_semicolon(tmp_path):
    work = _awkward_work_dir(tmp_path)
    binary = work / "benchmark_model"
    binary.write_text(FAKE_BENCHMARK_MODEL)
    binary.chmod(0o755)
    (work / "m0.tflite").write_bytes(b"x")
    script = build_batch_script(str(work), ["m0.tflite"], threads=1, runs=3, warmup=1, cpu_mask=None, cooldown_s=0)
    run = subprocess.run(["/bin/sh", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    sections, finished = split_batch_output(run.stdout)
    assert finished and sections[0].exit_code == 0, run.stdout + run.stderr
    assert _nothing_injected(tmp_path) and not (work / "m0.tflite").exists()

    # Cut the session: the hang-up trap removes exactly the work dir.
    (work / "m0.tflite").write_bytes(b"x")
    proc = subprocess.Popen(["/bin/sh", "-c", script], cwd=tmp_path, stdout=subprocess.PIPE,
                            env=dict(os.environ, ETF_FAKE_SLEEP="30"), start_new_session=True)
    try:
        assert proc.stdout.readline().startswith(b"__ETF_BEGIN__")  # the trap is set by now
        os.killpg(proc.pid, signal.SIGHUP)
        assert proc.wait(timeout=30) == 129
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stdout.close()
    assert not work.exists() and _nothing_injected(tmp_path)


class _LocalShell:
    """Stands in for adb_shell's device: commands run in /bin/sh here, pushes are copies; records commands."""

    def __init__(self, cwd):
        self.cwd, self.commands = cwd, []

    def _run(self, command):
        self.commands.append(command)
        return subprocess.run(["/bin/sh", "-c", command], cwd=self.cwd, capture_output=True, timeout=60).stdout

    def shell(self, command, **_):
        return self._run(command)

    def streaming_shell(self, command, **_):
        yield self._run(command)

    def push(self, local, remote, st_mode, **_):
        shutil.copyfile(local, remote)
        os.chmod(remote, st_mode & 0o777)

    def close(self):
        pass


def test_adb_device_quotes_every_work_dir_path_it_sends(tmp_path, monkeypatch):
    from android_bench.adb_device import AdbDevice, AdbSettings

    work = _awkward_work_dir(tmp_path)
    binary = tmp_path / "benchmark_model"
    binary.write_text(FAKE_BENCHMARK_MODEL)
    binary.chmod(0o755)
    model = tmp_path / "m.tflite"
    model.write_bytes(b"\0\0\0\0TFL3" + b"\0" * 64)
    device = AdbDevice(AdbSettings(name="fake", address="127.0.0.1:1", cpu_mask=None, benchmark_model=binary,
                                   work_dir=str(work), cooldown_s=0))
    phone = _LocalShell(tmp_path)
    monkeypatch.setattr(device, "_connect", lambda timeout_s=None: phone)
    stats = device.benchmark(model, runs=3, warmup=1)
    assert stats.mean_ms == pytest.approx(1.0) and stats.runs == 3
    assert [p.name for p in work.iterdir()] == []  # the etf-* folder was made inside it and removed
    assert _nothing_injected(tmp_path)
    assert any(c.startswith("mkdir -p ") for c in phone.commands) and any(c.startswith("rm -rf ") for c in phone.commands)
    for command in phone.commands:  # the work dir is never split: each word naming it names all of it
        assert all(str(work) in word for word in shlex.split(command) if "INJECTED" in word), command
