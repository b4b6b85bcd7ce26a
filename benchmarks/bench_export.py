"""Export the three TopFormer presets and time the files on this CPU: one table.

Run: ``PYTHONPATH=. python benchmarks/bench_export.py [--size 512] [--runs 20] [--warmup 3] [--classes 150]``.
Per preset: TFLite conversion time and ONNX export time, file sizes, fidelity (max abs error vs PyTorch and its
ratio to max |logit|), TFLite op count and TRANSPOSE count (attention head split/merge vs stray), and latency
on this CPU through ``android_bench.LocalDevice``: LiteRT+XNNPACK with 1 and 2 threads, ONNX Runtime with 1 and
2 threads (median of ``--runs`` after ``--warmup``, with the coefficient of variation). A PyTorch eager
forward (1 thread) is timed in the same loop as a fixed reference for machine load.

``--random N`` instead exports N random configs of the space (seeds 0..N-1) and prints their fidelity.
``--heads logits8 labels logits`` instead exports each preset once per output head (``supernet.heads``) and prints
one row per (preset, head): output, TFLite op count, LiteRT+XNNPACK latency with 1 and 2 threads, and for
``labels`` how often its label map agrees with the argmax of the ``logits`` head's full-resolution logits on the
fixed check input (random weights: a smoke number; the agreement that matters is on real images with trained
weights). ``--head`` picks the head of the presets table (default logits8, TopFormer's deployment).
Random weights (non-degenerate BatchNorm, see android_bench.export.deploy); weights do not change latency.

``--precision`` instead times each preset's .tflite at fp32, fp16 and int8 (LiteRT+XNNPACK, ``--threads``):
one fp32 conversion per preset, fp16/int8 quantized from it with ai-edge-quantizer (int8 calibrated on
``--calib-count`` seeded noise inputs: calibration values change the ranges, not the kernels or the work).
``--rounds`` interleaved rounds, each timing every file once (``--runs`` after ``--warmup``) in a rotated
order, so drift hits all files alike; the table gives the median of the round medians, their spread
(min-max) and the ratio to fp32. Smoke run: ``--precision --size 64 --presets topformer-tiny --rounds 2
--runs 3 --warmup 1``. Numbers for a report need a quiet machine (or a phone via etf-bench).

``--sweep N`` instead exports the presets and N random configs with every head (logits8, labels, logits) and every
precision (fp32, fp16, int8) through ``export_subnet`` and prints one row per export (output, fidelity,
agreement, seconds); the fp16/int8 exports reuse the fp32 conversion. Exit status 1 if any failed. The issue's
run: ``--sweep 10 --size 512``.

``--compare`` instead times, per preset, a straightforward ``litert_torch.convert`` of the same static network
(NCHW input, logits at 1/8, no layout work) next to etf's export with each ``--compare-heads`` head at fp32 and
int8, in ``--rounds`` interleaved rounds, with each file's ratio to the straightforward one.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from android_bench.local_device import LocalDevice
from android_bench.export.deploy import build_deployed_model
from android_bench.export.calib_data import noise_calibration
from android_bench.export.convert import export_subnet
from android_bench.export.quantize import quantize_tflite
from android_bench.export.fidelity import fixed_input, run_tflite
from etf.common import EtfError
from supernet.heads import HEADS
from supernet.presets import PRESETS
from supernet.size import model_size
from supernet.space import TABLE1


def _torch_ms(cfg, size: int, classes: int, runs: int) -> float:
    """Median PyTorch eager forward time (1 thread): the load reference."""
    model, _, _ = build_deployed_model(cfg, None, classes)
    x = torch.randn(1, 3, size, size)
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            model(x)
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                model(x)
                times.append((time.perf_counter() - t) * 1000)
    finally:
        torch.set_num_threads(prev)
    return statistics.median(times)


def _fmt_lat(stats) -> str:
    return f"{stats.median_ms:7.1f} ({stats.cv * 100:3.0f}%)"


def bench_presets(args, out_root: Path) -> list[dict]:
    device = LocalDevice(cooldown_s=0.5)
    rows = []
    for name in tqdm(args.presets, desc="presets", file=sys.stderr):
        cfg = PRESETS[name]
        res = export_subnet(cfg, out_root / name, size=args.size, num_classes=args.classes, head=args.head)
        lat = {}
        for kind in ("tflite", "onnx"):
            for threads in (1, 2):
                lat[f"{kind}_{threads}t"] = device.benchmark(res.files[kind], runs=args.runs, warmup=args.warmup,
                                                            threads=threads)
        fid = {f.runtime: f for f in res.fidelity}
        rows.append({
            "preset": name, "gflops": model_size(cfg, args.size, args.classes).flops / 1e9,
            "tflite_convert_s": res.seconds["tflite"], "onnx_export_s": res.seconds["onnx"],
            "tflite_mb": res.file_bytes["tflite"] / 1e6, "onnx_mb": res.file_bytes["onnx"] / 1e6,
            "tflite_err": fid["tflite"].max_abs_error, "tflite_rel": fid["tflite"].relative_error,
            "onnx_err": fid["onnx"].max_abs_error, "onnx_rel": fid["onnx"].relative_error,
            "ops": sum(res.op_counts.values()), "transposes": len(res.transposes),
            "stray_transposes": len(res.stray_transposes),
            **{f"{k}_ms": s.median_ms for k, s in lat.items()}, **{f"{k}_cv": s.cv for k, s in lat.items()},
            "torch_eager_1t_ms": _torch_ms(cfg, args.size, args.classes, max(3, args.runs // 4)),
            "_lat": lat,
        })
    return rows


def print_presets(rows: list[dict], args) -> None:
    print(f"head {args.head}; input 1x{args.size}x{args.size}x3 NHWC, {args.classes} classes, latency median of "
          f"{args.runs} runs after "
          f"{args.warmup} warm-up (cv in brackets), LocalDevice on this CPU (shared machine: timings are noisy)")
    head = (f"{'preset':16s} {'GFLOPs':>6s} {'conv s':>6s} {'onnx s':>6s} {'tfl MB':>6s} {'onnx MB':>7s} "
            f"{'tfl err (rel)':>17s} {'onnx err (rel)':>17s} {'ops':>4s} {'TRANSP':>6s} "
            f"{'TFLite 1T ms':>14s} {'TFLite 2T ms':>14s} {'ORT 1T ms':>14s} {'ORT 2T ms':>14s} {'torch 1T':>8s}")
    print(head)
    for r in rows:
        lat = r["_lat"]
        print(f"{r['preset']:16s} {r['gflops']:6.2f} {r['tflite_convert_s']:6.1f} {r['onnx_export_s']:6.1f} "
              f"{r['tflite_mb']:6.2f} {r['onnx_mb']:7.2f} {r['tflite_err']:8.1e} ({r['tflite_rel']:6.1e}) "
              f"{r['onnx_err']:8.1e} ({r['onnx_rel']:6.1e}) {r['ops']:4d} {r['transposes']:3d}/{r['stray_transposes']:<2d} "
              f"{_fmt_lat(lat['tflite_1t'])} {_fmt_lat(lat['tflite_2t'])} {_fmt_lat(lat['onnx_1t'])} "
              f"{_fmt_lat(lat['onnx_2t'])} {r['torch_eager_1t_ms']:8.1f}")
    print("TRANSP = TRANSPOSE ops in the .tflite / of which stray (not an attention head split or merge)")


def bench_heads(args, out_root: Path) -> list[dict]:
    """Each preset exported with each head in ``args.heads``, timed with 1 and 2 threads in one device session."""
    device = LocalDevice(cooldown_s=0.5)
    rows, exports = [], {}
    for name in tqdm(args.presets, desc="presets x heads", file=sys.stderr):
        for head in args.heads:
            res = export_subnet(PRESETS[name], out_root / name / head, size=args.size, num_classes=args.classes,
                                onnx=False, head=head)
            exports[name, head] = res
    for (name, head), res in exports.items():
        lat = {t: device.benchmark(res.files["tflite"], runs=args.runs, warmup=args.warmup, threads=t) for t in (1, 2)}
        out = res.to_dict()["output"]
        row = {"preset": name, "head": head, "output": f"{out['dtype']} {'x'.join(map(str, out['shape']))}",
               "convert_s": res.seconds["tflite"], "ops": sum(res.op_counts.values()),
               "fidelity_ok": all(f.ok for f in res.fidelity), "agreement": None,
               **{f"tflite_{t}t_ms": s.median_ms for t, s in lat.items()},
               **{f"tflite_{t}t_cv": s.cv for t, s in lat.items()}, "_lat": lat}
        if head == "labels" and (name, "logits") in exports:
            x = fixed_input((1, 3, args.size, args.size)).permute(0, 2, 3, 1).contiguous().numpy()
            labels = run_tflite(res.files["tflite"], x)[..., 0]
            full = run_tflite(exports[name, "logits"].files["tflite"], x).argmax(-1)
            row["agreement"] = float((labels == full).mean())
        rows.append(row)
    return rows


def print_heads(rows: list[dict], args) -> None:
    print(f"input 1x{args.size}x{args.size}x3 NHWC, {args.classes} classes, LiteRT+XNNPACK on this CPU, median of "
          f"{args.runs} runs after {args.warmup} warm-up (cv in brackets); shared machine: timings are noisy")
    print(f"{'preset':16s} {'head':8s} {'output':22s} {'conv s':>6s} {'ops':>4s} {'fid':>4s} {'TFLite 1T ms':>14s} "
          f"{'TFLite 2T ms':>14s} {'labels=argmax(logits)':>21s}")
    for r in rows:
        agree = f"{r['agreement']:.4f}" if r["agreement"] is not None else "-"
        print(f"{r['preset']:16s} {r['head']:8s} {r['output']:22s} {r['convert_s']:6.1f} {r['ops']:4d} "
              f"{'ok' if r['fidelity_ok'] else 'FAIL':>4s} {_fmt_lat(r['_lat'][1])} {_fmt_lat(r['_lat'][2])} "
              f"{agree:>21s}")
    print("labels=argmax(logits): fraction of pixels where the labels head equals the argmax of the logits head "
          "(fixed seeded input, random weights)")


def bench_random(args, out_root: Path) -> list[dict]:
    rows = []
    for seed in tqdm(range(args.random), desc="random configs", file=sys.stderr):
        cfg = TABLE1.sample(seed)
        res = export_subnet(cfg, out_root / f"random{seed}", size=args.size, num_classes=args.classes, seed=seed)
        fid = {f.runtime: f for f in res.fidelity}
        rows.append({"seed": seed, "arch_key": cfg.key(), "blocks": sum(v.depth for v in cfg.vits),
                     "tflite_convert_s": res.seconds["tflite"],
                     "tflite_err": fid["tflite"].max_abs_error, "tflite_rel": fid["tflite"].relative_error,
                     "onnx_err": fid["onnx"].max_abs_error, "onnx_rel": fid["onnx"].relative_error,
                     "max_abs_logit": fid["tflite"].max_abs_logit, "ok": all(f.ok for f in res.fidelity),
                     "transposes": len(res.transposes), "stray_transposes": len(res.stray_transposes)})
    return rows


def print_random(rows: list[dict], args) -> None:
    print(f"{len(rows)} random configs (TABLE1.sample(seed)), input {args.size}x{args.size}, {args.classes} classes; "
          f"tolerance 1e-4 x max |logit|")
    print(f"{'seed':>4s} {'arch key':16s} {'vit blocks':>10s} {'conv s':>6s} {'max|logit|':>10s} {'tfl err':>8s} "
          f"{'tfl rel':>8s} {'onnx err':>8s} {'onnx rel':>8s} {'TRANSP':>6s} {'ok':>3s}")
    for r in rows:
        print(f"{r['seed']:4d} {r['arch_key']:16s} {r['blocks']:10d} {r['tflite_convert_s']:6.1f} "
              f"{r['max_abs_logit']:10.3g} {r['tflite_err']:8.1e} {r['tflite_rel']:8.1e} {r['onnx_err']:8.1e} "
              f"{r['onnx_rel']:8.1e} {r['transposes']:3d}/{r['stray_transposes']:<2d} {'yes' if r['ok'] else 'NO':>3s}")


PRECISION_ORDER = ("fp32", "fp16", "int8")


def sweep_configs(args) -> list[tuple[str, Any]]:
    """The presets, then ``args.sweep`` random configs (``TABLE1.sample(seed)``, seeds 0..N-1)."""
    return [(name, PRESETS[name]) for name in args.presets] + [(f"random {s}", TABLE1.sample(s))
                                                                for s in range(args.sweep)]


def bench_sweep(args, out_root: Path) -> list[dict]:
    """Every config x every head x fp32/fp16/int8 through ``export_subnet``, as ``etf-export`` runs it: the fp32
    export converts (fidelity-checked against PyTorch, with ONNX unless ``--no-onnx``); the fp16 and int8 exports
    reuse that conversion (``fp32_tflite``: the fidelity check runs again on it) and quantize it (int8 calibrated
    on ``--calib-count`` seeded noise inputs), each with its agreement report and its output checked against the
    head's definition. A failure is a row with its one-line error, not the end of the sweep."""
    calib = noise_calibration(args.size, args.calib_count, seed=0)
    rows = []
    jobs = [(label, cfg, head, prec) for label, cfg in sweep_configs(args) for head in HEADS for prec in PRECISION_ORDER]
    fp32_files: dict[tuple[str, str], Path] = {}
    for label, cfg, head, prec in tqdm(jobs, desc="exports", file=sys.stderr):
        out = out_root / label.replace(" ", "") / head / prec
        row = {"config": label, "arch_key": cfg.key(), "head": head, "precision": prec, "ok": False, "error": None}
        t0 = time.perf_counter()
        try:
            if prec != "fp32" and (label, head) not in fp32_files:
                raise EtfError("its fp32 export failed")
            res = export_subnet(cfg, out, size=args.size, num_classes=args.classes, head=head, precision=prec,
                                onnx=prec == "fp32" and not args.no_onnx,
                                quant_calibration=calib if prec != "fp32" else None,
                                fp32_tflite=fp32_files.get((label, head)))
        except EtfError as exc:
            row["error"] = str(exc)
        else:
            if prec == "fp32":
                fp32_files[(label, head)] = res.files["tflite"]
            o = res.to_dict()["output"]
            rel = [f.relative_error for f in res.fidelity if hasattr(f, "relative_error")]  # labels: equal pixels
            row.update(ok=True, output=f"{o['dtype']} {'x'.join(map(str, o['shape']))}",
                       files=sorted(res.files), mb=res.file_bytes["tflite"] / 1e6, worst_rel=max(rel) if rel else None,
                       agreement=res.agreement.label_agreement if res.agreement is not None else None)
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
    return rows


