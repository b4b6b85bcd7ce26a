"""The local device (LiteRT + ONNX Runtime), device config resolution, and the etf-bench / etf-devices CLIs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests._bench_helpers import tiny_models

from tests.equipment.benchmark_model import main as runner_main
from android_bench.bench_output import parse_benchmark_output
from android_bench.cli.bench import main as bench_main
from android_bench.cli.devices import main as devices_main
from android_bench.device_config import resolve_device
from android_bench.local_device import LocalDevice
from etf.common import EtfError

REQUIRED = {"median_ms", "mean_ms", "std_ms", "runs", "device"}


@pytest.fixture(scope="module")
def models() -> dict[str, Path]:
    return tiny_models()


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("ETF_DEVICES", raising=False)


def test_local_tflite_and_onnx_side_by_side(models):
    dev = LocalDevice(threads=1, cooldown_s=0)
    seen = []
    tfl, onnx = dev.benchmark_many([models["tflite"], models["onnx"]], runs=8, warmup=2,
                                   progress=lambda done, total, name: seen.append((done, total, name)))
    assert (tfl.runtime, onnx.runtime) == ("litert-xnnpack", "onnxruntime-cpu")
    assert seen == [(1, 2, "tiny.tflite"), (2, 2, "tiny.onnx")]
    for s in (tfl, onnx):
        assert s.runs == 8 and s.warmup == 2 and s.device == "local"
        assert 0 < s.min_ms <= s.median_ms <= s.max_ms
        assert s.init_ms is not None and s.first_inference_ms is not None


def test_threads_are_passed_through(models):
    s = LocalDevice().benchmark(models["tflite"], runs=3, warmup=1, threads=2)
    assert s.threads == 2


@pytest.mark.parametrize("make", ["missing", "text", "onnx_garbage"])
def test_bad_model_files_are_one_line_errors(tmp_path, make):
    path = {"missing": tmp_path / "nope.tflite", "text": tmp_path / "x.tflite", "onnx_garbage": tmp_path / "x.onnx"}[make]
    if make != "missing":
        path.write_text("this is not a model\n")
    with pytest.raises(EtfError) as info:
        LocalDevice().benchmark(path, runs=2, warmup=0)
    assert "\n" not in str(info.value)


def test_runner_output_is_parsed_like_the_real_tool(models, capsys):
    assert runner_main([f"--graph={models['tflite']}", "--num_runs=12", "--warmup_runs=2", "--num_threads=1",
                        "--min_secs=0", "--warmup_min_secs=0", "--report_peak_memory_footprint=true"]) == 0
    out = parse_benchmark_output(capsys.readouterr().out)
    assert out.count == 12 and out.inference_median_ms is not None and out.peak_memory_mb is not None


def test_runner_rejects_unknown_flags_and_bad_models(tmp_path, capsys):
    assert runner_main(["--graph=x.tflite", "--no_such_flag=1"]) == 1
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 32)
    assert runner_main([f"--graph={bad}"]) == 1
    text = capsys.readouterr().out
    assert "Unconsumed cmdline flags" in text and "should be 'TFL3'" in text


# --- device config -----------------------------------------------------------------------------------------
def test_local_needs_no_config_and_unknown_names_list_known_ones(tmp_path):
    assert resolve_device(None).name == "local"
    cfg = tmp_path / "d.toml"
    cfg.write_text('[devices.pixel]\ntransport = "tcp"\naddress = "127.0.0.1:5555"\n')
    with pytest.raises(EtfError, match=r"unknown device 'nokia'; known devices: local, pixel"):
        resolve_device("nokia", cfg)
    assert resolve_device("pixel", cfg).describe()["address"] == "127.0.0.1:5555"


def test_config_from_env_and_bad_configs(tmp_path, monkeypatch):
    cfg = tmp_path / "env.toml"
    cfg.write_text('[devices.cpu2]\ntransport = "local"\nthreads = 2\n')
    monkeypatch.setenv("ETF_DEVICES", str(cfg))
    assert resolve_device("cpu2").default_threads == 2
    for text, fragment in [("[devices.x\n", "not valid TOML"), ('[devices.x]\nadress = "a:1"\n', "unknown key"),
                           ('[devices.x]\ntransport = "bluetooth"\n', "transport"),
                           ('[devices.x]\ntransport = "tcp"\n', "host:port"),
                           ('[devices.x]\naddress = "h:1"\ncpu_mask = "zz"\n', "cpu_mask")]:
        cfg.write_text(text)
        with pytest.raises(EtfError, match=fragment):
            resolve_device("x")


# --- CLIs ---------------------------------------------------------------------------------------------------
def test_etf_bench_json_single_file(models, capsys):
    assert bench_main([str(models["tflite"]), "--runs", "5", "--warmup", "1", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert REQUIRED <= obj.keys() and obj["runs"] == 5 and obj["device"] == "local"
    assert obj["xnnpack_parts"] == 1 and obj["outside_xnnpack"] == {}  # the whole file in LiteRT's CPU delegate


def test_etf_bench_table_for_several_files(models, capsys):
    assert bench_main([str(models["tflite"]), str(models["onnx"]), "-n", "3", "-w", "1", "--cooldown", "0"]) == 0
    out = capsys.readouterr().out
    assert "tiny.tflite" in out and "tiny.onnx" in out and "median ms" in out and "XNNPACK parts" in out


def test_etf_bench_json_list_for_several_files(models, capsys):
    assert bench_main([str(models["tflite"]), str(models["wide"]), "-n", "3", "--json", "--cooldown", "0"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == ["tiny.tflite", "wide.tflite"]


@pytest.mark.parametrize("args, fragment", [
    (["missing.tflite"], "not found"),
    (["{text}"], "not a TFLite model"),
    (["{tflite}", "--device", "nokia"], "unknown device"),
    (["{tflite}", "--runs", "0"], "--runs"),
])
def test_etf_bench_bad_input_one_line_exit_2(models, tmp_path, capsys, args, fragment):
    text = tmp_path / "t.tflite"
    text.write_text("hello")
    argv = [a.format(text=text, tflite=models["tflite"]) for a in args]
    assert bench_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1 and err.startswith("etf-bench: error:")


def test_etf_devices_lists_local(capsys):
    assert devices_main(["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["name"] == "local" and rows[0]["reachable"] is True


@pytest.mark.slow
def test_etf_bench_as_a_process_exits_2_on_bad_input(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), XDG_CONFIG_HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "android_bench.cli.bench", str(tmp_path / "none.tflite")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"etf-bench: error: model file not found: {tmp_path / 'none.tflite'}"]
