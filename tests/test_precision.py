"""Precision of the exported file (fp32 / fp16 / int8) and the accuracy of the file itself (etf-eval --tflite).

Real parts throughout: litert-torch converts, ai-edge-quantizer quantizes, LiteRT runs. The network is
TopFormer-Tiny with the weights of the session's tiny trained supernet (tests/train_helpers.py: 6 steps, 5
classes), exported at 64x64 and scored on a 64-px synthetic set with the same 5 classes. Two conversions in
all (the fp32 export and the int8 CLI export, ~20-90 s each on a loaded 2-core machine); the fp16 file is
quantized from the fp32 one directly (under a second).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from android_bench.cli.export import main as export_main
from android_bench.evaluate_tflite import evaluate_tflite, input_size, to_label_map
from android_bench.export.calib_data import dataset_calibration, noise_calibration, resolve_dataset
from android_bench.export.convert import export_subnet
from android_bench.export.deploy import build_deployed_model
from android_bench.export.fidelity import labels_of, measure_agreement
from android_bench.export.oplist import delegation
from android_bench.export.quantize import quantize_tflite
from android_bench.litert_runner import TensorInfo, TfliteRunner
from etf.common import EtfError
from supernet.cli.eval import main as eval_main
from supernet.data.datasets import SquareTransform, ValTransform, build_dataset, detect_dataset
from supernet.data.synthetic import make_synthetic
from supernet.presets import PRESETS

SIZE = 64
CLASSES = 5
ARCH = "topformer-tiny"
LOW = SIZE // 8  # the default head (logits8) returns logits at 1/8 resolution; etf-eval --tflite upsamples them


@pytest.fixture(scope="module")
def data64(tmp_path_factory) -> Path:
    """A 64-px synthetic set with the tiny run's 5 classes (12 train images for calibration, 6 val to score)."""
    root = tmp_path_factory.mktemp("syn64") / "syn"
    make_synthetic(root, train=12, val=6, size=SIZE, classes=CLASSES, seed=1)
    return root


@pytest.fixture(scope="module")
def fp32_export(tmp_path_factory, tiny_ckpt):
    out = tmp_path_factory.mktemp("fp32") / "out"
    # the supernet's stored BN statistics, as PyTorch etf-eval --calib-batches 0 uses them
    return export_subnet(ARCH, out, size=SIZE, weights=tiny_ckpt, onnx=False, allow_uncalibrated=True)


# -- fast: conventions and bad input (no conversion) --------------------------------------------------------

def test_square_transform_equals_the_validation_pipeline_on_square_images(data64):
    ds_val = build_dataset("synthetic", data64, "val", SIZE, train=False)
    ds_sq = build_dataset("synthetic", data64, "val", SIZE, train=False, transform=SquareTransform(SIZE))
    torch.testing.assert_close(ds_sq[0]["image"], ds_val[0]["image"], rtol=0, atol=0)
    assert isinstance(ds_val.transform, ValTransform)
    small = build_dataset("synthetic", data64, "val", 32, train=False, transform=SquareTransform(32))
    assert small[0]["image"].shape == (3, 32, 32) and small[0]["label"].shape == (SIZE, SIZE)


def test_detect_dataset_and_resolve(data64, tmp_path):
    assert detect_dataset(data64) == "synthetic" and resolve_dataset(data64, None) == "synthetic"
    assert detect_dataset(tmp_path) is None
    with pytest.raises(EtfError, match="pass --dataset"):
        resolve_dataset(tmp_path, None)
    with pytest.raises(EtfError, match="does not exist"):
        resolve_dataset(tmp_path / "nope", None)


