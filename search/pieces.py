"""The parts the search consumes from the rest of the project, behind one small adapter each.

Latency predictor (``latency.predictor``), supernet accuracy evaluator (``supernet.evaluation.evaluator``), subnet export
(``android_bench.export.convert``) and devices (``android_bench``). Each adapter turns a missing file or an unknown
device into a one-line :class:`EtfError`, so the CLI and the demo fail cleanly before doing costly work. The heavy
modules are imported inside the adapters, so importing the search stays fast.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np

from etf.common import EtfError, atomic_open
from supernet.size import model_size
from supernet.space import ArchConfig

from search.objective import AccuracyFn, LatencyFn


# -- latency ------------------------------------------------------------------------------------------------


def load_predictor(setting: Any, tables_dir: str | Path = "tables", path: str | Path | None = None,
                   for_search: bool = False) -> Any:
    """The fitted latency predictor of ``setting`` (a ``latency.setting.Setting``), or the one saved at ``path``
    (refused with one line when it was fitted in another setting). ``for_search``: one from the tables is scaled
    to the searches' winners those tables measured (``latency.predictor.scaled_to_winners``)."""
    from latency.predictor import LatencyPredictor, load_for_device, search_predictor

    if path is not None:
        if not Path(path).exists():
            raise EtfError(f"latency predictor file not found: {path}")
        return LatencyPredictor.load(path, setting)
    return (search_predictor if for_search else load_for_device)(setting, str(tables_dir))


def predictor_latency_fn(predictor: Any) -> LatencyFn:
    """The predictor as the search's batched latency function (ms)."""
    return lambda cfgs: np.asarray(predictor.predict_many(list(cfgs)), dtype=float)


def predictor_num_classes(predictor: Any, default: int) -> int:
    """The class count of the deployed head the predictor models (``default`` without a predictor)."""
    return int(predictor.num_classes) if predictor is not None else default


def gflops_fn(size: int, num_classes: int) -> LatencyFn:
    """Analytic GFLOPs at ``size`` x ``size`` (``supernet.size.model_size``): the ``--target-gflops`` constraint."""
    return lambda cfgs: np.array([model_size(c, size, num_classes).flops / 1e9 for c in cfgs], dtype=float)


# -- accuracy -----------------------------------------------------------------------------------------------


def load_evaluator(checkpoint: str | Path, data_root: str | Path, dataset: str, size: int, n_calib: int, n_val: int,
                   batch: int, report_fraction: float = 0.5, split_seed: int = 0, device: str = "cpu") -> Any:
    """A ``SubnetEvaluator`` (mIoU % after BN recalibration, cached) over the trained supernet: ``n_calib``
    calibration batches of ``batch`` training crops, the first ``n_val`` images of the validation set's
    ``search`` split (``report_fraction`` of the images, chosen by a seeded hash of their ids, are held out for
    :func:`load_report_evaluator`), side ``size``."""
    if not Path(checkpoint).is_file():
        raise EtfError(f"supernet checkpoint not found: {checkpoint}")
    if not Path(data_root).exists():
        raise EtfError(f"dataset folder not found: {data_root}")
    from supernet.evaluation.evaluator import SubnetEvaluator

    return SubnetEvaluator.from_checkpoint(checkpoint, data_root, dataset, size, n_calib, n_val, batch, device=device,
                                           split="search", report_fraction=report_fraction, split_seed=split_seed)


def load_report_evaluator(evaluator: Any, data_root: str | Path, dataset: str, size: int, n_report: int | None,
                          batch: int, report_fraction: float = 0.5, split_seed: int = 0) -> Any:
    """An evaluator on the held-out ``report`` split (first ``n_report`` images, all when None) sharing the
    search evaluator's supernet and calibration batches, so both score a config with the same BN statistics."""
    from supernet.evaluation.evaluator import SubnetEvaluator

    return SubnetEvaluator.on_split(evaluator.supernet, evaluator.calib_batches, data_root, dataset, size, n_report,
                                    batch, evaluator.device, split="report", report_fraction=report_fraction,
                                    split_seed=split_seed)


def evaluator_accuracy_fn(evaluator: Any) -> AccuracyFn:
    """``evaluator.evaluate`` as the search's accuracy signal; an undefined (NaN) mIoU stops with a clear error."""

    def accuracy(cfg: ArchConfig) -> float:
        value = float(evaluator.evaluate(cfg))
        if math.isnan(value):
            raise EtfError(f"the accuracy signal is undefined (NaN mIoU) for config {cfg.key()}: the validation "
                           f"subset has no labelled pixels; give more --n-val images")
        return value

    return accuracy


# -- export and device --------------------------------------------------------------------------------------


