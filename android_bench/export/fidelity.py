"""Fidelity check: an exported file must compute what the PyTorch model computes.

Runs the ``.tflite`` in LiteRT (with its default XNNPACK delegate: what phones run) and the ``.onnx`` in ONNX
Runtime on one fixed seeded input, and compares with PyTorch. Logits heads (``logits8``, ``logits``): the
tolerance is relative to the output's scale, ``max |file - torch| <= rel_tol * max |torch logit|`` (rel_tol 1e-4
by default). The ``labels`` head: the label maps are compared pixel by pixel (:class:`LabelFidelity`); a pixel may
differ only where PyTorch's two best logits are within that same logit tolerance of each other (a near-tie that
the runtime's float rounding, well inside the logits tolerance, may break the other way): any other difference
fails the check. On the check input the fraction of equal pixels is 1.0 unless such near-ties exist.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from etf.common import EtfError
from etf.quiet import captured
from supernet.heads import Deployed, nearest_up

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

    def describe(self) -> str:
        return (f"fidelity {self.runtime:6s} max abs error {self.max_abs_error:.3g}  (max |logit| "
                f"{self.max_abs_logit:.3g}, tolerance {self.tolerance:.3g})  {'ok' if self.ok else 'FAILED'}")

    @property
    def relative_error(self) -> float:
        return self.max_abs_error / self.max_abs_logit if self.max_abs_logit > 0 else float(self.max_abs_error > 0)

    def to_dict(self) -> dict:
        return {**asdict(self), "relative_error": self.relative_error, "ok": self.ok}


@dataclass(frozen=True)
class LabelFidelity:
    """Label map of one runtime against PyTorch's: pixels, equal pixels, and how many of the differing pixels are
    near-ties (PyTorch's top-2 logit margin there <= ``tolerance`` = rel_tol x max |logit|)."""

    runtime: str
    pixels: int
    equal: int
    near_ties: int
    tolerance: float
    max_abs_logit: float

    @property
    def equal_fraction(self) -> float:
        return self.equal / self.pixels if self.pixels else 1.0

    @property
    def ok(self) -> bool:
        """Every differing pixel is a near-tie."""
        return self.pixels - self.equal <= self.near_ties

    def to_dict(self) -> dict:
        return {**asdict(self), "kind": "labels", "equal_fraction": self.equal_fraction, "ok": self.ok}

    def describe(self) -> str:
        return (f"fidelity {self.runtime:6s} labels equal on {self.equal_fraction:.6f} of {self.pixels} pixels "
                f"({self.pixels - self.equal} differ, {self.near_ties} of them near-ties within {self.tolerance:.3g})"
                f"  {'ok' if self.ok else 'FAILED'}")


def compare_labels(runtime: str, out: np.ndarray, ref: np.ndarray, margin: np.ndarray, scale: float,
                   rel_tol: float = DEFAULT_REL_TOL) -> LabelFidelity:
    """Compare a label map with PyTorch's; ``margin`` is PyTorch's top-2 logit margin per output pixel."""
    if out.shape != ref.shape:
        raise EtfError(f"{runtime} output shape {out.shape} differs from PyTorch's {ref.shape}")
    tol = rel_tol * scale
    differ = out.astype(np.int64) != ref.astype(np.int64)
    near = int((differ & (margin <= tol)).sum())
    return LabelFidelity(runtime, int(ref.size), int(ref.size - differ.sum()), near, tol, scale)


def _label_reference(module: Deployed, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """PyTorch's labels, the top-2 logit margin at each output pixel, and max |logit| (NCHW)."""
    logits = module.net(x)
    top2 = logits.topk(2, dim=1).values if logits.shape[1] > 1 else torch.cat([logits, logits - float("inf")], 1)
    margin = nearest_up((top2[:, :1] - top2[:, 1:2]).contiguous(), x.shape[2:])
    return module(x), margin, float(logits.abs().max())


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
    labels = isinstance(module, Deployed) and module.head == "labels"
    margin, scale = None, 0.0
    with torch.no_grad():
        if labels:
            ref, margin, scale = _label_reference(module.eval(), x)
        else:
            ref = module.eval()(x)
    if nhwc:
        x, ref = x.permute(0, 2, 3, 1), ref.permute(0, 2, 3, 1)
        margin = margin.permute(0, 2, 3, 1) if margin is not None else None
    x_np, ref_np = x.contiguous().numpy(), ref.contiguous().numpy()
    results: list = []
    for runtime, path in files.items():
        if runtime not in runners:
            raise EtfError(f"no runtime for {runtime!r} files (known: {', '.join(runners)})")
        out = runners[runtime](path, x_np)
        results.append(compare_labels(runtime, out, ref_np, margin.contiguous().numpy(), scale, rel_tol)
                       if labels else compare(runtime, out, ref_np, rel_tol))
    bad = [r for r in results if not r.ok]
    if bad and raise_on_fail and labels:
        raise EtfError("fidelity check failed: " + "; ".join(
            f"{r.runtime} label map differs from PyTorch's on {r.pixels - r.equal - r.near_ties} pixels that are "
            f"not near-ties (equal on {r.equal_fraction:.6f})" for r in bad))
    if bad and raise_on_fail:
        raise EtfError("fidelity check failed: " + "; ".join(
            f"{r.runtime} max abs error {r.max_abs_error:.3g} > {r.tolerance:.3g} (= {rel_tol:g} x max |logit| "
            f"{r.max_abs_logit:.3g})" for r in bad))
    return results