def print_sweep(rows: list[dict], args) -> None:
    configs = len({r["config"] for r in rows})
    failed = [r for r in rows if not r["ok"]]
    print(f"export sweep: {configs} configs ({', '.join(args.presets)} and {args.sweep} random: TABLE1.sample(0.."
          f"{args.sweep - 1})) x heads {', '.join(HEADS)} x {', '.join(PRECISION_ORDER)} at {args.size}x{args.size}, "
          f"{args.classes} classes; fp32 also ONNX: {'no' if args.no_onnx else 'yes'}; int8 calibrated on "
          f"{args.calib_count} seeded noise inputs")
    print(f"{'config':16s} {'head':8s} {'prec':5s} {'ok':>3s} {'output':24s} {'MB':>6s} {'fid rel':>8s} "
          f"{'agree':>7s} {'s':>6s}")
    for r in rows:
        if not r["ok"]:
            print(f"{r['config']:16s} {r['head']:8s} {r['precision']:5s} {'NO':>3s} {r['error']}")
            continue
        rel = f"{r['worst_rel']:.1e}" if r["worst_rel"] is not None else "labels"
        agree = f"{100 * r['agreement']:6.2f}%" if r["agreement"] is not None else "-"
        print(f"{r['config']:16s} {r['head']:8s} {r['precision']:5s} {'yes':>3s} {r['output']:24s} {r['mb']:6.2f} "
              f"{rel:>8s} {agree:>7s} {r['seconds']:6.1f}")
    print(f"{len(rows) - len(failed)} of {len(rows)} exports succeeded"
          + (f"; FAILED: {len(failed)}" if failed else "") + ". fid rel = worst fidelity error / max |logit| of the "
          "fp32 conversion (TFLite, and ONNX for fp32); agree = top-1 labels of the quantized file equal to fp32 "
          "PyTorch on held-out noise inputs")