def subnet_weights(cfg: ArchConfig, evaluator: Any, path: str | Path) -> Path:
    """Save the static subnet ``cfg`` of the evaluator's supernet, with BN recalibrated exactly as for its mIoU
    (``SubnetEvaluator.recalibrated_subnet``), as ``{"model": state_dict, "num_classes": n}`` (tensors only, so
    ``torch.load(weights_only=True)`` reads it)."""
    import torch

    sub = evaluator.recalibrated_subnet(cfg)
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        torch.save({"model": sub.state_dict(), "num_classes": int(evaluator.num_classes),
                    "bn_recalibrated": bool(evaluator.calib_batches)}, fh)
    return path


#: Images that calibrate an int8 winner's activation ranges (from the user's training split).
WINNER_CALIB_IMAGES = 64


def export_winner(cfg: ArchConfig, out_dir: str | Path, size: int, evaluator: Any | None, num_classes: int,
                  progress: Callable[[str], None] | None = None, head: str = "logits8", precision: str = "fp32",
                  calib_data: tuple[str | Path, str] | None = None) -> Path:
    """Export ``cfg`` with output ``head`` and ``precision`` to ``out_dir/model.tflite`` through the project's
    deploy path (``android_bench.export.convert.export_subnet``: fidelity-checked, atomic), with the weights the
    search scored: the subnet extracted from the evaluator's supernet after BN recalibration
    (``out_dir/subnet.pt``); random weights without an evaluator (latency does not depend on them). An int8
    file is calibrated on ``calib_data`` ((folder, dataset) of the user's images) when given, else on seeded
    noise (timing-only files)."""
    from android_bench.export.calib_data import dataset_calibration, noise_calibration
    from android_bench.export.convert import export_subnet

    weights = subnet_weights(cfg, evaluator, Path(out_dir) / "subnet.pt") if evaluator is not None else None
    quant = None
    if precision != "fp32":
        quant = (dataset_calibration(calib_data[0], calib_data[1], size, WINNER_CALIB_IMAGES) if calib_data
                 else noise_calibration(size, 8))
    res = export_subnet(cfg, out_dir, size, weights=weights, num_classes=num_classes, onnx=False, progress=progress,
                        head=head, precision=precision, quant_calibration=quant)
    return Path(res.files["tflite"])


def timing_cache(tables_dir: str | Path) -> Path:
    """Where ``tables_dir``'s timing networks are converted once (latency/networks.py)."""
    from latency.networks import cache_dir

    return cache_dir(tables_dir) / "nets"


def timing_network(tables_dir: str | Path, cfg: ArchConfig, size: int, head: str, precision: str) -> Path:
    """The timing file of ``cfg`` (random weights, the table's 150 classes) from ``tables_dir``'s cache,
    converted there once if missing: what a winner or a preset is timed as, beside the table's own reference."""
    from latency.networks import cache_dir, timing_network as cached

    return cached(cache_dir(tables_dir), cfg, size, head, precision)


def resolve(device: str) -> Any:
    """The ``android_bench`` device called ``device`` (unknown names: one-line EtfError)."""
    from android_bench.device_config import resolve_device

    return resolve_device(device)


def measure_paired(device: Any, model: str | Path, reference: str | Path, runs: int, warmup: int,
                   threads: int | None, baseline_ms: float | None = None) -> Any:
    """Time ``model`` beside the whole-network ``reference`` (latency/measure.py's paired protocol: ``runs`` split
    over its minimum rounds, more rounds while the ratio is uncertain, off-regime rounds against ``baseline_ms``
    timed again); returns its ``PairedResult`` (raw median, reference median, ratio, rounds)."""
    from latency.measure import MAX_ROUNDS, MIN_ROUNDS
    from latency.measure import measure_paired as paired

    return paired(device, [model], reference, rounds=MIN_ROUNDS, runs=max(1, runs // MIN_ROUNDS), warmup=warmup,
                  threads=threads, baseline_ms=baseline_ms, max_rounds=MAX_ROUNDS)[0]


def reference_baseline(tables_dir: str | Path, setting: Any) -> float | None:
    """The fastest whole-network reference recorded in ``setting``'s table (None without one): what a round of a
    winner's measurement is checked against (latency/measure.py's off-regime rounds)."""
    from latency import table as tbl

    if not tbl.ops_path(tables_dir, setting).exists():
        return None
    return tbl.fastest_reference_ms(tbl.read_e2e(tables_dir, setting))


def record_and_refit(tables_dir: str | Path, setting: Any, measurements: list[tuple], purpose: str,
                     for_search: bool = False) -> Any:
    """Record end-to-end measurements in the setting's table and return the refitted predictor (None: no table;
    ``for_search``: scaled to the table's measured winners, for a refinement's next search)."""
    from latency.predictor import record_and_refit as record, search_predictor

    refitted = record(tables_dir, setting, measurements, purpose)
    return search_predictor(setting, tables_dir, refitted) if refitted is not None and for_search else refitted


def measure(device: Any, model: str | Path, runs: int, warmup: int, threads: int | None) -> Any:
    """Benchmark one exported model on ``device``; returns its ``BenchStats``."""
    return device.benchmark(model, runs=runs, warmup=warmup, threads=threads)

