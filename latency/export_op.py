"""Convert one operator to TFLite the way the whole network is converted, plus a content-addressed cache.

Single-input operators go through ``android_bench.export.convert.export_tflite`` itself. Multi-input ones (pyramid pool,
injection, head) use the same converter with every input and the output made channel-last
(``litert_torch.to_channel_last_io``), which is what ``export_tflite`` does for one input, so no boundary
transpose is counted as the operator's cost. The cache file name is a hash of the operator key and
:func:`converter_version` (package versions + the conversion code's source), so an operator is never converted
twice and a changed converter or network code never reuses an old file.
"""
from __future__ import annotations

import contextlib
import hashlib
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch

from latency.operators import Operator
from etf.common import EtfError, atomic_path


#: Bump when ``export_operator`` changes how an operator is converted (invalidates the cache).
#: Rev 2: BatchNorms are randomised before export (rev 1 kept TopFormer's zero-init attention projection, which
#: the converter folded away, so attention was never timed).
OPERATOR_EXPORT_REV = 2


#: Installed packages whose version changes the converted file: the converter, the runtime it targets
#: (its flatbuffer schema and op versions), torch (the exported graph) and the quantizer.
CONVERTER_PACKAGES = ("litert-torch", "ai-edge-litert", "torch", "ai-edge-quantizer")
#: The code that shapes an operator's converted file: the network's layers, the operator builders and keys,
#: the conversion path (layout rewrites, NHWC boundary, BN randomisation) and this module.
CONVERSION_SOURCES = ("supernet.space", "supernet.topformer", "supernet.heads", "android_bench.export.convert",
                      "android_bench.export.layout", "android_bench.export.deploy", "android_bench.export.cia_memo",
                      "android_bench.export.fold",
                      "latency.operators",
                      "latency.export_op")


@lru_cache(maxsize=1)
def converter_version() -> str:
    """Everything besides the operator key that shapes a converted operator: package versions, a digest of
    the conversion code's source and :data:`OPERATOR_EXPORT_REV`. Any change gives new cache names (a miss),
    never a stale file."""
    from etf.fingerprint import package_versions, source_digest

    versions = "-".join(f"{k}{v}" for k, v in package_versions(CONVERTER_PACKAGES).items())
    return f"{versions}-src{source_digest(CONVERSION_SOURCES)[:12]}-op{OPERATOR_EXPORT_REV}"


def quant_tag(sep: str = "|") -> str:
    """What a quantized file's cache name adds besides the precision: ``sep`` and the quantizer recipe's
    revision (:data:`android_bench.export.quantize.RECIPE_REV`)."""
    from android_bench.export.quantize import RECIPE_REV

    return f"{sep}q{RECIPE_REV}"


def cache_path(cache_dir: str | Path, key: str, precision: str = "fp32") -> Path:
    """Where the converted ``.tflite`` of operator ``key`` at ``precision`` lives in the cache (fp32 names are
    those of caches written before precisions existed)."""
    name = f"{converter_version()}|{key}" + ("" if precision == "fp32" else f"|{precision}{quant_tag()}")
    digest = hashlib.sha256(name.encode()).hexdigest()[:24]
    return Path(cache_dir) / f"{digest}.tflite"


def export_operator(op: Operator, path: str | Path, precision: str = "fp32") -> Path:
    """Build ``op`` alone (random weights and BatchNorms, eval mode) and write it as a NHWC ``.tflite`` at ``path``,
    quantized to ``precision`` (fp16 weights, or int8 with ranges from seeded noise: timing only) like a shipped
    file of that precision.

    BatchNorms are randomised as for an untrained whole-network export: a zero-initialised BN would let the
    converter delete the branch it ends, and the table would time an operator the trained network does not have.
    """
    if precision != "fp32":
        from android_bench.export.quantize import quantize_for_latency

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as work:  # only the quantized file is kept
            quantize_for_latency(export_operator(op, Path(work) / "fp32.tflite"), path, precision)  # atomic
        return path
    from android_bench.export.deploy import randomize_batchnorm_
    from android_bench.export.cia_memo import memoize_cia_scan
    from android_bench.export.convert import export_tflite, quiet_converter
    from android_bench.export.fold import fold_batchnorms_

    shapes = op.input_shapes()
    torch.manual_seed(0)
    module = randomize_batchnorm_(op.build()).eval()
    if len(shapes) == 1:
        return export_tflite(module, shapes[0], path)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = tuple(torch.randn(*s).permute(0, 2, 3, 1).contiguous() for s in shapes)
    fold_batchnorms_(module)  # as export_tflite does for one input
    memoize_cia_scan()
    try:
        with quiet_converter(f"TFLite conversion of {op.key}"), atomic_path(path) as tmp:
            import litert_torch

            wrapped = litert_torch.to_channel_last_io(module, args=list(range(len(shapes))), outputs=[0])
            litert_torch.convert(wrapped, samples).export(str(tmp))
    except Exception as exc:  # the converter raises many types; report one line
        raise EtfError(f"TFLite conversion of {op.key} failed: {type(exc).__name__}: "
                       f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    return path


def convert_cached(key: str, path: str, precision: str = "fp32") -> tuple[str, str, float]:
    """Worker entry point: convert operator ``key`` at ``precision`` to ``path`` (its cache file) unless there;
    (key, path, s). A quantized file is made from the operator's fp32 file in the same cache, which is converted
    there first when missing: an fp16 / int8 table after an fp32 one (or the other way round) converts each
    operator once, and quantizing is a fraction of converting."""
    import time

    from latency.operators import parse_key

    path = Path(path)
    if path.exists():
        return key, str(path), 0.0
    start = time.perf_counter()
    op = parse_key(key)
    with contextlib.suppress(FileExistsError):
        if precision == "fp32":
            export_operator(op, path)
        else:
            quantize_cached(cache_path(path.parent, key), lambda fp32: export_operator(op, fp32), path, precision)
    return key, str(path), time.perf_counter() - start


def quantize_cached(fp32: Path, convert_fp32: Callable[[Path], object], path: Path, precision: str) -> None:
    """Write the ``precision`` timing file ``path`` from ``fp32``, the cache's fp32 file of the same operator or
    network, converting that first (``convert_fp32(fp32)``) when missing: each is converted once for every
    precision, and quantizing is a fraction of converting."""
    from android_bench.export.quantize import quantize_for_latency

    if not fp32.exists():
        with contextlib.suppress(FileExistsError):
            convert_fp32(fp32)
    quantize_for_latency(fp32, path, precision)  # written atomically


def ignore_sigint() -> None:
    """Worker initializer: Ctrl-C is handled by the parent (which saves and exits), not by every worker."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def sigint_ignored():
    """Ignore Ctrl-C while worker processes are spawned: they inherit it, so only the parent (which saves the
    table and exits cleanly) reacts to Ctrl-C, and no worker prints a traceback."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