def interleaved_medians(device, files: dict[tuple[str, str], Path], args) -> dict[tuple[str, str], list[float]]:
    """Each file's median latency in each of ``args.rounds`` rounds; every round times every file once in a
    rotated order (no file always first or last), so drift hits all files alike."""
    keys = list(files)
    medians: dict[tuple[str, str], list[float]] = {k: [] for k in keys}
    for r in tqdm(range(args.rounds), desc="rounds", file=sys.stderr):
        shift = r % len(keys)
        for key in keys[shift:] + keys[:shift]:
            medians[key].append(device.benchmark(files[key], runs=args.runs, warmup=args.warmup,
                                                 threads=args.threads).median_ms)
    return medians


def rows_against(medians: dict[tuple[str, str], list[float]], files: dict[tuple[str, str], Path], what: str,
                 base: str, ratio: str) -> list[dict]:
    """One row per (preset, ``what``) file: size, median of the round medians, their min-max, ``ratio``, the
    median over the median of the same preset's ``base`` file (timed in the same rounds), and ``ratio`` +
    ``_paired``: the median of the per-round ratios (each round's median over the base's in that round: what
    the machine's drift between rounds does not move)."""
    rows = [{"preset": name, what: variant, "mb": files[(name, variant)].stat().st_size / 1e6,
             "median_ms": statistics.median(v), "min_ms": min(v), "max_ms": max(v), "rounds": len(v)}
            for (name, variant), v in medians.items()]
    for row in rows:
        ref = next(r for r in rows if r["preset"] == row["preset"] and r[what] == base)
        row[ratio] = row["median_ms"] / ref["median_ms"]
        row[f"{ratio}_paired"] = per_round_ratio(medians[(row["preset"], row[what])], medians[(row["preset"], base)])
    return rows


