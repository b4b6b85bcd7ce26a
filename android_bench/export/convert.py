"""Convert a PyTorch module to TFLite (litert-torch) and ONNX (torch.onnx) with NHWC at the model boundary.

``export_tflite`` is the one conversion path of the project: whole networks (``etf-export``) and the single
operators that the latency profiler measures go through it, so both are converted the same way.
``export_subnet`` is the high-level step behind ``etf-export``: config (+ weights) in, checked files out.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from android_bench.export.calib_data import CalibrationSet
from android_bench.export.cia_memo import memoize_cia_scan
from android_bench.export.deploy import SUPERNET, build_deployed_model
from android_bench.export.fold import fold_batchnorms_
from android_bench.litert_runner import TfliteRunner
from etf.common import EtfError, atomic_path
from android_bench.export.fidelity import (DEFAULT_REL_TOL, Agreement, Fidelity, check_fidelity, fixed_input,
                                           measure_agreement)
from android_bench.export.quantize import NEEDS_CALIBRATION, PRECISIONS, quantize_tflite
from supernet.data.datasets import IMAGENET_MEAN, IMAGENET_STD
from etf.quiet import captured
from android_bench.export.layout import NHWCBoundary, channel_last_attention_
from android_bench.export.oplist import (ROLE_HEADS, ROLE_LABEL_UPSAMPLE, Delegation, delegation, op_counts,
                                         tflite_ops, transposes)
from supernet.heads import DEFAULT_HEAD, HEADS, output_spec
from supernet.space import ArchConfig, load_config, save_config
from supernet.trace import check_deploy_size

#: ONNX opset written by :func:`export_onnx` (the dynamo exporter's native opset).
ONNX_OPSET = 18


@contextlib.contextmanager
def quiet_converter(step: str = "converter") -> Iterator[None]:
    """Capture the converters' (litert_torch, torch.export, torch.onnx) output, C++ logs included, at the
    file-descriptor level (:func:`etf.quiet.captured`): dropped on success, its tail printed when the
    conversion fails, all shown with ``--verbose``. Used by :func:`export_tflite`, :func:`export_onnx` and
    ``latency.export_op``.

        with quiet_converter("TFLite conversion"):
            litert_torch.convert(module, samples).export(path)
    """
    with captured(step):
        yield



def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


def _nhwc_sample(input_shape: tuple[int, ...], nhwc: bool) -> torch.Tensor:
    sample = torch.randn(*input_shape)
    return sample.permute(0, *range(2, len(input_shape)), 1).contiguous() if nhwc else sample


def export_tflite(module: nn.Module, input_shape: tuple[int, ...], path: str | Path, nhwc: bool = True,
                  quiet: bool = True) -> Path:
    """Convert ``module`` (fed one float32 tensor of NCHW ``input_shape``) to a ``.tflite`` file at ``path``.

    With ``nhwc`` the model's input and output are channel-last (``1xHxWxC``); the converter then cancels
    the layout transposes against its own NHWC lowering, so none remain at the boundary. TopFormer attention
    blocks are converted in their channel-last form (:class:`~android_bench.export.layout.ChannelLastAttention`, same
    function), which leaves only the transposes that split/merge heads. BatchNorms are folded into their
    convolutions first (the converter would fold them too; it is just faster). Written atomically: a failed
    conversion leaves no file. ``module`` itself is not modified.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    memoize_cia_scan()
    module = channel_last_attention_(copy.deepcopy(module)).eval()
    fold_batchnorms_(module)  # same file, less conversion time (android_bench.export.fold)
    sample = _nhwc_sample(input_shape, nhwc)
    try:
        with quiet_converter("TFLite conversion") if quiet else contextlib.nullcontext(), atomic_path(path) as tmp:
            import litert_torch  # heavy import, only when converting; its import-time chatter is captured too

            wrapped = litert_torch.to_channel_last_io(module, args=[0], outputs=[0]) if nhwc else module
            edge = litert_torch.convert(wrapped, (sample,))
            edge.export(str(tmp))
    except Exception as exc:  # the converter raises many types; report one line
        raise EtfError(f"TFLite conversion failed: {_first_line(exc)}") from exc
    return path