def test_calibration_images_are_training_images_disjoint_from_the_held_out_ones(data64):
    cal = dataset_calibration(data64, None, SIZE, count=100, held_out=8, seed=3)
    # 12 training images: the held-out share shrinks to a fifth (2), calibration takes the other 10
    assert cal.source["held_out_images"] == 2 and cal.source["calibration_images"] == 10 == len(cal.inputs)
    assert cal.source["split"] == "train" and cal.source["dataset"] == "synthetic"
    assert all(a.shape == (1, SIZE, SIZE, 3) and a.dtype == np.float32 for a in cal.inputs)
    held = [h.permute(1, 2, 0)[None].numpy() for h in cal.held_out]
    assert not any(np.array_equal(h, a) for h in held for a in cal.inputs)
    again = dataset_calibration(data64, "synthetic", SIZE, count=100, held_out=8, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(cal.inputs, again.inputs))  # seeded


def test_label_maps_from_logits_and_from_integer_outputs():
    logits_info = TensorInfo("o", (1, 2, 2, 3), "float32", 0.0, 0)
    out = np.zeros((1, 2, 2, 3), np.float32)
    out[0, 0, 0, 2] = out[0, 1, 1, 1] = 1.0
    labels = to_label_map(out, logits_info, 3, (4, 4))  # 1/2 resolution -> bilinear, then argmax
    assert labels.shape == (4, 4) and labels[0, 0] == 2 and labels[3, 3] == 1 and labels[0, 3] == 0
    map_info = TensorInfo("o", (1, 2, 2), "int32", 0.0, 0)
    assert map_info.is_label_map and not logits_info.is_label_map
    lab = to_label_map(np.array([[[0, 1], [2, 3]]], np.int32), map_info, 4, (4, 4))
    assert lab.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]  # nearest
    assert TensorInfo("o", (1, 2, 2, 3), "int8", 0.1, 3).quantized  # quantized logits are not a label map
    assert labels_of(out).tolist() == labels_of(out.astype(np.float16)).tolist()
    with pytest.raises(EtfError, match="no axis of 7 classes"):
        to_label_map(out, logits_info, 7, (4, 4))
    assert input_size(TensorInfo("i", (1, 64, 64, 3), "float32", 0.0, 0)) == (64, True)
    assert input_size(TensorInfo("i", (1, 3, 64, 64), "float32", 0.0, 0)) == (64, False)


def _one_line(capsys, code: int, prog: str) -> str:
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"{prog}: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_export_int8_without_calibration_data_is_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "out"
    err = _one_line(capsys, export_main(["--arch", ARCH, "--size", "64", "--precision", "int8", "-o", str(out)]),
                    "etf-export")
    assert "--calib-data" in err and not out.exists()
    err = _one_line(capsys, export_main(["--arch", ARCH, "--size", "64", "--calib-data", str(tmp_path), "-o",
                                         str(out)]), "etf-export")
    assert "fp16 or int8" in err and not out.exists()
    err = _one_line(capsys, export_main(["--arch", ARCH, "--size", "64", "--precision", "int8", "--calib-data",
                                         str(tmp_path / "none"), "-o", str(out)]), "etf-export")
    assert "does not exist" in err and not out.exists()
    with pytest.raises(EtfError, match="needs calibration images"):
        export_subnet(ARCH, out, size=64, precision="int8")
    assert not out.exists()


def test_eval_tflite_bad_input_is_one_line_exit_2(tmp_path, data64, capsys):
    err = _one_line(capsys, eval_main(["--tflite", str(tmp_path / "none.tflite"), "--data", str(data64)]), "etf-eval")
    assert "none.tflite does not exist" in err
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer at all")
    assert "cannot load" in _one_line(capsys, eval_main(["--tflite", str(junk), "--data", str(data64)]), "etf-eval")
    err = _one_line(capsys, eval_main(["--tflite", str(junk), "--ckpt", str(junk), "--data", str(data64)]), "etf-eval")
    assert "--ckpt" in err and "cannot be used with --tflite" in err
    err = _one_line(capsys, eval_main(["--data", str(data64)]), "etf-eval")
    assert "--tflite" in err


# -- real converter, quantizer and runtime (slow) -----------------------------------------------------------

