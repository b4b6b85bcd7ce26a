"""Fidelity check: an exported file must compute what the PyTorch model computes.

Runs the ``.tflite`` in LiteRT (with its default XNNPACK delegate: what phones run) and the ``.onnx`` in ONNX
Runtime on one fixed seeded input, and compares with PyTorch. The tolerance is relative to the output's
scale: ``max |file - torch| <= rel_tol * max |torch logit|`` (rel_tol 1e-4 by default).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from etf.common import EtfError
from etf.quiet import captured

DEFAULT_REL_TOL = 1e-4


@dataclass(frozen=True)
class Fidelity:
    """Max abs error of one runtime's output against PyTorch, and the tolerance it is held to."""

    runtime: str
    max_abs_error: float
    max_abs_logit: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs_error <= self.tolerance

    @property
    def relative_error(self) -> float:
        return self.max_abs_error / self.max_abs_logit if self.max_abs_logit > 0 else float(self.max_abs_error > 0)

    def to_dict(self) -> dict:
        return {**asdict(self), "relative_error": self.relative_error, "ok": self.ok}


def fixed_input(shape_nchw: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """A standard-normal float32 NCHW input from ``seed`` (same seed, same input anywhere)."""
    return torch.randn(*shape_nchw, generator=torch.Generator().manual_seed(seed))


def run_tflite(path: str | Path, x: np.ndarray, threads: int = 1) -> np.ndarray:
    """Output 0 of the .tflite at ``path`` on input ``x`` (already in the file's layout)."""
    from ai_edge_litert.interpreter import Interpreter

    with captured("LiteRT interpreter creation"):
        interp = Interpreter(model_path=str(path), num_threads=threads)
        interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    if tuple(inp["shape"]) != x.shape:
        raise EtfError(f"{path}: input shape {tuple(inp['shape'])} is not the expected {x.shape}")
    interp.set_tensor(inp["index"], x.astype(np.float32))
    interp.invoke()
    return interp.get_tensor(out["index"]).copy()


def run_onnx(path: str | Path, x: np.ndarray, threads: int = 1) -> np.ndarray:
    """Output 0 of the .onnx at ``path`` on input ``x`` (already in the file's layout), ONNX Runtime CPU."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]


def compare(runtime: str, out: np.ndarray, ref: np.ndarray, rel_tol: float = DEFAULT_REL_TOL) -> Fidelity:
    """Max abs error of ``out`` against ``ref`` with the tolerance ``rel_tol * max |ref|``."""
    if out.shape != ref.shape:
        raise EtfError(f"{runtime} output shape {out.shape} differs from PyTorch's {ref.shape}")
    scale = float(np.abs(ref).max())
    err = float(np.abs(out.astype(np.float64) - ref.astype(np.float64)).max())
    return Fidelity(runtime, err, scale, rel_tol * scale)


def check_fidelity(module: nn.Module, files: dict[str, str | Path], input_shape: tuple[int, ...],
                   nhwc: bool = True, seed: int = 0, rel_tol: float = DEFAULT_REL_TOL,
                   raise_on_fail: bool = True) -> list[Fidelity]:
    """Compare every file in ``files`` (runtime name ``tflite`` or ``onnx`` -> path) with ``module`` on the
    fixed input of ``input_shape`` (NCHW; fed as NHWC when ``nhwc``). Raises :class:`EtfError` naming the
    runtime when an error is past the tolerance (unless ``raise_on_fail`` is False)."""
    runners = {"tflite": run_tflite, "onnx": run_onnx}
    x = fixed_input(input_shape, seed)
    with torch.no_grad():
        ref = module.eval()(x)
    if nhwc:
        x, ref = x.permute(0, 2, 3, 1), ref.permute(0, 2, 3, 1)
    x_np, ref_np = x.contiguous().numpy(), ref.contiguous().numpy()
    results = []
    for runtime, path in files.items():
        if runtime not in runners:
            raise EtfError(f"no runtime for {runtime!r} files (known: {', '.join(runners)})")
        results.append(compare(runtime, runners[runtime](path, x_np), ref_np, rel_tol))
    bad = [r for r in results if not r.ok]
    if bad and raise_on_fail:
        raise EtfError("fidelity check failed: " + "; ".join(
            f"{r.runtime} max abs error {r.max_abs_error:.3g} > {r.tolerance:.3g} (= {rel_tol:g} x max |logit| "
            f"{r.max_abs_logit:.3g})" for r in bad))
    return results
