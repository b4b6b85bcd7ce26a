"""etf-search: bad input gets one line on stderr and exit 2, before any costly work, and writes nothing."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from search.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_infeasible_flops_target_names_the_floor(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--target-gflops", "0.01", "--no-export", "-o", str(out)]) == 2
    err = _err_line(capsys)
    assert err.startswith("etf-search: error: target 0.01 GFLOPs is infeasible")
    assert "smallest GFLOPs the search space reaches is 0.3" in err
    assert not out.exists()


def test_missing_checkpoint(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["--target-gflops", "1.0", "--no-export", "--supernet", str(tmp_path / "nope.pt"), "--data",
               str(tmp_path), "-o", str(out)])
    assert rc == 2
    assert "supernet checkpoint not found" in _err_line(capsys)
    assert not out.exists()


def test_missing_data_folder(tmp_path, capsys):
    ckpt = tmp_path / "s.pt"
    ckpt.write_bytes(b"x")
    rc = main(["--target-gflops", "1.0", "--no-export", "--supernet", str(ckpt), "--data", str(tmp_path / "none"),
               "-o", str(tmp_path / "out")])
    assert rc == 2
    assert "dataset folder not found" in _err_line(capsys)


def test_unknown_device(tmp_path, capsys):
    assert main(["--target-ms", "50", "--device", "no-such-phone", "-o", str(tmp_path / "o")]) == 2
    assert "unknown device 'no-such-phone'" in _err_line(capsys)


def test_missing_latency_table_or_predictor(tmp_path, capsys):
    rc = main(["--target-ms", "50", "--device", "local", "--tables", str(tmp_path / "no_tables"),
               "-o", str(tmp_path / "o")])
    assert rc == 2
    err = _err_line(capsys)
    assert err.startswith("etf-search: error: ")
    rc = main(["--target-ms", "50", "--predictor", str(tmp_path / "p.json"), "-o", str(tmp_path / "o")])
    assert rc == 2
    _err_line(capsys)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, needle", [
    (["--target-gflops", "1", "--budget", "-3"], "--budget must be >= 0"),
    (["--target-gflops", "1", "--size", "0"], "--size must be at least 1"),
    (["--target-gflops", "-1", "--no-export"], "target must be positive"),
    (["--target-gflops", "1", "--no-export", "--start", "no-such-preset"], "unknown preset"),
    (["--target-gflops", "1", "--no-export", "--start", "topformer-base"], "above the target"),
])
def test_bad_arguments(tmp_path, capsys, argv, needle):
    assert main(argv + ["-o", str(tmp_path / "o")]) == 2
    assert needle in _err_line(capsys)


def test_output_path_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["--target-gflops", "1", "--no-export", "-o", str(f)]) == 2
    assert "is not a directory" in _err_line(capsys)
    assert f.read_text() == "x"


def test_both_targets_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["--target-ms", "5", "--target-gflops", "1", "-o", str(tmp_path)])
    assert exc.value.code == 2


def test_console_entry_prints_no_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ETF_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "search.cli", "--target-gflops", "0.001", "--no-export", "-o",
                           str(tmp_path / "o")], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "infeasible" in proc.stderr and "Traceback" not in proc.stderr