@pytest.mark.slow
def test_eval_tflite_of_an_fp32_export_equals_pytorch_eval(fp32_export, tiny_ckpt, data64, capsys):
    """Same weights (the supernet's subnet, BN as stored: --calib-batches 0), same images, same resize."""
    tfl = fp32_export.files["tflite"]
    assert json.loads((tfl.parent / "export.json").read_text())["precision"] == "fp32"
    assert eval_main(["--tflite", str(tfl), "--data", str(data64), "--json"]) == 0
    lite = json.loads(capsys.readouterr().out)
    assert eval_main(["--ckpt", str(tiny_ckpt), "--arch", ARCH, "--data", str(data64), "--dataset", "synthetic",
                      "--size", str(SIZE), "--calib-batches", "0", "--json"]) == 0
    torch_res = json.loads(capsys.readouterr().out)
    assert lite["images"] == torch_res["images"] == 6 and lite["precision"] == "fp32"
    assert lite["input"]["shape"] == [1, SIZE, SIZE, 3] and lite["output"]["shape"] == [1, LOW, LOW, CLASSES]
    assert lite["pixels"] == torch_res["pixels"] > 0
    assert lite["miou"] == pytest.approx(torch_res["miou"], abs=1e-3)
    assert lite["aAcc"] == pytest.approx(torch_res["aAcc"], abs=1e-3)
    assert 0.0 < lite["aAcc"] <= 1.0  # the net predicts something right: a trained-ish net, not a constant
    assert eval_main(["--tflite", str(tfl), "--data", str(data64), "--limit", "2"]) == 0  # the human table
    text = capsys.readouterr().out
    assert "mIoU" in text and "fp32" in text and "64x64" in text


@pytest.mark.slow
def test_fp16_file_runs_and_follows_fp32_closely(fp32_export, data64, tmp_path):
    fp16 = tmp_path / "fp16.tflite"
    recipe = quantize_tflite(fp32_export.files["tflite"], fp16, "fp16")
    assert recipe["weights"] == "float16"
    assert fp16.stat().st_size < 0.6 * fp32_export.file_bytes["tflite"]  # float16 weights: about half
    runner = TfliteRunner(fp16)
    assert runner.input.dtype == runner.output.dtype == "float32" and runner.output.shape == (1, LOW, LOW, CLASSES)
    model, _, _ = build_deployed_model(PRESETS[ARCH], fp32_export.weights, None)
    cal = dataset_calibration(data64, None, SIZE, count=4, held_out=4)
    agree = measure_agreement(model, fp16, cal.held_out, "fp16", "held-out")
    # float16 weights with float compute: logits move by ~1e-3 of their scale, labels (almost) never
    assert agree.max_abs_error < 1e-2 * agree.max_abs_logit and agree.label_agreement > 0.99
    score = evaluate_tflite(fp16, data64)
    assert 0.0 <= score["miou"] <= 1.0 and score["images"] == 6


