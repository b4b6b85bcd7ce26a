"""Run one ``.tflite`` file in LiteRT on float inputs, whatever its input/output dtypes.

Exported files take and return float32 tensors at any precision (an int8 file quantizes its input and
dequantizes its output inside), but a file from elsewhere may have an int8/uint8 input or output with a
scale and zero point: :class:`TfliteRunner` quantizes float inputs and dequantizes such outputs with the
file's own parameters, so callers always feed floats and get floats (logits) or integers (a label map:
an integer output without quantization parameters).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from etf.common import EtfError
from etf.quiet import captured


@dataclass(frozen=True)
class TensorInfo:
    """Shape, dtype and quantization (scale, zero point; scale 0 = not quantized) of one model input/output."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale > 0 and self.dtype in ("int8", "uint8", "int16")

    @property
    def is_label_map(self) -> bool:
        """An integer tensor without quantization parameters: class ids, not logits."""
        return np.issubdtype(np.dtype(self.dtype), np.integer) and not self.quantized

    def to_dict(self) -> dict:
        out = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.quantized:
            out["quantization"] = {"scale": self.scale, "zero_point": self.zero_point}
        return out


def _info(detail: dict) -> TensorInfo:
    scale, zero = detail.get("quantization", (0.0, 0))
    return TensorInfo(str(detail["name"]), tuple(int(s) for s in detail["shape"]), np.dtype(detail["dtype"]).name,
                      float(scale), int(zero))


class TfliteRunner:
    """One LiteRT interpreter (default XNNPACK delegate, as on phones) for repeated float-in calls."""

    def __init__(self, path: str | Path, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        if not self.path.is_file():
            raise EtfError(f"model file not found: {self.path}")
        try:
            with captured("LiteRT interpreter creation", tail=False):  # XNNPACK/TFLite INFO lines from C++
                self.interp = Interpreter(model_path=str(self.path), num_threads=threads)
                self.interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise EtfError(f"LiteRT cannot load {self.path}: {first}") from None
        self._in = self.interp.get_input_details()[0]
        self._out = self.interp.get_output_details()[0]
        self.input, self.output = _info(self._in), _info(self._out)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Output 0 on float input ``x`` (already in the file's layout and shape): float logits (dequantized
        when the file's output is quantized) or the integer label map the file returns."""
        if tuple(x.shape) != self.input.shape:
            raise EtfError(f"{self.path}: input shape {self.input.shape} is not the expected {tuple(x.shape)}")
        inp = self.input
        if inp.quantized:
            info = np.iinfo(np.dtype(inp.dtype))
            x = np.clip(np.round(x / inp.scale) + inp.zero_point, info.min, info.max).astype(inp.dtype)
        else:
            x = x.astype(np.dtype(inp.dtype))
        self.interp.set_tensor(self._in["index"], x)
        self.interp.invoke()
        y = self.interp.get_tensor(self._out["index"]).copy()
        if self.output.quantized:
            y = (y.astype(np.float32) - self.output.zero_point) * self.output.scale
        return y
