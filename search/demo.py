"""The README's main job on this CPU, from nothing: ``make demo`` (``python -m search.cli.demo``).

Stages (each skipped when its artefact exists, so a rerun resumes):
  1. synthetic data (NOT ADE20K)            -> OUT/data
  2. train a small supernet (etf-train)     -> OUT/train/last.pt
  3. profile this CPU (etf-profile, reduced) -> OUT/tables (for --head, default logits8: the model's output)
  4. fit the latency predictor               (latency.predictor.load_for_device)
  5. measure TopFormer-Tiny and -Small end to end (TFLite, this CPU; timing files in OUT/tables/cache/nets)
  6. search at a target between their measured latencies, export, re-benchmark -> OUT/search
  7. search at each preset's measured latency (the preset comparison) -> OUT/search_at_tiny, OUT/search_at_small
  8. fine-tune each of those winners and its preset the same way (etf-finetune)  -> OUT/finetune
  9. print the final table (held-out report-split mIoU with bootstrap intervals, inherited and fine-tuned
     weights, and the shipped .tflite's own mIoU in LiteRT) and where every artefact is.
``--quick`` is a tiny version for the end-to-end test (a few minutes). Full run: under 30 min on 2 cores.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etf.common import EtfError, atomic_write_json
from supernet.presets import PRESETS
from supernet.space import load_config
from supernet.size import model_size

from search import pieces
from search.pipeline import SearchJob, run_job
from search.finetune_compare import FinetuneSettings, finetune_and_compare
from search.report import ReportScorer, fmt_diff


@dataclass(frozen=True)
class DemoScale:
    """Sizes of one demo run (quick for the test, full for ``make demo``)."""

    train_images: int
    val_images: int
    data_size: int
    classes: int
    train_iters: int
    train_batch: int
    train_size: int
    train_lr: float
    train_head_lr_mult: float
    train_random: int  # random subnets per sandwich step besides max and min
    deploy_size: int  # latency table, export and benchmark input side
    profile_minutes: float
    profile_e2e: int
    eval_size: int
    n_calib: int
    n_val: int
    budget: int
    compare_budget: int
    bench_runs: int
    refine: int  # refinement rounds of each search (etf-search --refine)
    finetune_iters: int  # steps of etf-finetune for each searched winner and its preset
    finetune_lr: float


QUICK = DemoScale(train_images=24, val_images=12, data_size=64, classes=5, train_iters=12, train_batch=4,
                  train_size=64, train_lr=2e-3, train_head_lr_mult=10.0, train_random=2, deploy_size=64,
                  profile_minutes=0.5, profile_e2e=2, eval_size=64, n_calib=2, n_val=6, budget=6, compare_budget=0,
                  bench_runs=10, refine=1, finetune_iters=2, finetune_lr=5e-4)
#: The full demo trains like the documented run (docs/training.md: 750 iterations at 96 px, where the presets
#: come out ordered Base >= Small >= Tiny), shorter and with one random subnet per sandwich step (1.2 -> 0.8 s
#: a step here), so that the whole flow, fine-tuning included, fits in 30 minutes on 2 cores.
#: ``profile_e2e``: 12 whole networks for the correction (the smallest config, the presets and 8 random subnets; 6
#: until 2026-11-28): refitted with 12 instead of its first 6, the demo-size table scored 73 / 93 and 37 / 80 % of
#: two fresh sets of 30 held-out subnets within +-5 / +-10 % instead of 50 / 77 and 0 / 60 (the anchors sit apart
#: from the random subnets a search picks from; latency/RESULTS.md). ~70 s more profiling.
FULL = DemoScale(train_images=800, val_images=100, data_size=128, classes=10, train_iters=600, train_batch=8,
                 train_size=96, train_lr=2e-3, train_head_lr_mult=1.0, train_random=1, deploy_size=256,
                 profile_minutes=6.0, profile_e2e=12, eval_size=96, n_calib=4, n_val=50, budget=150,
                 compare_budget=80, bench_runs=30, refine=2, finetune_iters=150, finetune_lr=5e-4)


class Stages:
    """Prints numbered stage headers with timing and remembers where each artefact is."""

    def __init__(self, total: int) -> None:
        self.total, self.n, self.t0 = total, 0, time.perf_counter()
        self.artefacts: list[tuple[str, str]] = []

    def start(self, title: str) -> float:
        self.n += 1
        print(f"\n[{self.n}/{self.total}] {title}  (t={time.perf_counter() - self.t0:.0f}s)", flush=True)
        return time.perf_counter()

    def done(self, t: float, what: str, path: Path | str | None = None, skipped: bool = False) -> None:
        verb = "skipped, exists" if skipped else f"done in {time.perf_counter() - t:.0f}s"
        print(f"      {verb}: {what}" + (f" -> {path}" if path else ""), flush=True)
        if path:
            self.artefacts.append((what, str(path)))


#: The training settings the demo chooses (so a resumed run checks them against the checkpoint's).
TRAIN_GIVEN = ("data", "dataset", "out", "iters", "batch", "size", "lr", "head_lr_mult", "num_random", "workers",
               "ckpt_every", "device")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def torch_threads(requested: int | None) -> int:
    """Intra-op threads for training/evaluation: ``requested``, else every core on an idle machine and one on a
    busy one (on a 2-core box shared with other jobs, 2 spinning threads ran a training step 15x slower than 1)."""
    if requested:
        return requested
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return cores if load < cores - 0.5 else 1


def _finished_search(job: SearchJob) -> dict[str, Any] | None:
    """The summary of ``job`` when an earlier run finished this very job (same settings, refinement ended, the
    shipped winner is best.json's), else None. A finished search is not run again: its refinements appended the
    winners to the latency table, so a rerun would search under another predictor and could end elsewhere."""
    summary = _read_json(job.out / "summary.json")
    if not ("refine_stop" in summary and summary.get("job") == job.to_dict() and (job.out / "best.json").exists()):
        return None
    if job.export and summary.get("model_key") != load_config(job.out / "best.json").key():
        return None
    return summary


def _search_stage(job: SearchJob, **parts: Any) -> dict[str, Any]:
    """Run the search ``job``, or reuse its finished summary (printed as skipped)."""
    done = _finished_search(job)
    if done is not None:
        print(f"      skipped, exists: search at {job.target:g} ms ({done['refine_stop']}) -> {job.out}", flush=True)
        return done
    return run_job(job, **parts)


def run_demo(out: Path, scale: DemoScale, quick: bool, device_name: str = "local",
             threads: int | None = None, head: str = "logits8") -> dict[str, Any]:
    """Run (or resume) every stage with output ``head`` (profiled, predicted, exported and measured with it);
    returns the final table rows and artefact paths. Torch's thread count is set for the run and restored after
    it (the caller's process keeps its own)."""
    import torch

    previous = torch.get_num_threads()
    try:
        return _run_demo(out, scale, quick, device_name, threads, head)
    finally:
        torch.set_num_threads(previous)


def _run_demo(out: Path, scale: DemoScale, quick: bool, device_name: str, threads: int | None,
              head: str) -> dict[str, Any]:
    import torch

    from latency.setting import make_setting

    setting = make_setting(device_name, scale.deploy_size, None, "fp32", head)
    n_threads = torch_threads(threads)
    torch.set_num_threads(n_threads)
    print(f"etf-demo: {'quick' if quick else 'full'} run in {out}, {n_threads} torch thread(s); latency setting: "
          f"{setting.describe()}", flush=True)
    st = Stages(9)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "demo_state.json"
    state = _read_json(state_path)

    # 1. data
    t = st.start("synthetic segmentation data (NOT ADE20K: generated shapes and textures)")
    from supernet.data.synthetic import make_synthetic

    data = out / "data"
    meta = make_synthetic(data, train=scale.train_images, val=scale.val_images, size=scale.data_size,
                          classes=scale.classes, seed=0, progress=True)
    st.done(t, f"{scale.train_images}+{scale.val_images} images, {scale.classes} classes, {scale.data_size}px", data,
            skipped=not meta["created"])

    # 2. supernet
    t = st.start(f"train a small supernet ({scale.train_iters} iterations, sandwich rule, {scale.train_size}px)")
    train_dir = out / "train"
    ckpt = train_dir / "last.pt"
    if state.get("trained_iters") == scale.train_iters and ckpt.exists():
        st.done(t, "supernet checkpoint", ckpt, skipped=True)
    else:
        from supernet.training.train import TrainConfig, train

        cfg = TrainConfig(data=str(data), dataset="synthetic", out=str(train_dir), iters=scale.train_iters,
                          batch=scale.train_batch, size=scale.train_size, lr=scale.train_lr,
                          head_lr_mult=scale.train_head_lr_mult, num_random=scale.train_random, workers=0,
                          ckpt_every=25, device="cpu")
        train(cfg, resume=ckpt.exists(), given=set(TRAIN_GIVEN))
        state["trained_iters"] = scale.train_iters
        atomic_write_json(state_path, state)
        st.done(t, "supernet checkpoint", ckpt)

    # 3. latency table of this CPU
    t = st.start(f"profile this CPU's operators at {scale.deploy_size}px (REDUCED table: {scale.profile_minutes:g} "
                 f"min budget, no adaptive sampling)")
    tables = out / "tables"
    if state.get("profiled") == [device_name, scale.deploy_size, head] and tables.exists():
        st.done(t, "latency table (reduced)", tables, skipped=True)
    else:
        from latency.passes import unsteady_warning
        from latency.profile import ProfileSettings, Profiler

        settings = ProfileSettings(size=scale.deploy_size, tables_dir=str(tables), budget_min=scale.profile_minutes,
                                   adaptive={}, e2e=scale.profile_e2e, head=head)
        profiled = Profiler([device_name], settings, progress=True).run()  # minutes: ETA every 30 s in a log
        state["profiled"] = [device_name, scale.deploy_size, head]
        atomic_write_json(state_path, state)
        st.done(t, "latency table (reduced)", tables)
        warning = unsteady_warning(profiled.get(device_name, {}).get("passes_disagree", {}))
        if warning:  # the searched winners' verdicts below inherit it (search/RESULTS.md, demoR)
            print("      " + warning, flush=True)

    # 4. predictor
    t = st.start("fit the latency predictor")
    predictor = pieces.load_predictor(setting, tables)
    predict = pieces.predictor_latency_fn(predictor)
    st.done(t, f"predictor for {setting.describe()}")

    # 5. presets end to end
    t = st.start("measure TopFormer-Tiny and -Small end to end on this CPU (TFLite)")
    device = pieces.resolve(device_name)
    evaluator = pieces.load_evaluator(ckpt, data, "synthetic", scale.eval_size, scale.n_calib, scale.n_val, 8)
    reporter = pieces.load_report_evaluator(evaluator, data, "synthetic", scale.eval_size, None, 8)
    num_classes = evaluator.num_classes
    # latency of the deployed network the predictor models (its class count, e.g. 150 as on ADE20K); weights
    # do not change latency, so the presets are timed with random weights
    latency_classes = pieces.predictor_num_classes(predictor, num_classes)
    same_head = state.get("preset_head", "logits") == head  # measurements of another head are not reused
    measured: dict[str, float] = state.get("preset_ms", {}) if same_head else {}
    spread: dict[str, float] = state.get("preset_std_ms", {}) if same_head else {}
    paired: dict[str, list[float]] = state.get("preset_paired", {}) if same_head else {}  # [reference ms, ratio]
    names = ("topformer-tiny", "topformer-small")
    if not all(n in measured and n in spread and n in paired for n in names):
        # timing files from the table's cache (latency/networks.py: random weights, the table's class count;
        # TopFormer-Tiny is the table's own whole-network reference, converted once)
        print(f"      converting {', '.join(names)} for timing ({latency_classes} classes, head {head}; cached in "
              f"{pieces.timing_cache(tables)}) ...", flush=True)
        models = {n: pieces.timing_network(tables, PRESETS[n], scale.deploy_size, head, "fp32") for n in names}
        # the paired protocol: both presets timed beside the reference (TopFormer-Tiny itself: its ratio ~1)
        from latency.measure import MAX_ROUNDS, MIN_ROUNDS, REFERENCE_PRESET, measure_paired

        results = measure_paired(device, [models[n] for n in names], models[REFERENCE_PRESET], rounds=MIN_ROUNDS,
                                 runs=max(1, scale.bench_runs // MIN_ROUNDS), warmup=3, threads=setting.threads,
                                 max_rounds=MAX_ROUNDS)
        for name, res in zip(names, results):
            measured[name], spread[name], paired[name] = res.raw_ms, res.std_ms, [res.ref_ms, res.ratio]
        state["preset_ms"], state["preset_std_ms"], state["preset_paired"] = measured, spread, paired
        state["preset_head"] = head
        atomic_write_json(state_path, state)
    tiny_ms, small_ms = measured["topformer-tiny"], measured["topformer-small"]
    st.done(t, f"TopFormer-Tiny {tiny_ms:.2f} ms, -Small {small_ms:.2f} ms measured (paired rounds, head {head})",
            state_path)
    before = {n: float(predict([PRESETS[n]])[0]) for n in measured}
    # the closed loop: the presets measured end to end become 'preset' rows of the setting's end-to-end table
    # (a reduced table's few random subnets are mostly far larger than the presets, so the correction
    # extrapolates badly there) and the predictor is refitted from it
    refitted = pieces.record_and_refit(tables, setting,
                                       [(PRESETS[n], measured[n], spread[n], scale.bench_runs, *paired[n])
                                        for n in names], "preset")
    if refitted is not None:
        predictor = refitted
        predict = pieces.predictor_latency_fn(predictor)
    after = {n: float(predict([PRESETS[n]])[0]) for n in measured}
    print("      predictor's whole-network correction refitted with the two presets measured end to end: "
          + ", ".join(f"{n} predicted {before[n]:.2f} -> {after[n]:.2f} ms (measured {measured[n]:.2f})"
                      for n in measured), flush=True)

    # 6. the main search between them
    target = round((tiny_ms + small_ms) / 2, 2)
    t = st.start(f"coordinate-descent search at {target:.2f} ms (between Tiny and Small), export, re-benchmark")
    common = dict(unit="ms", algo="cd-block", device=device_name, tables=tables, supernet=ckpt, data=data,
                  dataset="synthetic", eval_size=scale.eval_size, n_calib=scale.n_calib, n_val=scale.n_val, batch=8,
                  size=scale.deploy_size, runs=scale.bench_runs, warmup=3, head=head, refine=scale.refine,
                  frame_ms=round(float(paired["topformer-tiny"][0]), 4))  # the speed the targets were measured at
    # the searches with an export load the predictor from the table themselves (predictor None): refitted on
    # every winner the searches before them measured, and scaled to those winners (etf-search's closed loop)
    main_summary = _search_stage(SearchJob(out=out / "search", target=target, budget=scale.budget, **common),
                                 evaluator=evaluator, predictor=None, device=device, reporter=reporter)
    st.done(t, "search (best.json, search_log.csv, pareto.png, model.tflite)", out / "search")

    # 7. at each preset's measured latency
    t = st.start("search at each preset's measured and predicted latency (hand-designed vs searched)")
    compare: dict[str, dict[str, Any]] = {}
    if scale.compare_budget > 0:
        for name, ms in (("topformer-tiny", tiny_ms), ("topformer-small", small_ms)):
            short = name.split("-")[1]
            try:
                compare[name] = _search_stage(SearchJob(out=out / f"search_at_{short}", target=round(ms, 2),
                                                        budget=scale.compare_budget, **common),
                                              evaluator=evaluator, predictor=None, device=device,
                                              reporter=reporter)
            except EtfError as exc:  # e.g. the predictor puts the whole space above the preset's measured latency
                print(f"      NOT RUN at {name}'s {ms:.2f} ms: {exc}", flush=True)
                compare[name] = {"error": str(exc), "target": round(ms, 2)}
        # the same comparison in the predictor's frame: at each preset's *predicted* latency the preset itself
        # is feasible, so a biased predictor cannot hand either side an advantage (search only, no export)
        for name in ("topformer-tiny", "topformer-small"):
            short = name.split("-")[1]
            pred_ms = float(predict([PRESETS[name]])[0])
            compare[f"{name} (pred)"] = _search_stage(
                SearchJob(out=out / f"search_at_{short}_predicted", target=round(pred_ms, 2) + 0.01,
                          budget=scale.compare_budget, export=False, **common),
                evaluator=evaluator, predictor=predictor, device=device, reporter=reporter)
        for name, summary in compare.items():
            if "error" not in summary:
                st.done(t, f"comparison search at {name}'s latency", summary["out"])
    else:
        print("      skipped in --quick (budget 0)")

    # 8. fine-tune each winner at a preset's measured latency and that preset the same way (the seed study's
    # comparison: both trained, not only inherited weights)
    t = st.start(f"fine-tune each winner at a preset's measured latency and the preset, {scale.finetune_iters} "
                 "steps each, same recipe (etf-finetune)")
    tuned: dict[str, dict[str, Any]] = {}
    recipe = FinetuneSettings(iters=scale.finetune_iters, lr=scale.finetune_lr, batch=scale.train_batch,
                              size=scale.train_size)
    for name in ("topformer-tiny", "topformer-small"):
        if name in compare and "error" not in compare[name]:
            short = name.split("-")[1]
            tuned[name] = finetune_and_compare(ckpt, load_config(compare[name]["best_json"]), PRESETS[name], name,
                                               data, "synthetic", out / "finetune" / short, reporter, scale.eval_size,
                                               recipe)
            st.done(t, f"fine-tuned winner and {name}", out / "finetune" / short)
    if not tuned:
        print("      skipped: no comparison search ran" + (" (--quick)" if not scale.compare_budget else ""))

    # 9. the table: held-out (report split) mIoU only; the searches selected on the search split
    st.start("results")
    scorer = ReportScorer(reporter)
    rows = []
    for name in ("topformer-tiny", "topformer-small"):
        cfg = PRESETS[name]
        rows.append({"model": name, "target_ms": None, "predicted_ms": float(predict([cfg])[0]),
                     "measured_ms": measured[name], "gflops": model_size(cfg, scale.deploy_size, num_classes).flops / 1e9,
                     "miou": scorer.miou(cfg), "vs": None,
                     "ft_miou": tuned[name]["preset"]["miou"] if name in tuned else None})
        if name in compare and "error" not in compare[name]:
            rows.append(_search_row(f"searched @ {name.split('-')[1]} meas.", compare[name], name,
                                    tuned.get(name), data, reporter))
        elif name in compare:
            print(f"  (no searched row at {name}'s measured latency: {compare[name]['error']})")
        if f"{name} (pred)" in compare:
            rows.append(_search_row(f"searched @ {name.split('-')[1]} pred.", compare[f"{name} (pred)"], name,
                                    None, data, reporter))
    rows.append(_search_row("searched @ mid meas.", main_summary, "topformer-tiny", None, data, reporter))
    print(f"mIoU on the held-out report split of the synthetic val set ({reporter.images} images the searches never "
          f"saw). 'inherit': supernet weights, {scale.eval_size}px, BN recalibrated; 'tuned': after "
          f"{scale.finetune_iters} fine-tuning steps, the same recipe for winner and preset; 'tflite': the exported "
          f"file in LiteRT at its {scale.deploy_size}px input. 'vs preset': searched - preset in points with its 95% "
          f"paired bootstrap interval over those images. Latency in {setting.describe()}, TFLite")
    print("'meas ms': median as timed; 'frame ms': its median ratio to TopFormer-Tiny timed beside it x Tiny's latency "
          "when the targets were measured (one frame for every row: what the refinement's verdict and 'vs tgt' use)")
    print(f"{'model':22s} {'target':>7s} {'pred ms':>7s} {'meas ms':>7s} {'frame ms':>8s} {'vs tgt':>7s} {'GFLOPs':>6s} "
          f"{'inherit':>7s} {'tuned':>6s} {'tflite':>6s}  {'inherit vs preset':>26s}  {'tuned vs preset':>26s}")
    for r in rows:
        judged = r.get("in_frame_ms") if r.get("in_frame_ms") is not None else r["measured_ms"]
        vs = (f"{100 * (judged - r['target_ms']) / r['target_ms']:+.1f}%"
              if r["target_ms"] and judged is not None else "")
        target_txt = f"{r['target_ms']:7.2f}" if r["target_ms"] else f"{'-':>7s}"
        ref = r["vs"]["ref"].split("-")[1] if r["vs"] else ""
        cmp_txt = f"{fmt_diff(r['vs']['winner_minus_ref'])} {ref}" if r["vs"] else ""
        ft_txt = f"{fmt_diff(r['ft_vs'])} {ref}" if r.get("ft_vs") else ""
        num = lambda v, w: f"{v:{w}.2f}" if v is not None else f"{'-':>{w}s}"  # noqa: E731
        print(f"{r['model']:22s} {target_txt} {r['predicted_ms']:7.2f} {num(r['measured_ms'], 7)} "
              f"{num(r.get('in_frame_ms'), 8)} {vs:>7s} "
              f"{r['gflops']:6.3f} {r['miou']:7.2f} {num(r.get('ft_miou'), 6)} {num(r.get('tflite_miou'), 6)}  "
              f"{cmp_txt:>26s}  {ft_txt:>26s}")
    print("\nartefacts:")
    for what, path in st.artefacts:
        print(f"  {what:60s} {path}")
    result = {"rows": rows, "finetuned": tuned, "artefacts": dict((w, p) for w, p in st.artefacts), "target_ms": target,
              "setting": setting.to_dict(),
              "total_s": time.perf_counter() - st.t0, "quick": quick}
    atomic_write_json(out / "demo_summary.json", result)
    print(f"\ntotal {result['total_s'] / 60:.1f} min; summary -> {out / 'demo_summary.json'}")
    return result


def _search_row(label: str, s: dict[str, Any], ref: str, tuned: dict[str, Any] | None, data: Path,
                reporter: Any) -> dict[str, Any]:
    """A searched winner's row: its report-split mIoU with inherited and (``tuned``) fine-tuned weights, its
    differences from preset ``ref``, and the mIoU of its exported .tflite in LiteRT on the same images (the
    search's own, optimistic, score is kept as ``search_miou``)."""
    rep = s["report"]
    row = {"model": label, "target_ms": s["target"], "predicted_ms": s["best_predicted_ms"],
           "measured_ms": s.get("measured_ms"), "in_frame_ms": s.get("measured_in_frame_ms"),
           "gflops": s["best_gflops"], "miou": rep["winner"]["miou"],
           "search_miou": s["best_accuracy"], "vs": {"ref": ref, **rep["refs"][ref]},
           "ft_miou": tuned["searched"]["miou"] if tuned else None,
           "ft_vs": tuned["searched_minus_preset"] if tuned else None, "tflite_miou": None}
    if s.get("model_tflite"):
        from android_bench.evaluate_tflite import evaluate_tflite

        scored = evaluate_tflite(s["model_tflite"], data, "synthetic", "val", image_ids=reporter.image_ids)
        row["tflite_miou"], row["tflite"] = 100.0 * scored["mIoU"], s["model_tflite"]
    return row