def export_onnx(module: nn.Module, input_shape: tuple[int, ...], path: str | Path, nhwc: bool = True,
                quiet: bool = True, output_name: str = "logits") -> Path:
    """Export ``module`` (fed one float32 tensor of NCHW ``input_shape``) to a single-file ``.onnx`` at ``path``
    with the torch.onnx dynamo exporter (opset 18), input ``image`` and output ``output_name`` (``logits``, or
    ``labels`` for the labels head).

    With ``nhwc`` the boundary is channel-last like the TFLite file (the two permutes are the graph's first and
    last Transpose), so both files compute the same function. Written atomically.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    memoize_cia_scan()
    wrapped = (NHWCBoundary(module) if nhwc else module).eval()
    sample = _nhwc_sample(input_shape, nhwc)
    try:
        with quiet_converter("ONNX export") if quiet else contextlib.nullcontext(), atomic_path(path) as tmp:
            torch.onnx.export(wrapped, (sample,), str(tmp), dynamo=True, opset_version=ONNX_OPSET,
                              input_names=["image"], output_names=[output_name], external_data=False,
                              verbose=False)
    except Exception as exc:
        raise EtfError(f"ONNX export failed: {_first_line(exc)}") from exc
    return path


# ----------------------------------------------------------------------------------------------------------
# export_subnet: config (+ weights) -> checked model.tflite / model.onnx / arch.json / export.json
# ----------------------------------------------------------------------------------------------------------

TFLITE_NAME, ONNX_NAME, ARCH_NAME, REPORT_NAME = "model.tflite", "model.onnx", "arch.json", "export.json"
#: Default number of inputs of the agreement report of an fp16/int8 file.
DEFAULT_AGREEMENT_INPUTS = 8
#: Label agreement below which the export report carries a warning note.
LOW_AGREEMENT = 0.9


@dataclass
class ExportResult:
    """What :func:`export_subnet` wrote and measured (also saved as ``export.json``)."""

    out_dir: Path
    arch: ArchConfig
    size: int
    num_classes: int
    weights: str | None
    weights_kind: str
    files: dict[str, Path]
    file_bytes: dict[str, int]
    seconds: dict[str, float]
    fidelity: list[Fidelity]
    op_counts: dict[str, int]
    transposes: list[dict]
    layout: str = "NHWC"
    notes: list[str] = field(default_factory=list)
    precision: str = "fp32"
    quantization: dict[str, Any] | None = None  # recipe and calibration source of an fp16/int8 file
    agreement: Agreement | None = None  # fp16/int8: how the file follows the fp32 model
    io: dict[str, dict] = field(default_factory=dict)  # input/output as read from model.tflite
    head: str = DEFAULT_HEAD
    output: dict[str, Any] = field(default_factory=dict)  # name, shape, layout, dtype, head: read off the .tflite
    bn: str = "random"  # recalibrated | uncalibrated (explicitly allowed) | stored (static checkpoint) | random
    calibration: dict[str, Any] | None = None
    delegation: Delegation | None = None  # how LiteRT's CPU delegate (XNNPACK) takes model.tflite

    @property
    def stray_transposes(self) -> list[dict]:
        """TRANSPOSE ops that the architecture does not need (boundary or layout ones): should be empty."""
        return [t for t in self.transposes if t["role"] not in (ROLE_HEADS, ROLE_LABEL_UPSAMPLE)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir), "arch_key": self.arch.key(), "size": self.size,
            "num_classes": self.num_classes, "weights": self.weights, "weights_kind": self.weights_kind,
            "head": self.head, "precision": self.precision,
            "input": {"name": "image", "shape": [1, self.size, self.size, 3], "layout": self.layout,
                      "dtype": "float32", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                      **self.io.get("input", {})},
            "output": {**(self.output or output_spec(self.head, self.size, self.num_classes).to_dict()),
                       **{k: v for k, v in self.io.get("output", {}).items() if k in ("tflite_name", "quantization")}},
            "files": {k: str(v) for k, v in self.files.items()}, "file_bytes": self.file_bytes,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "fidelity": [f.to_dict() for f in self.fidelity],
            "quantization": self.quantization,
            "agreement": self.agreement.to_dict() if self.agreement is not None else None,
            "op_counts": self.op_counts, "transposes": self.transposes,
            "stray_transposes": len(self.stray_transposes), "notes": self.notes,
            "bn": self.bn, "calibration": self.calibration,
            "delegation": self.delegation.to_dict() if self.delegation is not None else None,
        }


def _check_precision(precision: str, calibration: CalibrationSet | None) -> None:
    if precision not in PRECISIONS:
        raise EtfError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision in NEEDS_CALIBRATION and (calibration is None or not calibration.inputs):
        raise EtfError(f"--precision {precision} needs calibration images: pass --calib-data DIR (a folder of "
                       "the dataset the model was trained on; its training split is read)")


def _agreement_inputs(calibration: CalibrationSet | None, size: int, count: int,
                      seed: int) -> tuple[list[torch.Tensor], str]:
    """Held-out dataset images when there are some, else seeded standard-normal inputs; and what they are."""
    if calibration is not None and calibration.held_out and calibration.source.get("kind") == "dataset":
        held = calibration.held_out[:count]
        src = calibration.source
        return held, f"{len(held)} held-out {src['dataset']} {src['split']} images (not used for calibration)"
    inputs = [fixed_input((1, 3, size, size), seed + k)[0] for k in range(count)]
    return inputs, f"{count} seeded standard-normal inputs (no dataset images given)"


def _tflite_output(path: Path) -> tuple[tuple[int, ...], str]:
    """Shape and dtype name of output 0 of the .tflite at ``path``, as the runtime reports them."""
    from ai_edge_litert.interpreter import Interpreter

    with captured("LiteRT interpreter creation", tail=False):
        detail = Interpreter(model_path=str(path)).get_output_details()[0]
    return tuple(int(d) for d in detail["shape"]), detail["dtype"].__name__


def export_subnet(cfg_or_preset: ArchConfig | str | Path, out_dir: str | Path, size: int = 512,
                  weights: str | Path | None = None, num_classes: int | None = None, onnx: bool = True,
                  seed: int = 0, rel_tol: float | None = None,
                  progress: Callable[[str], None] | None = None, calibration: Any = None,
                  allow_uncalibrated: bool = False, head: str = DEFAULT_HEAD, precision: str = "fp32",
                  quant_calibration: CalibrationSet | None = None,
                  agreement_inputs: int = DEFAULT_AGREEMENT_INPUTS,
                  fp32_tflite: str | Path | None = None) -> ExportResult:
    """Export the deployed model of a config (``ArchConfig``, preset name or JSON path) with output ``head``
    (``supernet.heads``: logits8, labels, logits) to ``out_dir``: ``model.tflite``, ``model.onnx`` (unless
    ``onnx`` is False), ``arch.json`` and ``export.json`` (which records the head and the output's name, NHWC
    shape and dtype as read back from the .tflite, and checks them against the head's definition).

    Weights: see :func:`android_bench.export.deploy.build_deployed_model` (``num_classes`` None = from the checkpoint, or
    150). After conversion, every file is run on a fixed input and compared with PyTorch; an error past
    ``rel_tol`` x max |logit| raises :class:`EtfError`. All files are built in a staging folder and moved into
    ``out_dir`` only when every check passed, so bad input or a failed check leaves nothing behind (with
    ``onnx`` False, a ``model.onnx`` left by an earlier export is removed, as it no longer matches).

    One artefact: a subnet of a *supernet* checkpoint ships BN statistics recalibrated for that subnet,
    from ``calibration`` (a ``supernet.evaluation.evaluator.CalibrationSpec``: the same batches the evaluator
    scored it with); without one the export is refused unless ``allow_uncalibrated`` (the shared statistics
    of the supernet are wrong for any single subnet: ~15 mIoU points on the synthetic set). A static checkpoint
    (e.g. the search's ``subnet.pt``, recalibrated when it was saved) ships as stored. The fidelity check
    compares the files with the model as shipped, recalibrated.

    ``precision`` fp16 / int8 (:mod:`android_bench.export.quantize`): the fp32 conversion is checked as above,
    then quantized into ``model.tflite`` (int8 from ``quant_calibration.inputs``, required), and the quantized
    file gets an agreement report against the fp32 model instead of a hard limit: top-1 label agreement per
    pixel and logit errors on ``agreement_inputs`` held-out calibration-source images (seeded noise without a
    dataset). ``model.onnx`` stays fp32.

    ``fp32_tflite``: an fp32 conversion of the same model made earlier (e.g. the fp32 export of a sweep over
    precisions): copied instead of converted again (~20-60 s saved); the fidelity check still compares it with
    the model, so a file of another model is refused like a bad conversion.
    """
    say = progress or (lambda _msg: None)
    if head not in HEADS:
        raise EtfError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    cfg = cfg_or_preset if isinstance(cfg_or_preset, ArchConfig) else load_config(cfg_or_preset)
    check_deploy_size(size)
    _check_precision(precision, quant_calibration)
    if agreement_inputs < 1:
        raise EtfError(f"the agreement report needs at least one input, got {agreement_inputs}")
    if weights is not None and calibration is None and not allow_uncalibrated:
        from android_bench.export.deploy import checkpoint_kind

        if checkpoint_kind(weights) == SUPERNET:
            raise EtfError(f"{weights} is a supernet checkpoint: its shared BN statistics are not this subnet's (the "
                           f"search scored it after recalibration); pass --data DIR --dataset NAME to recalibrate as "
                           f"etf-search did, export the search's SEARCH_DIR/subnet.pt instead, or --no-recalibrate")
    batches = None
    if calibration is not None:
        batches, data_classes = calibration.batches()
        say(f"recalibrating BN statistics on {calibration.n_batches}x{calibration.batch} crops of {calibration.data}")
    model, classes, kind = build_deployed_model(cfg, weights, num_classes, seed, calib_batches=batches,
                                                head=head)
    spec = output_spec(head, size, classes)
    if batches is not None and data_classes != classes:
        raise EtfError(f"{weights} has {classes} classes but the calibration data {calibration.data} has {data_classes}")
    bn = ("recalibrated" if batches is not None else "uncalibrated" if kind == SUPERNET else
          "stored" if weights is not None else "random")
    shape = (1, 3, size, size)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise EtfError(f"output path exists and is not a folder: {out_dir}")
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".etf-export-", dir=out_dir))
    except OSError as exc:
        raise EtfError(f"cannot create output folder {out_dir}: {exc.strerror or exc}") from None
    try:
        seconds: dict[str, float] = {}
        notes: list[str] = []
        quantized = precision != "fp32"
        files = {"tflite": stage / (".fp32.tflite" if quantized else TFLITE_NAME)}
        t0 = time.perf_counter()
        if fp32_tflite is not None:
            say(f"reusing the fp32 conversion {fp32_tflite}")
            try:
                shutil.copyfile(fp32_tflite, files["tflite"])
            except OSError as exc:
                raise EtfError(f"cannot read the fp32 conversion {fp32_tflite}: {exc.strerror or exc}") from None
        else:
            say(f"converting to TFLite ({size}x{size}, head {head})")
            export_tflite(model, shape, files["tflite"])
            seconds["tflite"] = time.perf_counter() - t0
        if onnx:
            say("exporting to ONNX")
            files["onnx"] = stage / ONNX_NAME
            t0 = time.perf_counter()
            export_onnx(model, shape, files["onnx"], output_name=spec.name)
            seconds["onnx"] = time.perf_counter() - t0
        say("checking fidelity against PyTorch")
        t0 = time.perf_counter()
        fid = check_fidelity(model, files, shape, nhwc=True, seed=seed, rel_tol=rel_tol or DEFAULT_REL_TOL)
        seconds["fidelity"] = time.perf_counter() - t0
        quant, agree = None, None
        if quantized:
            fid = [dataclasses.replace(f, runtime="tflite-fp32") if f.runtime == "tflite" else f for f in fid]
            say(f"quantizing to {precision} (ai-edge-quantizer)")
            t0 = time.perf_counter()
            quant = quantize_tflite(files["tflite"], stage / TFLITE_NAME, precision,
                                    quant_calibration.inputs if quant_calibration is not None else None)
            seconds["quantize"] = time.perf_counter() - t0
            if quant_calibration is not None:
                quant["calibration"] = quant_calibration.source
                quant_classes = quant_calibration.source.get("num_classes")
                if quant_classes is not None and quant_classes != classes:
                    notes.append(f"calibration images come from a {quant_classes}-class dataset, the model has "
                                 f"{classes} classes: is --calib-data the dataset it was trained on?")
            files["tflite"] = stage / TFLITE_NAME
            say("measuring agreement with the fp32 model")
            t0 = time.perf_counter()
            inputs, desc = _agreement_inputs(quant_calibration, size, agreement_inputs, seed)
            agree = measure_agreement(model, files["tflite"], inputs, precision, desc)
            seconds["agreement"] = time.perf_counter() - t0
            if agree.label_agreement < LOW_AGREEMENT:
                notes.append(f"{precision} top-1 labels agree with fp32 on only {100 * agree.label_agreement:.1f}% "
                             f"of pixels ({desc})")
        runner = TfliteRunner(files["tflite"])
        io = {side: {("tflite_name" if k == "name" else k): v for k, v in info.to_dict().items()}
              for side, info in (("input", runner.input), ("output", runner.output))}
        del runner
        ops = tflite_ops(files["tflite"])
        out_shape, out_dtype = _tflite_output(files["tflite"])
        if out_shape != spec.shape or out_dtype != spec.dtype:
            raise EtfError(f"the exported {head} head returns {out_dtype} {list(out_shape)}, not the "
                           f"{spec.dtype} {list(spec.shape)} it is defined to return")
        heads = {v.heads for v in cfg.vits}
        save_config(cfg, stage / ARCH_NAME)
        result = ExportResult(
            out_dir=out_dir, arch=cfg, size=size, num_classes=classes,
            weights=str(weights) if weights is not None else None, weights_kind=kind,
            files={k: out_dir / p.name for k, p in files.items()} | {"arch": out_dir / ARCH_NAME,
                                                                     "report": out_dir / REPORT_NAME},
            file_bytes={k: p.stat().st_size for k, p in files.items()}, seconds=seconds, fidelity=fid,
            op_counts=op_counts(ops), transposes=transposes(ops, heads), notes=notes, precision=precision,
            quantization=quant, agreement=agree, io=io, bn=bn,
            calibration=calibration.to_dict() if calibration is not None else None, head=head,
            output={**spec.to_dict(), "shape": list(out_shape), "dtype": out_dtype},
            delegation=delegation(files["tflite"]))
        (stage / REPORT_NAME).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        for name in [p.name for p in files.values()] + [ARCH_NAME, REPORT_NAME]:  # report last
            os.replace(stage / name, out_dir / name)
        if not onnx:  # a model.onnx of an earlier export would no longer match model.tflite
            (out_dir / ONNX_NAME).unlink(missing_ok=True)
        return result
    except BaseException:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
