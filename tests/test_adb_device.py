"""The ``adb`` device kind end to end against the loopback ADB peer (adb_shell client, benchmark_model stand-in)."""
from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
from tests._bench_helpers import loopback_phone, tiny_models, write_loopback_config

from tests.equipment.adb_peer import write_benchmark_model_stub
from android_bench.cli.bench import main as bench_main
from android_bench.cli.devices import main as devices_main
from android_bench.device_config import resolve_device
from etf.common import EtfError


pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def models() -> dict[str, Path]:
    return tiny_models()


@pytest.fixture(autouse=True)
def _private_key_and_config(tmp_path, monkeypatch):
    monkeypatch.setenv("ETF_ADB_KEY", str(tmp_path / "keys" / "adbkey"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("ETF_DEVICES", raising=False)


@pytest.fixture
def phone(tmp_path):
    """A loopback phone: the peer, its sandbox, and a devices TOML naming it ``loop``."""
    root = tmp_path / "device"
    stub = write_benchmark_model_stub(tmp_path / "benchmark_model_stub")
    with loopback_phone(root) as peer:
        cfg = write_loopback_config(tmp_path / "devices.toml", peer.address, stub)
        yield peer, root, cfg


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / "data/local/tmp").rglob("*"))


def test_etf_bench_on_the_loopback_phone_matches_local_fields(models, phone, capsys):
    peer, root, cfg = phone
    assert bench_main([str(models["tflite"]), "--device", "loop", "--config", str(cfg), "--runs", "15",
                       "--warmup", "2", "--json"]) == 0
    remote = json.loads(capsys.readouterr().out)
    assert bench_main([str(models["tflite"]), "--runs", "15", "--warmup", "2", "--json"]) == 0
    local = json.loads(capsys.readouterr().out)
    assert remote.keys() == local.keys()
    assert remote["device"] == "loop" and remote["runtime"] == "benchmark_model"
    assert remote["runs"] == 15 and remote["warmup"] == 2 and remote["cpu_mask"] == "1"
    assert 0 < remote["min_ms"] <= remote["median_ms"] <= remote["max_ms"]
    assert remote["init_ms"] is not None and remote["peak_memory_mb"] is not None
    assert _leftovers(root) == []  # binary and model removed
    # The key at $ETF_ADB_KEY is the one the phone trusts: the token signature alone let us in.
    assert Path(__import__("os").environ["ETF_ADB_KEY"]).exists()
    assert peer.refused_keys == 0 and not (root / "data/misc/adb/adb_keys").exists()


def test_governor_and_temperature_are_read_on_the_device(models, phone):
    peer, root, cfg = phone
    for cpu, governor in enumerate(["schedutil", "schedutil", "performance"]):
        d = root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_governor").write_text(governor + "\n")
    for zone, milli in enumerate([38000, 43500]):
        d = root / f"sys/class/thermal/thermal_zone{zone}"
        d.mkdir(parents=True)
        (d / "temp").write_text(f"{milli}\n")
    stats = resolve_device("loop", cfg).benchmark(models["tflite"], runs=3, warmup=1)
    assert stats.governor == "performance,schedutil"
    assert stats.temperature_c == pytest.approx(43.5)


def test_benchmark_many_batches_models_in_order(models, phone):
    peer, root, cfg = phone
    shells: list[str] = []
    peer.on_shell = shells.append
    device = resolve_device("loop", cfg)
    device.settings.batch_size = 2
    seen = []
    stats = device.benchmark_many([models["tflite"], models["wide"], models["tflite"]], runs=5, warmup=1,
                                  progress=lambda d, t, n: seen.append((d, n)))
    assert [s.model for s in stats] == ["tiny.tflite", "wide.tflite", "tiny.tflite"]
    assert seen == [(1, "tiny.tflite"), (2, "wide.tflite"), (3, "tiny.tflite")]
    # Two batches of benchmarks -> two benchmark shell round trips (3 models), binary pushed once.
    assert sum("__ETF_BEGIN__" in s for s in shells) == 2
    assert all(s.runs == 5 for s in stats)
    assert _leftovers(root) == []


def test_device_dropping_mid_run_is_one_line_and_leaves_nothing(models, tmp_path, capsys):
    root = tmp_path / "device"
    stub = write_benchmark_model_stub(tmp_path / "stub")
    with loopback_phone(root, drop_when=r"benchmark_model --graph", drop_after_s=0.3) as peer:
        cfg = write_loopback_config(tmp_path / "devices.toml", peer.address, stub)
        code = bench_main([str(models["tflite"]), "--device", "loop", "--config", str(cfg), "--runs", "20000",
                           "--json"])
        err = capsys.readouterr().err.strip()
        assert code == 2
        assert len(err.splitlines()) == 1 and "lost the connection to device 'loop'" in err
        assert "pushed files were removed" in err
        deadline = time.monotonic() + 10
        while _leftovers(root) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _leftovers(root) == []


