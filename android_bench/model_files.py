"""Check a model file before any device work (it exists, and it really is a TFLite or ONNX model), and read what
``etf-export`` recorded about it (output head, precision)."""
from __future__ import annotations

import json
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


#: The report ``etf-export`` writes next to the model files it exports.
EXPORT_REPORT = "export.json"


def export_setting(path: str | Path) -> dict[str, str | None]:
    """The output head and precision that ``etf-export`` recorded for the model at ``path`` (from the
    ``export.json`` next to it, when that report lists this file), so that a timing says what it timed; ``None``
    values when there is no such report. Files exported before heads existed had the full-resolution ``logits``
    head."""
    p = Path(path).expanduser()
    report = p.parent / EXPORT_REPORT
    info: dict[str, str | None] = {"head": None, "precision": None}
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        return info
    if not isinstance(data, dict) or p.name not in {Path(str(f)).name for f in (data.get("files") or {}).values()}:
        return info
    info["head"] = str(data.get("head", "logits"))
    info["precision"] = str(data.get("precision", "fp32"))
    return info
