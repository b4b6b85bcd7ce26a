"""Quantize an exported fp32 ``.tflite`` to fp16 weights or int8 with Google's ai-edge-quantizer.

Why ai-edge-quantizer and not the converter's own path: both work here (ai-edge-quantizer 0.10, litert-torch
0.10), but litert-torch quantizes through PT2E (``torch.export`` + torchao observers, then a second full
conversion, ~80 s for TopFormer-Tiny at 64 px on this machine), has no fp16-weight mode, and always gives the
int8 file int8 inputs and outputs. ai-edge-quantizer works on the fp32 file we already converted and checked
(well under a second of quantization after a short calibration), does fp16 and int8 from one recipe API, and
lets the model boundary stay float.

Precisions:

* ``fp32``: the converted file as is.
* ``fp16``: weights of CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED stored as float16 and dequantized to
  float32 inside the graph (``FLOAT_CASTING`` weight-only recipe): half the file size, float compute.
* ``int8``: static quantization, int8 weights (symmetric, per channel) and int8 activations (asymmetric, per
  tensor; ranges from calibration images), integer compute. **Input and output stay float32**: the file
  quantizes the normalised image itself and dequantizes the logits, so an app feeds and reads the same
  tensors as the fp32 file. Operators that LiteRT's CPU delegate (XNNPACK) has no int8 kernel for stay float
  (:data:`FLOAT_OPS`, then whatever :func:`android_bench.export.oplist.delegation` still finds outside the
  delegate, e.g. the pieces of a softmax the converter decomposed): quantized, they ran in TFLite's own kernels
  and cut TopFormer's delegated graph into 13 parts; in float the whole graph is one XNNPACK part, and int8's
  speed-up over fp32 at 512 px went from 1.51x to 1.63-1.88x for TopFormer-Tiny and from 1.80x to 1.86-2.11x
  for -Small (docs/deployment.md). They are a small share of the work (attention on tokens at 1/64 of the
  image).
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from android_bench.export.oplist import delegation
from etf.common import EtfError, atomic_path
from etf.quiet import captured

PRECISIONS = ("fp32", "fp16", "int8")
#: Operators an int8 file keeps in float: XNNPACK (LiteRT's CPU delegate) has no int8 kernel for them, and a
#: quantized one would run outside the delegate and split the delegated graph around itself.
FLOAT_OPS = ("BATCH_MATMUL", "SOFTMAX", "AVERAGE_POOL_2D", "MAXIMUM", "SUB", "DIV")
#: Revision of the int8/fp16 recipes; part of the latency caches' names for quantized files, so a recipe change
#: re-converts instead of timing a file made by the old recipe. Rev 2: :data:`FLOAT_OPS` stay float.
RECIPE_REV = 2
#: Precisions whose recipe needs calibration inputs.
NEEDS_CALIBRATION = ("int8",)


@contextlib.contextmanager
def _quiet():
    """Silence the quantizer's progress bars and size report (errors are re-raised)."""
    logging.getLogger("absl").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def quantizer_version() -> str:
    """The installed ai-edge-quantizer version (recorded in export.json)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ai-edge-quantizer")
    except PackageNotFoundError:
        return "unknown"


def recipe_for(precision: str) -> dict:
    """A description of the recipe used for ``precision`` (recorded in export.json)."""
    if precision == "fp16":
        return {"tool": "ai-edge-quantizer", "version": quantizer_version(), "recipe": "weight-only float16 "
                "(FLOAT_CASTING) on all supported ops", "weights": "float16", "activations": "float32",
                "io": "float32"}
    if precision == "int8":
        return {"tool": "ai-edge-quantizer", "version": quantizer_version(), "recipe": "static_wi8_ai8 "
                "(MIN_MAX_UNIFORM_QUANT), model input/output left unquantized, ops XNNPACK has no int8 kernel "
                "for left float", "recipe_rev": RECIPE_REV,
                "weights": "int8 symmetric per-channel", "activations": "int8 asymmetric per-tensor (calibrated)",
                "io": "float32"}
    raise EtfError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")


def _quantizer(fp32: Path, precision: str, floats: Sequence[str] = ()):
    """An ai-edge-quantizer for ``precision`` over the file ``fp32``; int8 leaves the model boundary and the ops
    named in ``floats`` (TFLite builtin names) in float."""
    from ai_edge_quantizer import algorithm_manager, qtyping, quantizer

    q = quantizer.Quantizer(str(fp32))
    every = qtyping.TFLOperationName.ALL_SUPPORTED
    if precision == "fp16":
        q.add_weight_only_config(regex=".*", operation_name=every, num_bits=16,
                                 algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING)
    else:
        q.add_static_config(regex=".*", operation_name=every, activation_num_bits=8, weight_num_bits=8)
        names = (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT,  # float in/out
                 *(qtyping.TFLOperationName[name] for name in floats))
        for name in names:
            q.update_quantization_recipe(regex=".*", operation_name=name, op_config=None,
                                         algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE)
    return q


def _quantizable(names: Iterable[str]) -> list[str]:
    """Those of ``names`` (TFLite builtin op names) that the quantizer has a recipe entry for."""
    from ai_edge_quantizer import qtyping

    return [n for n in names if n in qtyping.TFLOperationName.__members__]


def _signature_inputs(fp32: Path) -> tuple[str, list[tuple[str, tuple[int, ...]]]]:
    """(signature key, [(input name, shape), ...] in the signature's order) of the file at ``fp32``."""
    from ai_edge_litert.interpreter import Interpreter

    with captured("LiteRT interpreter creation", tail=False):
        interp = Interpreter(model_path=str(fp32))
    sigs = interp.get_signature_list()
    if len(sigs) != 1:
        raise EtfError(f"{fp32} has {len(sigs)} signatures; the quantizer needs exactly one")
    key, sig = next(iter(sigs.items()))
    runner = interp.get_signature_runner(key)
    details = runner.get_input_details()
    return key, [(name, tuple(int(d) for d in details[name]["shape"])) for name in sig["inputs"]]


def quantize_tflite(fp32: str | Path, out: str | Path, precision: str,
                    calibration: Sequence[np.ndarray] | None = None) -> dict:
    """Write the ``precision`` version of the fp32 .tflite ``fp32`` to ``out`` (atomically) and return the
    recipe description. ``calibration``: float32 inputs in the file's layout and shape (one image each; for a
    file of several inputs, a sequence of arrays per sample in the signature's input order), required for int8
    (its activation ranges come from them), ignored otherwise."""
    fp32, out = Path(fp32), Path(out)
    recipe = recipe_for(precision)
    if precision == "fp32":
        raise EtfError("quantize_tflite makes fp16 or int8 files; fp32 is the converted file itself")
    data = None
    if precision in NEEDS_CALIBRATION:
        if not calibration:
            raise EtfError(f"{precision} needs calibration images (--calib-data DIR)")
        key, inputs = _signature_inputs(fp32)
        samples = [(a,) if isinstance(a, np.ndarray) else tuple(a) for a in calibration]
        shapes = tuple(shape for _, shape in inputs)
        bad = [tuple(tuple(x.shape) for x in sample) for sample in samples
               if tuple(tuple(x.shape) for x in sample) != shapes]
        if bad:
            shown = lambda t: " + ".join(str(x) for x in t)  # noqa: E731
            raise EtfError(f"calibration input of shape {shown(bad[0])} does not fit the model input {shown(shapes)}")
        data = {key: [{name: np.asarray(x, np.float32) for (name, _), x in zip(inputs, sample)} for sample in samples]}
    try:
        with _quiet(), captured(f"{precision} quantization"):  # fd-level too: the runtime's C++ log lines
            floats = list(FLOAT_OPS) if precision == "int8" else []
            q = _quantizer(fp32, precision, floats)
            result = q.calibrate(data, num_threads=max(1, os.cpu_count() or 1)) if data is not None else None
            with atomic_path(out) as tmp:
                tmp.write_bytes(bytes(q.quantize(result, enable_progress_report=False).quantized_model))
                extra = ([n for n in _quantizable(delegation(tmp).outside) if n not in floats]
                         if precision == "int8" else [])
                if extra:  # int8 ops XNNPACK would not take: keep them float too
                    floats += extra
                    q = _quantizer(fp32, precision, floats)
                    tmp.write_bytes(bytes(q.quantize(result, enable_progress_report=False).quantized_model))
    except EtfError:
        raise
    except Exception as exc:  # the quantizer raises many types; report one line
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise EtfError(f"{precision} quantization failed: {type(exc).__name__}: {text}") from exc
    if floats:
        recipe["float_ops"] = floats
    if data is not None:
        recipe["calibration_inputs"] = len(calibration or [])
    return recipe


def quantize_for_latency(fp32: str | Path, out: str | Path, precision: str, samples: int = 4, seed: int = 0) -> dict:
    """``precision`` version of ``fp32`` for timing only (operators of a latency table, random-weight networks):
    int8 activation ranges from seeded standard-normal inputs for every input of the file. Latency does not
    depend on the values; accuracy does, so shipped files are calibrated on images instead."""
    if precision == "fp32":
        raise EtfError("quantize_for_latency makes fp16 or int8 files; fp32 is the converted file itself")
    calibration = None
    if precision in NEEDS_CALIBRATION:
        _, inputs = _signature_inputs(Path(fp32))
        rng = np.random.default_rng(seed)
        calibration = [tuple(rng.standard_normal(shape).astype(np.float32) for _, shape in inputs)
                       for _ in range(samples)]
    return quantize_tflite(fp32, out, precision, calibration)