def per_round_ratio(num: list[float], den: list[float]) -> float:
    """Median over rounds of ``num``'s round median / ``den``'s in the same round (drift between rounds cancels)."""
    return statistics.median(a / b for a, b in zip(num, den))


def bench_precision(args, out_root: Path) -> list[dict]:
    """Export each preset at fp32, quantize to fp16/int8, then time all files in interleaved rounds."""
    device = LocalDevice(cooldown_s=0.5)
    files: dict[tuple[str, str], Path] = {}
    calib = noise_calibration(args.size, args.calib_count, held_out=0, seed=0).inputs
    for name in tqdm(args.presets, desc="export+quantize", file=sys.stderr):
        res = export_subnet(PRESETS[name], out_root / name / "fp32", size=args.size, num_classes=args.classes,
                            onnx=False, head=args.head)
        files[(name, "fp32")] = res.files["tflite"]
        for prec in PRECISION_ORDER[1:]:
            files[(name, prec)] = out_root / name / prec / "model.tflite"
            quantize_tflite(res.files["tflite"], files[(name, prec)], prec, calib)
    return rows_against(interleaved_medians(device, files, args), files, "precision", "fp32", "vs_fp32")


def print_precision(rows: list[dict], args) -> None:
    print(f"input 1x{args.size}x{args.size}x3 NHWC, {args.classes} classes, head {args.head}, LiteRT+XNNPACK {args.threads} thread(s) "
          f"on this CPU; {args.rounds} interleaved rounds of {args.runs} runs after {args.warmup} warm-up; "
          f"median of round medians (min-max of round medians)")
    print(f"{'preset':16s} {'precision':9s} {'MB':>6s} {'median ms':>10s} {'spread ms':>17s} {'vs fp32':>8s} "
          f"{'per round':>9s}")
    for r in rows:
        print(f"{r['preset']:16s} {r['precision']:9s} {r['mb']:6.2f} {r['median_ms']:10.2f} "
              f"{r['min_ms']:8.2f}-{r['max_ms']:<8.2f} {r['vs_fp32']:7.2f}x {r['vs_fp32_paired']:8.2f}x")
    print("per round = median over rounds of the file's round median / fp32's in the same round")


