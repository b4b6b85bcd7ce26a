"""Check a model file before any device work: it exists, and it really is a TFLite or ONNX model."""
from __future__ import annotations

from pathlib import Path

from etf.common import EtfError

TFLITE = "tflite"
ONNX = "onnx"


def model_kind(path: str | Path) -> str:
    """Return ``"tflite"`` or ``"onnx"`` for a readable model file; raise :class:`EtfError` otherwise."""
    p = Path(path).expanduser()
    if not p.exists():
        raise EtfError(f"model file not found: {p}")
    if not p.is_file():
        raise EtfError(f"not a file: {p}")
    try:
        with p.open("rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise EtfError(f"cannot read {p}: {exc.strerror}") from None
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        # ONNX is a protobuf ModelProto; field 1 (ir_version, varint) comes first in every exporter's output.
        if len(head) < 2 or head[0] != 0x08:
            raise EtfError(f"{p} is not an ONNX model (it does not start with an ONNX ModelProto)")
        return ONNX
    # TFLite flatbuffers carry the file identifier "TFL3" at bytes 4..8.
    if head[4:8] != b"TFL3":
        raise EtfError(f"{p} is not a TFLite model (no 'TFL3' identifier at byte 4); pass a .tflite or .onnx file")
    return TFLITE
