"""etf-search: bad input gets one line on stderr and exit 2, before any costly work, and writes nothing."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from search.cli.search import main

ROOT = Path(__file__).resolve().parents[1]


def _code(argv: list[str]) -> int:
    """``main``'s exit code; argparse-time errors exit through SystemExit (one line, see etf.args.Parser)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


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
    assert "--supernet: file" in _err_line(capsys)
    assert not out.exists()


def test_missing_data_folder(tmp_path, capsys):
    ckpt = tmp_path / "s.pt"
    ckpt.write_bytes(b"x")
    rc = main(["--target-gflops", "1.0", "--no-export", "--supernet", str(ckpt), "--data", str(tmp_path / "none"),
               "-o", str(tmp_path / "out")])
    assert rc == 2
    assert "--data: folder" in _err_line(capsys)


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
    (["--target-gflops", "1", "--budget", "-3"], "--budget: must be 0 or more"),
    (["--target-gflops", "1", "--size", "0"], "--size: input size must be a multiple of 64"),
    (["--target-gflops", "1", "--size", "96"], "--size: input size must be a multiple of 64"),
    (["--target-gflops", "1", "--minutes", "0"], "--minutes: must be greater than 0"),
    (["--target-gflops", "-1", "--no-export"], "--target-gflops: must be greater than 0"),
    (["--target-gflops", "1", "--no-export", "--start", "no-such-preset"], "unknown preset"),
    (["--target-gflops", "1", "--no-export", "--start", "topformer-base"], "above the target"),
])
def test_bad_arguments(tmp_path, capsys, argv, needle):
    assert _code(argv + ["-o", str(tmp_path / "o")]) == 2
    assert needle in _err_line(capsys)


def test_output_path_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert _code(["--target-gflops", "1", "--no-export", "-o", str(f)]) == 2
    assert "is a file, expected a folder" in _err_line(capsys)
    assert f.read_text() == "x"


def test_both_targets_is_a_usage_error(tmp_path):
    assert main(["--target-ms", "5", "--target-gflops", "1", "-o", str(tmp_path)]) == 2


def test_console_entry_prints_no_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ETF_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "search.cli.search", "--target-gflops", "0.001", "--no-export", "-o",
                           str(tmp_path / "o")], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "infeasible" in proc.stderr and "Traceback" not in proc.stderr


def _formula_tables(d: Path, device: str, size: int) -> None:
    """A latency table whose numbers follow a known formula (test data: FLOPs term + per-operator cost)."""
    import pandas as pd

    from latency import table as tbl
    from latency.operators import decompose
    from latency.setting import Setting
    from latency.plan import designed_sample, interleave
    from supernet.size import model_size
    from supernet.space import TABLE1

    def op_ms(op) -> float:
        return 0.02 + op.flops() * 2e-8

    ops = [{"key": op.key, "kind": op.kind, "phase": "design", "device": device, "device_kind": "local",
            "runtime": "r", "threads": 1, "size": size, "median_ms": op_ms(op), "mean_ms": op_ms(op), "std_ms": 0.0,
            "min_ms": op_ms(op), "max_ms": op_ms(op), "cv": 0.0, "runs": 5, "warmup": 1, "ref_ms": 0.5, "batch": 0,
            "timestamp": "t", "converter": "c", "precision": "fp32", "head": "logits8"}
           for op in interleave(designed_sample(size))]
    e2e = []
    for s in range(1000, 1008):
        cfg = TABLE1.sample(s)
        e2e.append({"arch_key": cfg.key(), "arch_json": cfg.to_json(indent=None), "seed": s, "purpose": "correction",
                    "device": device, "size": size, "flops": model_size(cfg, size).flops,
                    "median_ms": 1.2 * sum(op_ms(op) for op in decompose(cfg, size)) + 0.3, "std_ms": 0.0,
                    "runs": 5, "ref_ms": 0.5, "timestamp": "t", "threads": 1, "precision": "fp32", "head": "logits8"})
    st = Setting(device, size, 1)
    tbl.write_csv_atomic(pd.DataFrame(ops, columns=tbl.OP_COLUMNS), tbl.ops_path(d, st, write=True))
    tbl.write_csv_atomic(pd.DataFrame(e2e, columns=tbl.E2E_COLUMNS), tbl.e2e_path(d, st, write=True))


def test_infeasible_latency_target_names_the_fastest_predicted_latency(tmp_path, capsys):
    pytest.importorskip("latency.predictor", reason="needs the latency branch")
    from latency.predictor import load_for_device
    from search.coordinate_descent import minimum_latency
    from search.pieces import predictor_latency_fn

    tables = tmp_path / "tables"
    _formula_tables(tables, "local", 64)
    from latency.setting import Setting

    _, floor = minimum_latency(predictor_latency_fn(load_for_device(Setting("local", 64, 1), tables)))
    out = tmp_path / "o"
    rc = main(["--target-ms", f"{floor * 0.8:.4f}", "--device", "local", "--tables", str(tables), "--size", "64",
               "--no-export", "-o", str(out)])
    assert rc == 2
    err = _err_line(capsys)
    assert "is infeasible: the smallest predicted latency the search space reaches is" in err
    assert f"{floor:.3f} ms" in err
    assert not out.exists()