def straightforward_tflite(name: str, size: int, classes: int, path: Path) -> Path:
    """The baseline a user gets without etf: the same static TopFormer (random weights, non-degenerate BN, as
    etf's exports) with TopFormer's deployment output (logits at 1/8), converted by ``litert_torch.convert`` as it
    comes: NCHW input, no channel-last attention, no NHWC boundary."""
    import litert_torch

    from android_bench.export.deploy import randomize_batchnorm_
    from etf.quiet import captured
    from supernet.heads import Deployed
    from supernet.topformer import TopFormer

    torch.manual_seed(0)
    net = Deployed(randomize_batchnorm_(TopFormer(PRESETS[name], num_classes=classes)), "logits8").eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    with captured("straightforward conversion"):
        litert_torch.convert(net, (torch.randn(1, 3, size, size),)).export(str(path))
    return path


def bench_compare(args, out_root: Path) -> list[dict]:
    """Per preset: the straightforward conversion and etf's export with each of ``args.compare_heads`` at fp32 and
    int8, all timed in interleaved rotated rounds (LiteRT+XNNPACK, ``--threads``)."""
    device = LocalDevice(cooldown_s=0.5)
    files: dict[tuple[str, str], Path] = {}
    calib = noise_calibration(args.size, args.calib_count, held_out=0, seed=0).inputs
    for name in tqdm(args.presets, desc="convert", file=sys.stderr):
        files[(name, "straightforward fp32")] = straightforward_tflite(name, args.size, args.classes,
                                                                       out_root / name / "plain" / "model.tflite")
        for head in args.compare_heads:
            res = export_subnet(PRESETS[name], out_root / name / head / "fp32", size=args.size,
                                num_classes=args.classes, onnx=False, head=head)
            files[(name, f"etf {head} fp32")] = res.files["tflite"]
            int8 = out_root / name / head / "int8" / "model.tflite"
            quantize_tflite(res.files["tflite"], int8, "int8", calib)
            files[(name, f"etf {head} int8")] = int8
    medians = interleaved_medians(device, files, args)
    rows = rows_against(medians, files, "variant", "straightforward fp32", "vs_straightforward")
    for row in rows:  # int8's speed-up over the same head's fp32 file, per round (the issue's 2x target)
        if row["variant"].endswith(" int8"):
            fp32 = (row["preset"], row["variant"].replace(" int8", " fp32"))
            row["int8_speedup_paired"] = per_round_ratio(medians[fp32], medians[(row["preset"], row["variant"])])
    return rows


