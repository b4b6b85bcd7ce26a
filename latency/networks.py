"""Whole networks converted for timing: one content-addressed cache per tables folder, shared by every command.

A network timed for latency (a correction or held-out subnet, the whole-network reference TopFormer-Tiny, a
preset, a search winner at the table's class count) is ``Deployed(TopFormer(cfg), head)`` with random weights
(weights do not change latency) and the table's 150 classes, converted once to ``<tables>/cache/nets/`` under a
name made of the architecture key, input size, head, precision and converter version. The profiler, the report,
the search's winner check, ``etf-record`` and the demo all read it here, so the reference the table was profiled
with is the very file a later measurement is paired with, and none is converted twice.
"""
from __future__ import annotations

import time
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Sequence

from latency.export_op import converter_version, quant_tag, quantize_cached, sigint_ignored
from supernet.heads import DEFAULT_HEAD

#: The whole-network reference: this preset deployed at the same setting as the networks it is timed beside.
REFERENCE_PRESET = "topformer-tiny"


def anchor_configs() -> list[Any]:
    """The anchor networks: the space's smallest config and the TopFormer presets (the sizes a latency-constrained
    search ends at, which random samples of Table 1 rarely reach). The profiler measures them first; the predictor's
    correction leaves them out once enough networks drawn from the space are measured."""
    from supernet.presets import PRESETS
    from supernet.space import TABLE1

    return [TABLE1.min_config(), *PRESETS.values()]


def cache_dir(tables_dir: str | Path) -> Path:
    """The conversion cache of a tables folder (operators under ``ops``-style names, networks under ``nets/``)."""
    return Path(tables_dir) / "cache"


def network_path(cache: str | Path, cfg: Any, size: int, head: str = DEFAULT_HEAD, precision: str = "fp32") -> Path:
    """Cache location of the deployed network of ``cfg`` at ``size`` with output ``head`` and ``precision``."""
    tag = "" if precision == "fp32" else f"_{precision}{quant_tag('_')}"
    return Path(cache) / "nets" / f"{cfg.key()}_{size}_{head}{tag}_{converter_version()}.tflite"


def convert_network_worker(arch_json: str, size: int, path: str, head: str = DEFAULT_HEAD,
                           precision: str = "fp32", fp32_path: str | None = None) -> float:
    """Worker entry point: export ``Deployed(TopFormer(cfg), head)`` at ``size`` to ``path`` (quantized to
    ``precision`` for timing, :func:`android_bench.export.quantize.quantize_for_latency`); returns seconds.
    A quantized file is made from the fp32 file at ``fp32_path`` (the cache's, required then), converted there
    first when missing (:func:`latency.export_op.quantize_cached`)."""
    import torch

    from android_bench.export.convert import export_tflite
    from android_bench.export.deploy import randomize_batchnorm_
    from supernet.heads import Deployed
    from supernet.space import ArchConfig
    from supernet.topformer import TopFormer

    start = time.perf_counter()

    def convert(to: str | Path) -> Path:
        torch.manual_seed(0)
        net = randomize_batchnorm_(TopFormer(ArchConfig.from_json(arch_json)))  # as an untrained etf-export does
        return export_tflite(Deployed(net, head), (1, 3, size, size), to)  # written atomically

    if precision == "fp32":
        convert(path)
    elif fp32_path is None:
        raise ValueError("a quantized timing file is made from the cache's fp32 file: pass fp32_path")
    else:
        quantize_cached(Path(fp32_path), convert, Path(path), precision)
    return time.perf_counter() - start


def convert_networks(cfgs: Sequence, size: int, cache: str | Path, pool: Executor | None = None,
                     head: str = DEFAULT_HEAD, precision: str = "fp32") -> tuple[list[Path], float]:
    """The cached timing files of ``cfgs`` (converted in ``pool``'s workers when missing, in this process without
    a pool); returns their paths and the wall seconds spent."""
    start = time.monotonic()
    paths = [network_path(cache, c, size, head, precision) for c in cfgs]
    todo = [(c, p, None if precision == "fp32" else str(network_path(cache, c, size, head)))
            for c, p in zip(cfgs, paths) if not p.exists()]
    if pool is None:
        for c, p, fp32 in todo:
            convert_network_worker(c.to_json(indent=None), size, str(p), head, precision, fp32)
    else:
        with sigint_ignored():
            futs = [pool.submit(convert_network_worker, c.to_json(indent=None), size, str(p), head, precision, fp32)
                    for c, p, fp32 in todo]
        for f in futs:
            f.result()
    return paths, time.monotonic() - start


def timing_network(cache: str | Path, cfg: Any, size: int, head: str | None = None, precision: str = "fp32",
                   pool: Executor | None = None) -> Path:
    """One network's cached timing file (see :func:`convert_networks`)."""
    return convert_networks([cfg], size, cache, pool, head or DEFAULT_HEAD, precision)[0][0]


def reference_network_path(cache: str | Path, size: int, pool: Executor | None = None, head: str | None = None,
                           precision: str = "fp32") -> Path:
    """The whole-network reference of a setting: TopFormer-Tiny deployed at ``size`` with output ``head``
    (default: the default head) and ``precision``, converted once and cached."""
    from supernet.presets import PRESETS

    return timing_network(cache, PRESETS[REFERENCE_PRESET], size, head, precision, pool)


__all__ = ["REFERENCE_PRESET", "cache_dir", "network_path", "convert_network_worker", "convert_networks",
           "timing_network", "reference_network_path"]