@pytest.mark.slow
def test_int8_export_records_precision_and_an_agreement_report(tmp_path, tiny_ckpt, data64, fp32_export, capsys):
    out = tmp_path / "int8"
    code = export_main(["--arch", ARCH, "--weights", str(tiny_ckpt), "--size", str(SIZE), "--no-onnx",
                        "--no-recalibrate", "--precision", "int8", "--calib-data", str(data64), "--calib-count", "8",
                        "--agreement-inputs", "2", "-o", str(out)])
    assert code == 0
    text = capsys.readouterr().out  # what a user reads
    assert "precision int8" in text and "calibrated on 8 synthetic train images" in text
    assert "agreement with fp32 on 2 held-out synthetic train images" in text and "top-1 labels" in text
    assert "fidelity tflite-fp32" in text and "FAILED" not in text
    report = json.loads((out / "export.json").read_text())
    assert report["bn"] == "uncalibrated"  # the same network as the fp32 fixture's (stored BN statistics)
    assert sorted(p.name for p in out.iterdir()) == ["arch.json", "export.json", "model.tflite"]
    assert report["precision"] == "int8"
    cal = report["quantization"]["calibration"]
    assert cal["dataset"] == "synthetic" and cal["split"] == "train" and cal["calibration_images"] == 8
    assert report["input"]["dtype"] == report["output"]["dtype"] == "float32"  # float in/out, int8 inside
    assert report["op_counts"]["QUANTIZE"] >= 1 and report["op_counts"]["DEQUANTIZE"] >= 1
    # int8 ops XNNPACK has no kernel for (attention matmuls, softmax, token pooling) stay float, so the whole
    # graph runs in one delegated part (the recipe without FLOAT_OPS gave 13 parts for TopFormer-Tiny)
    assert report["delegation"] == {"ops": sum(report["op_counts"].values()), "parts": 1, "outside": {}}
    assert "LiteRT CPU: all" in text and "in 1 XNNPACK part" in text
    assert [f["runtime"] for f in report["fidelity"]] == ["tflite-fp32"] and report["fidelity"][0]["ok"]
    assert report["file_bytes"]["tflite"] < 0.4 * fp32_export.file_bytes["tflite"]  # int8 weights: about a quarter
    agree = report["agreement"]
    assert agree["precision"] == "int8" and agree["count"] == 2 and "held-out" in agree["inputs"]
    assert 0.0 < agree["mean_abs_error"] <= agree["max_abs_error"]
    # What is meaningful: the int8 file follows ITS fp32 model far better than another network of the same
    # architecture does (same arch, other weights: the random-weight export), and its mean logit error is a
    # small share of the logit scale.
    int8 = out / "model.tflite"
    ds_cal = dataset_calibration(data64, None, SIZE, count=1, held_out=2)
    other, _, _ = build_deployed_model(PRESETS[ARCH], None, CLASSES, seed=7)
    chance = measure_agreement(other, int8, ds_cal.held_out, "int8", "held-out")
    assert agree["label_agreement"] > 0.8 and agree["label_agreement"] > chance.label_agreement + 0.1
    assert agree["mean_abs_error"] < 0.1 * agree["max_abs_logit"]
    runner = TfliteRunner(int8)
    y = runner(ds_cal.held_out[0].permute(1, 2, 0)[None].numpy())
    assert y.dtype == np.float32 and y.shape == (1, LOW, LOW, CLASSES) and np.isfinite(y).all()
    score = evaluate_tflite(int8, data64, limit=3)
    assert score["precision"] == "int8" and score["images"] == 3 and 0.0 <= score["miou"] <= 1.0


@pytest.mark.slow
def test_int8_keeps_ops_float_that_xnnpack_would_run_outside_its_delegate(fp32_export, tmp_path, monkeypatch):
    """With no float list at all, the delegation check finds the int8 ops XNNPACK leaves to TFLite (at 64 px the
    converter decomposes the 1-token softmax into MAXIMUM/SUB/DIV...) and keeps them float: one delegated part."""
    import android_bench.export.quantize as quantize

    calib = noise_calibration(SIZE, 4, held_out=0, seed=0).inputs
    monkeypatch.setattr(quantize, "FLOAT_OPS", ())
    recipe = quantize.quantize_tflite(fp32_export.files["tflite"], tmp_path / "int8.tflite", "int8", calib)
    assert {"MAXIMUM", "SUB", "DIV"} <= set(recipe["float_ops"])  # found by the check, not listed
    found = delegation(tmp_path / "int8.tflite")
    assert found.parts == 1 and found.outside == {}
    assert recipe["recipe_rev"] == quantize.RECIPE_REV


def test_noise_calibration_is_seeded_and_shaped():
    a, b = noise_calibration(SIZE, 3, 2, seed=5), noise_calibration(SIZE, 3, 2, seed=5)
    assert len(a.inputs) == 3 and len(a.held_out) == 2 and a.source["kind"] == "noise"
    assert all(np.array_equal(x, y) for x, y in zip(a.inputs, b.inputs))
