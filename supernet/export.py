"""Convert a PyTorch module to TFLite (litert-torch) with NHWC at the model boundary, the layout phones want.

``export_tflite`` is the one conversion path of the project: whole networks (``etf-export``) and the single
operators that the latency profiler measures go through it, so both are converted the same way.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path

import torch
from torch import nn

from supernet.errors import EtfError


@contextlib.contextmanager
def _quiet():
    """Silence the converter's progress chatter on stdout/stderr (errors are re-raised)."""
    logging.getLogger("litert_torch").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def export_tflite(module: nn.Module, input_shape: tuple[int, ...], path: str | Path, nhwc: bool = True,
                  quiet: bool = True) -> Path:
    """Convert ``module`` (fed one float32 tensor of NCHW ``input_shape``) to a ``.tflite`` file at ``path``.

    With ``nhwc`` the model's input and output are channel-last (``1xHxWxC``); the converter then cancels
    the layout transposes against its own NHWC lowering, so none remain at the boundary. Written
    atomically: a failed conversion leaves no file.
    """
    import litert_torch  # heavy import, only when converting

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    wrapped = litert_torch.to_channel_last_io(module, args=[0], outputs=[0]) if nhwc else module
    sample = torch.randn(*input_shape)
    if nhwc:
        sample = sample.permute(0, *range(2, len(input_shape)), 1).contiguous()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with _quiet() if quiet else contextlib.nullcontext():
            edge = litert_torch.convert(wrapped, (sample,))
            edge.export(str(tmp))
        tmp.replace(path)
    except Exception as exc:  # the converter raises many types; report one line
        tmp.unlink(missing_ok=True)
        raise EtfError(f"TFLite conversion failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    return path