def test_phone_gone_for_good_cleans_up_on_the_device_side(models, tmp_path, capsys):
    root = tmp_path / "device"
    stub = write_benchmark_model_stub(tmp_path / "stub")
    peer = loopback_phone(root, drop_when=r"benchmark_model --graph", drop_after_s=0.3, vanish_on_drop=True).start()
    try:
        cfg = write_loopback_config(tmp_path / "devices.toml", peer.address, stub, connect_timeout_s=2)
        code = bench_main([str(models["tflite"]), "--device", "loop", "--config", str(cfg), "--runs", "20000"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1
        assert "lost the connection" in err and "could not reach the device again" in err
        # The hang-up trap of the batch script removed the work folder on the device itself.
        deadline = time.monotonic() + 15
        while _leftovers(root) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _leftovers(root) == []
    finally:
        peer.stop()


def test_unreachable_address_fails_fast_with_one_line(models, tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    cfg = write_loopback_config(tmp_path / "devices.toml", f"127.0.0.1:{port}", tmp_path / "stub")
    (tmp_path / "stub").write_text("#!/bin/sh\n")
    assert bench_main([str(models["tflite"]), "--device", "loop", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot reach device 'loop'" in err and "refused" in err


def test_silent_device_times_out_in_seconds(models, tmp_path, capsys):
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def accept_and_stay_silent() -> None:
        try:
            accepted.append(listener.accept())
        except OSError:
            pass

    threading.Thread(target=accept_and_stay_silent, daemon=True).start()
    try:
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        cfg = write_loopback_config(tmp_path / "devices.toml", address, tmp_path / "stub", connect_timeout_s=1)
        (tmp_path / "stub").write_text("#!/bin/sh\n")
        start = time.monotonic()
        assert bench_main([str(models["tflite"]), "--device", "loop", "--config", str(cfg)]) == 2
        elapsed = time.monotonic() - start
        err = capsys.readouterr().err.strip()
        assert "timed out" in err and len(err.splitlines()) == 1
        assert elapsed < 30  # seconds, not minutes
    finally:
        listener.close()


def test_failing_benchmark_model_is_reported_and_cleaned_up(models, tmp_path, capsys):
    root = tmp_path / "device"
    stub = write_benchmark_model_stub(tmp_path / "stub")
    with loopback_phone(root) as peer:
        cfg = write_loopback_config(tmp_path / "devices.toml", peer.address, stub, extra_args=["--bogus_flag=1"])
        assert bench_main([str(models["tflite"]), "--device", "loop", "--config", str(cfg)]) == 2
        err = capsys.readouterr().err.strip()
        assert "Unconsumed cmdline flags" in err and len(err.splitlines()) == 1
        assert _leftovers(root) == []


def test_onnx_and_bad_files_are_refused_before_pushing(models, phone, tmp_path):
    peer, root, cfg = phone
    shells: list[str] = []
    peer.on_shell = shells.append
    device = resolve_device("loop", cfg)
    with pytest.raises(EtfError, match="ONNX models run on the local device only"):
        device.benchmark(models["onnx"])
    bad = tmp_path / "bad.tflite"
    bad.write_text("nope")
    with pytest.raises(EtfError, match="not a TFLite model"):
        device.benchmark(bad)
    assert shells == [] and _leftovers(root) == []


def test_unwritable_work_dir_is_a_clear_error(models, tmp_path):
    root = tmp_path / "device"
    stub = write_benchmark_model_stub(tmp_path / "stub")
    with loopback_phone(root) as peer:
        (root / "data/blocked").write_text("a file where a folder should be")
        cfg = write_loopback_config(tmp_path / "devices.toml", peer.address, stub, work_dir="/data/blocked/tmp")
        with pytest.raises(EtfError, match="cannot create /data/blocked/tmp/etf-"):
            resolve_device("loop", cfg).benchmark(models["tflite"])


def test_missing_benchmark_model_binary_is_explained(models, tmp_path):
    with loopback_phone(tmp_path / "device") as peer:
        cfg = write_loopback_config(tmp_path / "devices.toml", peer.address, tmp_path / "no-such-binary")
        with pytest.raises(EtfError, match="benchmark_model binary .* not found"):
            resolve_device("loop", cfg).benchmark(models["tflite"])


def test_etf_devices_checks_reachability(phone, tmp_path, capsys):
    peer, root, cfg = phone
    cfg.write_text(cfg.read_text() + '\n[devices.gone]\ntransport = "tcp"\naddress = "127.0.0.1:1"\nconnect_timeout_s = 2\n')
    assert devices_main(["--config", str(cfg), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["local"]["reachable"] and rows["loop"]["reachable"]
    assert not rows["gone"]["reachable"] and "cannot reach" in rows["gone"]["status"]
    assert devices_main(["--config", str(cfg)]) == 0
    assert "loop" in capsys.readouterr().out