def print_compare(rows: list[dict], args) -> None:
    print(f"input {args.size}x{args.size}, {args.classes} classes, LiteRT+XNNPACK {args.threads} thread(s) on this CPU; "
          f"{args.rounds} interleaved rounds of {args.runs} runs after {args.warmup} warm-up; median of round medians "
          f"(min-max of round medians); straightforward = litert_torch.convert of the same static net, NCHW, logits "
          f"at 1/8")
    print(f"{'preset':16s} {'variant':22s} {'MB':>6s} {'median ms':>10s} {'spread ms':>17s} {'vs plain':>9s} "
          f"{'per round':>9s} {'int8 speed-up':>13s}")
    for r in rows:
        speedup = f"{r['int8_speedup_paired']:12.2f}x" if "int8_speedup_paired" in r else ""
        print(f"{r['preset']:16s} {r['variant']:22s} {r['mb']:6.2f} {r['median_ms']:10.2f} "
              f"{r['min_ms']:8.2f}-{r['max_ms']:<8.2f} {r['vs_straightforward']:8.2f}x "
              f"{r['vs_straightforward_paired']:8.2f}x {speedup}")
    print("per round = median over rounds of the file's round median / the straightforward file's in the same "
          "round; int8 speed-up = median over rounds of the same head's fp32 round median / the int8 file's")


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512, help="square input size, multiple of 64 [512]")
    ap.add_argument("--classes", type=int, default=150, help="number of classes [150]")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per file and thread count [20]")
    ap.add_argument("--warmup", type=int, default=3, help="warm-up runs [3]")
    ap.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS), help="presets to run")
    ap.add_argument("--random", type=int, default=0, metavar="N",
                    help="instead: export N random configs (seeds 0..N-1) and print their fidelity")
    ap.add_argument("--sweep", type=int, default=None, metavar="N",
                    help="instead: export the presets and N random configs with every head and precision "
                         "(fp16/int8 reuse the fp32 conversion); exit 1 if any export failed")
    ap.add_argument("--no-onnx", action="store_true", help="--sweep: skip the ONNX export of the fp32 files")
    ap.add_argument("--precision", action="store_true",
                    help="instead: time fp32 vs fp16 vs int8 .tflite per preset in interleaved rounds")
    ap.add_argument("--rounds", type=int, default=5, help="--precision: interleaved rounds [5]")
    ap.add_argument("--threads", type=int, default=1, help="--precision: LiteRT threads [1]")
    ap.add_argument("--calib-count", type=int, default=16, help="--precision: int8 calibration inputs [16]")
    ap.add_argument("--head", choices=("logits8", "logits"), default="logits8",
                    help="output head of the presets table [logits8]")
    ap.add_argument("--heads", nargs="+", choices=HEADS, metavar="HEAD",
                    help="instead: one row per preset and head (" + ", ".join(HEADS) + ")")
    ap.add_argument("--compare", action="store_true",
                    help="instead: a straightforward litert-torch conversion (NCHW, 1/8 logits) vs etf's export "
                         "with each --compare-heads head at fp32 and int8, in interleaved rounds")
    ap.add_argument("--compare-heads", nargs="+", choices=HEADS, default=["logits8", "labels"], metavar="HEAD",
                    help="--compare: etf heads to time [logits8 labels]")
    ap.add_argument("--out", type=Path, help="keep the exported files here [a temporary folder]")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="etf-bench-export-") as tmp:
        out_root = args.out or Path(tmp)
        if args.sweep is not None:
            rows = bench_sweep(args, out_root)
        elif args.compare:
            rows = bench_compare(args, out_root)
        elif args.precision:
            rows = bench_precision(args, out_root)
        else:
            rows = (bench_random(args, out_root) if args.random else bench_heads(args, out_root) if args.heads
                    else bench_presets(args, out_root))
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows], indent=2))
    elif args.sweep is not None:
        print_sweep(rows, args)
    elif args.compare:
        print_compare(rows, args)
    elif args.precision:
        print_precision(rows, args)
    elif args.heads:
        print_heads(rows, args)
    elif args.random:
        print_random(rows, args)
    else:
        print_presets(rows, args)

    if args.sweep is not None and not all(r["ok"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
