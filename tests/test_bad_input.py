"""Every etf-* command, fed malformed input, fails the way the README promises: exit code 2, exactly one line
on stderr, no traceback, nothing left behind (the output path does not appear, or is unchanged).

The commands come from pyproject's [project.scripts]; each has at least 10 cases (missing/empty/corrupt files,
wrong types and ranges, unknown names, out-of-space configs, zero/negative budgets and sizes, output folders
that cannot be created, a file where a folder is expected). All cases of one command run in one process
through ``tests.equipment.cli_driver`` (importing torch dominates), and the first case of each command also
runs as a real ``python -m`` subprocess. The commands must reject these inputs before any heavy work, so the
whole sweep takes well under a minute.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from latency import table as tbl
from supernet.space import TABLE1

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
#: command -> module (``etf-eval`` -> ``supernet.cli.eval``); the umbrella ``etf`` when its module exists.
MODULES = {name: target.split(":")[0] for name, target in SCRIPTS.items()
           if name != "etf" or importlib.util.find_spec(target.split(":")[0]) is not None}
TABLE_SIZE = 64


# ----------------------------------------------------------------------------------------------------------
# The malformed inputs. Each case: (label, argv, output path that must not appear / must stay unchanged).
# {name} placeholders are filled from the `world` fixture; {out} is a fresh path per case.
# ----------------------------------------------------------------------------------------------------------
TRAIN = ["--data", "{data}", "--dataset", "synthetic", "--iters", "1", "--batch", "2", "--size", "32",
         "--workers", "0", "--no-progress"]
EVAL = ["--ckpt", "{ckpt}", "--arch", "topformer-tiny", "--data", "{data}", "--dataset", "synthetic", "--size", "32",
        "--limit", "1", "--calib-batches", "1", "--calib-batch", "2"]
FINETUNE = ["--supernet", "{ckpt}", "--arch", "topformer-tiny", "--data", "{data}", "--iters", "1", "--batch", "2",
            "--size", "32", "--workers", "0", "--no-progress"]
EXPORT = ["--arch", "topformer-tiny", "--size", "64", "--no-onnx"]
PROFILE = ["--device", "local", "--size", "64", "--limit", "1", "--no-adaptive", "--e2e", "0", "--no-progress"]
PREDICT = ["--device", "local", "--arch", "topformer-tiny", "--size", "64"]
REPORT = ["--device", "local", "--size", "64", "--n", "2", "--no-progress"]
SEARCH = ["--supernet", "{ckpt}", "--data", "{data}", "--dataset", "synthetic", "--size", "64", "--eval-size", "32",
          "--n-calib", "1", "--n-val", "2", "--batch", "2", "--budget", "1", "--quiet"]
GFLOPS = ["--target-gflops", "5", "--no-export"]

CASES: dict[str, list[tuple[str, list[str], str | None]]] = {
    "etf-space": [
        ("no subcommand", [], None),
        ("unknown subcommand", ["bogus"], None),
        ("missing config file", ["show", "{missing}"], None),
        ("corrupt config file", ["show", "{corrupt}"], None),
        ("empty config file", ["show", "{empty}"], None),
        ("config outside the space", ["show", "{cfg_out}"], None),
        ("unknown preset", ["show", "topformer-huge"], None),
        ("folder as config", ["show", "{tmp}"], None),
        ("size 0", ["size", "topformer-tiny", "--size", "0"], None),
        ("size not a number", ["size", "topformer-tiny", "--size", "abc"], None),
        ("zero classes", ["size", "topformer-tiny", "--classes", "0"], None),
        ("seed not a number", ["sample", "--seed", "x"], None),
        ("negative preset size", ["presets", "--size", "-64"], None),
    ],
    "etf-make-synthetic": [
        ("no -o", [], None),
        ("zero train images", ["-o", "{out}", "--train", "0"], "{out}"),
        ("negative val images", ["-o", "{out}", "--val", "-1"], "{out}"),
        ("size too small", ["-o", "{out}", "--size", "4"], "{out}"),
        ("one class", ["-o", "{out}", "--classes", "1"], "{out}"),
        ("too many classes", ["-o", "{out}", "--classes", "999"], "{out}"),
        ("file as output folder", ["-o", "{afile}"], "{afile}"),
        ("output under a file", ["-o", "{afile}/sub"], "{afile}"),
        ("seed not a number", ["-o", "{out}", "--seed", "x"], "{out}"),
        ("train not a number", ["-o", "{out}", "--train", "abc"], "{out}"),
        ("empty output name", ["-o", ""], None),
    ],
    "etf-train": [
        ("unknown torch device", [*TRAIN, "-o", "{out}", "--device", "bogus"], "{out}"),
        ("cuda on a CPU-only torch", [*TRAIN, "-o", "{out}", "--device", "cuda"], "{out}"),
        ("zero iterations", [*TRAIN, "-o", "{out}", "--iters", "0"], "{out}"),
        ("zero batch", [*TRAIN, "-o", "{out}", "--batch", "0"], "{out}"),
        ("zero size", [*TRAIN, "-o", "{out}", "--size", "0"], "{out}"),
        ("negative learning rate", [*TRAIN, "-o", "{out}", "--lr", "-1"], "{out}"),
        ("missing data folder", [*TRAIN, "-o", "{out}", "--data", "{missing}"], "{out}"),
        ("file as data folder", [*TRAIN, "-o", "{out}", "--data", "{afile}"], "{out}"),
        ("unknown dataset", [*TRAIN, "-o", "{out}", "--dataset", "bogus"], "{out}"),
        ("file as output folder", [*TRAIN, "-o", "{afile}"], "{afile}"),
        ("corrupt warm-start checkpoint", [*TRAIN, "-o", "{out}", "--warm-start", "{garbage_pt}"], "{out}"),
        ("missing warm-start checkpoint", [*TRAIN, "-o", "{out}", "--warm-start", "{missing}"], "{out}"),
        ("negative workers", [*TRAIN, "-o", "{out}", "--workers", "-1"], "{out}"),
        ("negative random subnets", [*TRAIN, "-o", "{out}", "--num-random", "-1"], "{out}"),
        ("zero checkpoint interval", [*TRAIN, "-o", "{out}", "--ckpt-every", "0"], "{out}"),
        ("resume with nothing to resume", [*TRAIN, "-o", "{out}", "--resume"], "{out}"),
    ],
    "etf-finetune": [
        ("unknown torch device", [*FINETUNE, "-o", "{out}", "--device", "bogus"], "{out}"),
        ("cuda on a CPU-only torch", [*FINETUNE, "-o", "{out}", "--device", "cuda"], "{out}"),
        ("zero iterations", [*FINETUNE, "-o", "{out}", "--iters", "0"], "{out}"),
        ("zero batch", [*FINETUNE, "-o", "{out}", "--batch", "0"], "{out}"),
        ("zero size", [*FINETUNE, "-o", "{out}", "--size", "0"], "{out}"),
        ("negative learning rate", [*FINETUNE, "-o", "{out}", "--lr", "-1"], "{out}"),
        ("distillation weight above 1", [*FINETUNE, "-o", "{out}", "--distill", "2"], "{out}"),
        ("missing supernet", [*FINETUNE, "-o", "{out}", "--supernet", "{missing}"], "{out}"),
        ("corrupt supernet", [*FINETUNE, "-o", "{out}", "--supernet", "{garbage_pt}"], "{out}"),
        ("unknown preset", [*FINETUNE, "-o", "{out}", "--arch", "topformer-huge"], "{out}"),
        ("config outside the space", [*FINETUNE, "-o", "{out}", "--arch", "{cfg_out}"], "{out}"),
        ("missing data folder", [*FINETUNE, "-o", "{out}", "--data", "{missing}"], "{out}"),
        ("file as output folder", [*FINETUNE, "-o", "{afile}"], "{afile}"),
        ("resume with nothing to resume", [*FINETUNE, "-o", "{out}", "--resume"], "{out}"),
    ],
    "etf-eval": [
        ("unknown torch device", [*EVAL, "--device", "bogus"], None),
        ("cuda on a CPU-only torch", [*EVAL, "--device", "cuda"], None),
        ("--show into an existing file", [*EVAL, "--show", "1", "-o", "{afile}"], "{afile}"),
        ("--show without -o", [*EVAL, "--show", "1"], None),
        ("negative --show", [*EVAL, "--show", "-1", "-o", "{out}"], "{out}"),
        ("missing checkpoint", [*EVAL, "--ckpt", "{missing}"], None),
        ("corrupt checkpoint", [*EVAL, "--ckpt", "{garbage_pt}"], None),
        ("empty checkpoint", [*EVAL, "--ckpt", "{empty}"], None),
        ("config outside the space", [*EVAL, "--arch", "{cfg_out}"], None),
        ("corrupt config", [*EVAL, "--arch", "{corrupt}"], None),
        ("unknown preset", [*EVAL, "--arch", "topformer-huge"], None),
        ("missing data folder", [*EVAL, "--data", "{missing}"], None),
        ("negative calibration batches", [*EVAL, "--calib-batches", "-1"], None),
        ("zero limit", [*EVAL, "--limit", "0"], None),
        ("zero size", [*EVAL, "--size", "0"], None),
        ("unknown dataset", [*EVAL, "--dataset", "bogus"], None),
    ],
    "etf-export": [
        ("size not a multiple of 64", [*EXPORT, "-o", "{out}", "--size", "96"], "{out}"),
        ("size 0", [*EXPORT, "-o", "{out}", "--size", "0"], "{out}"),
        ("size not a number", [*EXPORT, "-o", "{out}", "--size", "abc"], "{out}"),
        ("missing config", [*EXPORT, "-o", "{out}", "--arch", "{missing}"], "{out}"),
        ("config outside the space", [*EXPORT, "-o", "{out}", "--arch", "{cfg_out}"], "{out}"),
        ("corrupt config", [*EXPORT, "-o", "{out}", "--arch", "{corrupt}"], "{out}"),
        ("empty arch", [*EXPORT, "-o", "{out}", "--arch", ""], "{out}"),
        ("missing weights", [*EXPORT, "-o", "{out}", "--weights", "{missing}"], "{out}"),
        ("corrupt weights", [*EXPORT, "-o", "{out}", "--weights", "{garbage_pt}"], "{out}"),
        ("empty weights", [*EXPORT, "-o", "{out}", "--weights", "{empty}"], "{out}"),
        ("zero classes", [*EXPORT, "-o", "{out}", "--classes", "0"], "{out}"),
        ("file as output folder", [*EXPORT, "-o", "{afile}"], "{afile}"),
        ("output under a file", [*EXPORT, "-o", "{afile}/sub"], "{afile}"),
    ],
    "etf-bench": [
        ("missing model", ["{missing}"], None),
        ("corrupt .tflite", ["{garbage_tflite}"], None),
        ("empty .tflite", ["{empty_tflite}"], None),
        ("unknown model extension", ["{afile}"], None),
        ("folder as model", ["{tmp}"], None),
        ("zero runs", ["{garbage_tflite}", "--runs", "0"], None),
        ("negative warm-up", ["{garbage_tflite}", "--warmup", "-1"], None),
        ("zero threads", ["{garbage_tflite}", "--threads", "0"], None),
        ("negative cooldown", ["{garbage_tflite}", "--cooldown", "-1"], None),
        ("unknown device", ["{garbage_tflite}", "--device", "bogus"], None),
        ("cooldown_s not a number in the TOML", ["{garbage_tflite}", "--config", "{toml_cooldown}", "--device",
                                                 "slow"], None),
        ("corrupt TOML", ["{garbage_tflite}", "--config", "{toml_corrupt}", "--device", "x"], None),
        ("missing TOML", ["{garbage_tflite}", "--config", "{missing}", "--device", "x"], None),
    ],
    "etf-devices": [
        ("missing TOML", ["--config", "{missing}"], None),
        ("corrupt TOML", ["--config", "{toml_corrupt}"], None),
        ("cooldown_s not a number (local)", ["--config", "{toml_cooldown}"], None),
        ("cooldown_s not a number (tcp)", ["--config", "{toml_cooldown_tcp}"], None),
        ("negative cooldown_s", ["--config", "{toml_cooldown_negative}"], None),
        ("zero threads", ["--config", "{toml_threads}"], None),
        ("unknown key", ["--config", "{toml_unknown_key}"], None),
        ("unknown transport", ["--config", "{toml_transport}"], None),
        ("devices not tables", ["--config", "{toml_not_tables}"], None),
        ("folder as TOML", ["--config", "{tmp}"], None),
        ("empty config path", ["--config", ""], None),
        ("unknown option", ["--bogus"], None),
        ("stray argument", ["x"], None),
    ],
    "etf-profile": [
        ("size not a multiple of 64", [*PROFILE, "--out", "{out}", "--size", "96"], "{out}"),
        ("size 0", [*PROFILE, "--out", "{out}", "--size", "0"], "{out}"),
        ("zero workers", [*PROFILE, "--out", "{out}", "--workers", "0"], "{out}"),
        ("zero batch", [*PROFILE, "--out", "{out}", "--batch", "0"], "{out}"),
        ("zero runs", [*PROFILE, "--out", "{out}", "--runs", "0"], "{out}"),
        ("zero passes", [*PROFILE, "--out", "{out}", "--passes", "0"], "{out}"),
        ("negative warm-up", [*PROFILE, "--out", "{out}", "--warmup", "-1"], "{out}"),
        ("zero time budget", [*PROFILE, "--out", "{out}", "--budget-min", "0"], "{out}"),
        ("negative time budget", [*PROFILE, "--out", "{out}", "--budget-min", "-5"], "{out}"),
        ("unknown device", [*PROFILE, "--out", "{out}", "--device", "bogus"], "{out}"),
        ("repeated device", [*PROFILE, "--out", "{out}", "--device", "local,local"], "{out}"),
        ("empty device", [*PROFILE, "--out", "{out}", "--device", ""], "{out}"),
        ("file as tables folder", [*PROFILE, "--out", "{afile}"], "{afile}"),
        ("file as cache folder", [*PROFILE, "--out", "{out}", "--cache", "{afile}"], "{out}"),
        ("negative e2e", [*PROFILE, "--out", "{out}", "--e2e", "-1"], "{out}"),
        ("zero limit", [*PROFILE, "--out", "{out}", "--limit", "0"], "{out}"),
        ("zero threads", [*PROFILE, "--out", "{out}", "--threads", "0"], "{out}"),
        ("unknown mbconv plan", [*PROFILE, "--out", "{out}", "--mbconv", "bogus"], "{out}"),
        ("negative adaptive MBConv count", [*PROFILE, "--out", "{out}", "--adaptive-mbconv", "-1"], "{out}"),
        ("transfer from no table", [*PROFILE, "--out", "{out}", "--transfer-from", "{missing}.csv"], "{out}"),
        ("transfer from a corrupt table", [*PROFILE, "--out", "{out}", "--transfer-from", "{corrupt_table}"], "{out}"),
        ("transfer from the same setting", [*PROFILE, "--out", "{tables}", "--threads", "1", "--transfer-from",
                                            "local_64_t1_fp32_logits8"], "{tables}"),
        ("transfer from another size", [*PROFILE, "--out", "{out}", "--size", "128", "--transfer-from",
                                        "{tables}/local_64_t1_fp32_logits8.csv"], "{out}"),
        ("transfer with --e2e-only", [*PROFILE, "--out", "{out}", "--e2e-only", "--transfer-from",
                                      "{tables}/local_64_t1_fp32_logits8.csv"], "{out}"),
        ("zero transfer operators", [*PROFILE, "--out", "{out}", "--transfer-ops", "0"], "{out}"),
    ],
    "etf-predict": [
        ("malformed operator key in the table", [*PREDICT, "--tables", "{tables_badkey}"], "{tables_badkey}"),
        ("malformed operator kind in the table", [*PREDICT, "--tables", "{tables_badkind}"], "{tables_badkind}"),
        ("missing tables folder", [*PREDICT, "--tables", "{missing}"], None),
        ("file as tables folder", [*PREDICT, "--tables", "{afile}"], "{afile}"),
        ("size not a multiple of 64", [*PREDICT, "--tables", "{tables}", "--size", "96"], "{tables}"),
        ("size 0", [*PREDICT, "--tables", "{tables}", "--size", "0"], "{tables}"),
        ("config outside the space", [*PREDICT, "--tables", "{tables}", "--arch", "{cfg_out}"], "{tables}"),
        ("missing config", [*PREDICT, "--tables", "{tables}", "--arch", "{missing}"], "{tables}"),
        ("corrupt config", [*PREDICT, "--tables", "{tables}", "--arch", "{corrupt}"], "{tables}"),
        ("corrupt predictor file", [*PREDICT, "--tables", "{tables}", "--predictor", "{garbage_pt}"], "{tables}"),
        ("missing predictor file", [*PREDICT, "--tables", "{tables}", "--predictor", "{missing}"], "{tables}"),
        ("device without a table", [*PREDICT, "--tables", "{tables}", "--device", "bogus"], "{tables}"),
    ],
    "etf-predictor-report": [
        ("one held-out subnet", [*REPORT, "--tables", "{tables}", "--n", "1"], "{tables}"),
        ("zero held-out subnets", [*REPORT, "--tables", "{tables}", "--n", "0"], "{tables}"),
        ("zero workers", [*REPORT, "--tables", "{tables}", "--workers", "0"], "{tables}"),
        ("zero batch", [*REPORT, "--tables", "{tables}", "--batch", "0"], "{tables}"),
        ("zero runs", [*REPORT, "--tables", "{tables}", "--runs", "0"], "{tables}"),
        ("negative warm-up", [*REPORT, "--tables", "{tables}", "--warmup", "-1"], "{tables}"),
        ("negative retest count", [*REPORT, "--tables", "{tables}", "--retest", "-1"], "{tables}"),
        ("size not a multiple of 64", [*REPORT, "--tables", "{tables}", "--size", "96"], "{tables}"),
        ("missing tables folder", [*REPORT, "--tables", "{missing}"], None),
        ("malformed operator key in the table", [*REPORT, "--tables", "{tables_badkey}"], "{tables_badkey}"),
        ("malformed operator kind in the table", [*REPORT, "--tables", "{tables_badkind}"], "{tables_badkind}"),
        ("folder as PNG path", [*REPORT, "--tables", "{tables}", "--png", "{tmp}"], "{tables}"),
        ("unknown device", [*REPORT, "--tables", "{tables}", "--device", "bogus"], "{tables}"),
    ],
    "etf-search": [
        ("zero minutes", [*SEARCH, *GFLOPS, "-o", "{out}", "--minutes", "0"], "{out}"),
        ("negative minutes", [*SEARCH, *GFLOPS, "-o", "{out}", "--minutes", "-1"], "{out}"),
        ("size not a multiple of 64", [*SEARCH, "--target-gflops", "5", "-o", "{out}", "--size", "96"], "{out}"),
        ("zero latency target", [*SEARCH, "--target-ms", "0", "--no-export", "-o", "{out}"], "{out}"),
        ("negative FLOPs target", [*SEARCH, "--target-gflops", "-1", "--no-export", "-o", "{out}"], "{out}"),
        ("negative budget", [*SEARCH, *GFLOPS, "-o", "{out}", "--budget", "-1"], "{out}"),
        ("missing supernet", [*SEARCH, *GFLOPS, "-o", "{out}", "--supernet", "{missing}"], "{out}"),
        ("corrupt supernet", [*SEARCH, *GFLOPS, "-o", "{out}", "--supernet", "{garbage_pt}"], "{out}"),
        ("missing data folder", [*SEARCH, *GFLOPS, "-o", "{out}", "--data", "{missing}"], "{out}"),
        ("start config outside the space", [*SEARCH, *GFLOPS, "-o", "{out}", "--start", "{cfg_out}"], "{out}"),
        ("corrupt start config", [*SEARCH, *GFLOPS, "-o", "{out}", "--start", "{corrupt}"], "{out}"),
        ("file as output folder", [*SEARCH, *GFLOPS, "-o", "{afile}"], "{afile}"),
        ("zero eval size", [*SEARCH, *GFLOPS, "-o", "{out}", "--eval-size", "0"], "{out}"),
        ("zero validation images", [*SEARCH, *GFLOPS, "-o", "{out}", "--n-val", "0"], "{out}"),
        ("zero batch", [*SEARCH, *GFLOPS, "-o", "{out}", "--batch", "0"], "{out}"),
        ("negative refine", [*SEARCH, *GFLOPS, "-o", "{out}", "--refine", "-1"], "{out}"),
        ("device without a table", [*SEARCH, "--target-ms", "5", "--no-export", "--tables", "{tables}",
                                    "--device", "bogus", "-o", "{out}"], "{out}"),
        ("malformed operator key in the table", [*SEARCH, "--target-ms", "5", "--no-export", "--tables",
                                                 "{tables_badkey}", "-o", "{out}"], "{out}"),
        ("corrupt predictor file", [*SEARCH, "--target-ms", "5", "--no-export", "--predictor", "{garbage_pt}",
                                    "-o", "{out}"], "{out}"),
    ],
    "etf-demo": [
        ("zero threads", ["--quick", "-o", "{out}", "--threads", "0"], "{out}"),
        ("negative threads", ["--quick", "-o", "{out}", "--threads", "-1"], "{out}"),
        ("threads not a number", ["--quick", "-o", "{out}", "--threads", "x"], "{out}"),
        ("file as output folder", ["--quick", "-o", "{afile}"], "{afile}"),
        ("output under a file", ["--quick", "-o", "{afile}/sub"], "{afile}"),
        ("unknown device", ["--quick", "-o", "{out}", "--device", "bogus"], "{out}"),
        ("empty device", ["--quick", "-o", "{out}", "--device", ""], "{out}"),
        ("malformed device name", ["--quick", "-o", "{out}", "--device", "a b"], "{out}"),
        ("unknown option", ["--quick", "-o", "{out}", "--bogus"], "{out}"),
        ("empty output name", ["--quick", "-o", ""], None),
        ("stray argument", ["--quick", "-o", "{out}", "extra"], "{out}"),
    ],
    "etf-record": [
        ("missing model", ["{missing}", "--tables", "{tables}"], "{tables}"),
        ("model that is not an etf export", ["{garbage_tflite}", "--tables", "{tables}"], "{tables}"),
        ("corrupt export.json", ["{export_corrupt}/model.tflite", "--tables", "{tables}"], "{tables}"),
        ("export with another class count", ["{export_5cls}/model.tflite", "--tables", "{tables}"], "{tables}"),
        ("folder as model", ["{tmp}", "--tables", "{tables}"], "{tables}"),
        ("no model", ["--tables", "{tables}"], "{tables}"),
        ("zero rounds", ["{export_5cls}/model.tflite", "--tables", "{tables}", "--rounds", "0"], "{tables}"),
        ("zero runs", ["{export_5cls}/model.tflite", "--tables", "{tables}", "--runs", "0"], "{tables}"),
        ("negative warm-up", ["{export_5cls}/model.tflite", "--tables", "{tables}", "--warmup", "-1"], "{tables}"),
        ("zero threads", ["{export_5cls}/model.tflite", "--tables", "{tables}", "--threads", "0"], "{tables}"),
        ("malformed device name", ["{export_5cls}/model.tflite", "--tables", "{tables}", "--device", "a b"],
         "{tables}"),
        ("missing tables folder", ["{export_5cls}/model.tflite", "--tables", "{missing}"], None),
        ("file as tables folder", ["{export_5cls}/model.tflite", "--tables", "{afile}"], "{afile}"),
    ],
    "etf": [  # `etf` alone lists the commands (exit 0), so it is not among the bad inputs
        ("unknown command", ["bogus"], None),
        ("unknown option", ["--bogus"], None),
        ("bad argument to a command", ["space", "size", "topformer-tiny", "--size", "0"], None),
    ],
}


# ----------------------------------------------------------------------------------------------------------
# The files the cases point at
# ----------------------------------------------------------------------------------------------------------
def _write_tables(folder: Path, mutate: str | None = None) -> Path:
    """A small valid latency table for ``local`` at 64 px (the predictor tests' known-formula rows), optionally
    with one malformed operator ``key`` or ``kind``."""
    from latency.setting import make_setting
    from tests.test_latency_predictor import _e2e_rows, _op_rows

    setting = make_setting("local", TABLE_SIZE)
    ops, e2e = _op_rows(), _e2e_rows(range(6))
    for frame in (ops, e2e):
        frame["device"] = "local"
        if "threads" in frame.columns:
            frame["threads"] = setting.threads
    if mutate == "key":
        ops.loc[3, "key"] = "mbconv|not-a-key"
    elif mutate == "kind":
        ops.loc[3, "kind"] = "warp-drive"
    tbl.write_csv_atomic(ops, tbl.ops_path(folder, setting, write=True))
    tbl.write_csv_atomic(e2e, tbl.e2e_path(folder, setting, write=True))
    return folder


def _untrained_checkpoint(path: Path) -> Path:
    """A loadable etf-train checkpoint of an untrained 5-class supernet (seconds to write; training the shared
    tiny_ckpt costs far more and no case here needs trained weights: every one must fail before using them)."""
    from supernet.model import TopFormerSupernet
    from supernet.training.checkpoint import save_checkpoint

    net = TopFormerSupernet(num_classes=5)
    save_checkpoint({"model": net.state_dict(), "num_classes": 5, "iteration": 0,
                     "args": {"dataset": "synthetic", "size": 32}}, path)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_data) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("bad_input")
    tiny_ckpt = _untrained_checkpoint(tmp / "untrained.pt")
    cfg = json.loads(TABLE1.min_config().to_json())
    cfg["stem_width"] = 17  # not one of the stem widths
    files = {
        "corrupt": "{not json", "empty": "", "empty_tflite": "", "afile": "precious contents\n",
        "garbage_pt": "this is not a checkpoint", "garbage_tflite": "this is not a flatbuffer",
        "cfg_out": json.dumps(cfg),
        "toml_corrupt": "[devices.x\ntransport = ",
        "toml_cooldown": '[devices.slow]\ntransport = "local"\ncooldown_s = "x"\n',
        "toml_cooldown_tcp": '[devices.p]\ntransport = "tcp"\naddress = "127.0.0.1:1"\ncooldown_s = "x"\n',
        "toml_cooldown_negative": '[devices.slow]\ntransport = "local"\ncooldown_s = -1\n',
        "toml_threads": '[devices.p]\ntransport = "local"\nthreads = 0\n',
        "toml_unknown_key": '[devices.p]\ntransport = "local"\ncolour = "red"\n',
        "toml_transport": '[devices.p]\ntransport = "pigeon"\n',
        "toml_not_tables": "devices = 3\n",
        "corrupt_table": "key,kind\nnot,a table\n",
    }
    names = {"corrupt": "corrupt.json", "empty": "empty.json", "empty_tflite": "empty.tflite", "afile": "afile",
             "garbage_pt": "garbage.pt", "garbage_tflite": "garbage.tflite", "cfg_out": "out_of_space.json",
             "corrupt_table": "corrupt_table.csv"}
    paths = {"tmp": str(tmp), "data": str(tiny_data), "ckpt": str(tiny_ckpt), "missing": str(tmp / "nope.json")}
    for key, text in files.items():
        path = tmp / names.get(key, f"{key}.toml")
        path.write_text(text)
        paths[key] = str(path)
    for name, meta in (("export_corrupt", "{"), ("export_5cls", json.dumps({"size": 64, "num_classes": 5}))):
        folder = tmp / name
        folder.mkdir()
        (folder / "model.tflite").write_text("not a flatbuffer")
        (folder / "arch.json").write_text(TABLE1.min_config().to_json())
        (folder / "export.json").write_text(meta)
        paths[name] = str(folder)
    paths["tables"] = str(_write_tables(tmp / "tables"))
    paths["tables_badkey"] = str(_write_tables(tmp / "tables_badkey", "key"))
    paths["tables_badkind"] = str(_write_tables(tmp / "tables_badkind", "kind"))
    return paths


def _fill(text: str, world: dict[str, str], out: str) -> str:
    return text.format(**world, out=out)


def _snapshot(path: str | None) -> object:
    """What is at ``path``: None if nothing, a file's hash, or a folder's sorted (name, hash) listing."""
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        return None
    if p.is_file():
        return hashlib.sha1(p.read_bytes()).hexdigest()
    return sorted((str(f.relative_to(p)), hashlib.sha1(f.read_bytes()).hexdigest() if f.is_file() else "dir")
                  for f in p.rglob("*"))


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ETF_DEVICES": str(ROOT / "nonexistent-devices.toml")}
    env.pop("ETF_DEBUG", None)
    return env


def _driver(module: str, cases: list[list[str]], timeout: float, case_timeout: int = 0) -> list[dict]:
    """Run ``cases`` through ``tests.equipment.cli_driver`` in one process."""
    job = json.dumps({"module": module, "cases": cases, "timeout": case_timeout})
    try:
        proc = subprocess.run([sys.executable, "-m", "tests.equipment.cli_driver"], input=job, capture_output=True,
                              text=True, cwd=ROOT, env=_env(), timeout=timeout)
    except subprocess.TimeoutExpired:
        return [{"code": "timeout", "stdout": "", "stderr": f"still running after {timeout} s", "traceback": False}]
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _run_command(command: str, world: dict[str, str]) -> list[dict]:
    """All cases of ``command``: through the driver in one process, the first one also as ``python -m``."""
    module = MODULES[command]
    cases = []
    for i, (label, argv, out_path) in enumerate(CASES[command]):
        out = str(Path(world["tmp"]) / f"out-{command}-{i}")
        args = [_fill(a, world, out) for a in argv]
        check = _fill(out_path, world, out) if out_path else None
        cases.append({"label": label, "argv": args, "path": check, "before": _snapshot(check)})
    # ETF_SWEEP_CASE_TIMEOUT=S (diagnosis of code that does real work on bad input): stop each case after S s
    results = _driver(module, [c["argv"] for c in cases], 1500,
                      case_timeout=int(os.environ.get("ETF_SWEEP_CASE_TIMEOUT", "0")))
    real = subprocess.run([sys.executable, "-m", module, *cases[0]["argv"]], capture_output=True, text=True,
                          cwd=ROOT, env=_env(), timeout=300)
    for case, result in zip(cases, results):
        case.update(result, after=_snapshot(case["path"]))
    cases[0]["real"] = {"code": real.returncode, "stderr": real.stderr, "stdout": real.stdout}
    return cases


@pytest.fixture(scope="module")
def outcomes(world) -> dict[str, list[dict]]:
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {cmd: pool.submit(_run_command, cmd, world) for cmd in MODULES}
        return {cmd: f.result() for cmd, f in futures.items()}


def test_every_command_has_at_least_ten_cases():
    assert set(MODULES) <= set(CASES), f"commands without cases: {sorted(set(MODULES) - set(CASES))}"
    short = {cmd: len(CASES[cmd]) for cmd in MODULES if cmd != "etf" and len(CASES[cmd]) < 10}
    assert short == {}


def _problems(case: dict) -> list[str]:
    lines = [line for line in case["stderr"].splitlines() if line.strip()]
    found = []
    if case["traceback"] or "Traceback (most recent call last)" in case["stderr"]:
        found.append("traceback")
    if case["code"] != 2:
        found.append(f"exit {case['code']}")
    if len(lines) != 1:
        found.append(f"{len(lines)} stderr lines")
    if case["after"] != case["before"]:
        found.append(f"left output behind at {case['path']}")
    return found


@pytest.mark.parametrize("command", sorted(CASES))
def test_bad_input_gives_one_line_and_exit_2(command, outcomes):
    if command not in outcomes:
        pytest.skip(f"{command} is not an installed command")
    failures = []
    for case in outcomes[command]:
        problems = _problems(case)
        if problems:
            failures.append(f"{case['label']} {case['argv']}: {', '.join(problems)}\n    "
                            + case["stderr"].strip().replace("\n", "\n    ")[-1500:])
    real = outcomes[command][0]["real"]
    real_lines = [line for line in real["stderr"].splitlines() if line.strip()]
    if real["code"] != 2 or len(real_lines) != 1:
        failures.append(f"python -m {MODULES[command]} (real process): exit {real['code']}, stderr:\n"
                        + real["stderr"][-1500:])
    assert failures == [], "\n".join(failures)


def test_error_lines_name_the_program(outcomes):
    """Each error line starts with the command's name, so a user sees which step of a pipeline failed."""
    wrong = [f"{cmd}: {case['stderr'].strip()}" for cmd, cases in outcomes.items() for case in cases
             if case["code"] == 2 and case["stderr"].strip() and not case["stderr"].lstrip().startswith(cmd)]
    assert wrong == []
