"""Build the per-operator latency table of one or more devices: convert in worker processes, measure in batches.

Each batch: convert the batch's operators that are not in the content-addressed cache (``--workers``
processes; conversion is the bottleneck), then time the whole batch on every device with one
``benchmark_many`` call (one push/run round trip on a phone), bracketed by a fixed reference operator whose
latency records the device's drift (a batch whose reference ran more than 25% slower than the device's fastest
batch so far was timed in another state, e.g. a core taken by something else: it is timed again, up to twice,
as whole networks are in latency/measure.py). After every batch the table is rewritten atomically, so an interrupted run
resumes where it stopped and neither loses nor duplicates a row. Phases: the designed sample, adaptive
sampling where a random forest is least sure (in rounds: each round refits the forest on everything measured so
far), then every operator timed again in shuffled batches (``--passes``; latency/passes.py: the table keeps the median),
and a handful of end-to-end subnets for the predictor's whole-network correction. With a transfer source
(latency/transfer.py) the operator phases are replaced by a small designed subset of the source's operators.
"""
from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from latency import table as tbl
from latency.export_op import cache_path, convert_cached, converter_version, ignore_sigint, sigint_ignored
from latency.measure import MAX_ROUNDS, MIN_ROUNDS, REGIME_RETRIES, PairedResult, measure_paired, time_again
from latency import networks
from latency.networks import convert_networks, reference_network_path
from latency.operators import MBConv, Operator, parse_key
from latency.plan import DEFAULT_MBCONV, candidates, designed_sample, interleave, most_uncertain, stage_sides
from latency.setting import DEFAULT_PRECISION, Setting
from latency import transfer as xfer
from latency import passes as retiming
from etf.common import EtfError
from supernet.heads import DEFAULT_HEAD
from supernet.space import TABLE1, ArchConfig

#: Extra operators picked by adaptive sampling, per kind, after the designed sample.
ADAPTIVE = {"mbconv": 40, "transformer": 20, "injection": 9, "pool": 4}
#: Seeds of the subnets measured end to end for the whole-network correction (the report uses other seeds).
E2E_SEED_BASE = 1000


#: Whole networks measured end to end for the correction by default: the 4 anchors and 20 random subnets (4 + 8
#: until 2026-11-29, 4 + 4 before 2026-11-28). The weights term (fit revision 5) has two coefficients to learn from
#: the random ones alone: fitted on 8, tD's predictor scored 78-88 % within +-5% on fresh subnets; the same fit
#: with 12 more random networks (rows of another held-out set) 92-96 (latency/RESULTS.md). ~10 s a network at 512
#: px, one thread (8.6 s conversion on 2 workers + 1.8 s timing, table tE); the 2-thread and int8 tables reuse the
#: converted files.
DEFAULT_E2E = 24


def correction_subnets(n: int) -> list[tuple[int | None, "ArchConfig"]]:
    """The ``n`` subnets measured end to end for the whole-network correction, as (seed or None, config):
    first the smallest config and the three TopFormer presets (the sizes a latency-constrained search ends at,
    which random samples of Table 1 rarely reach), then seeded random subnets."""
    anchors = networks.anchor_configs()
    out: list[tuple[int | None, ArchConfig]] = [(None, c) for c in anchors[:n]]
    seed = E2E_SEED_BASE
    while len(out) < n:
        cfg = TABLE1.sample(seed)
        if cfg.key() not in {c.key() for _, c in out}:
            out.append((seed, cfg))
        seed += 1
    return out


def get_device(name: str):
    """The device layer's device called ``name`` (``android_bench.device_config.resolve_device``)."""
    from android_bench.device_config import resolve_device

    return resolve_device(name)


def reference_op(size: int) -> MBConv:
    """The fixed operator re-measured in every batch to track the device's speed drift."""
    _, ins, _ = stage_sides(size)
    return MBConv(40, 48, 3, 4, 2, ins[2], False)


@dataclass
class ProfileSettings:
    """Everything that decides what a profiling run measures and how."""

    size: int = 512
    tables_dir: str = "tables"
    cache_dir: str = ""
    workers: int = 2
    batch: int = 24
    runs: int = 20
    warmup: int = 3
    threads: int | None = None
    budget_min: float | None = None
    mbconv: str = DEFAULT_MBCONV
    adaptive: dict[str, int] = field(default_factory=lambda: dict(ADAPTIVE))
    e2e: int = DEFAULT_E2E
    limit: int | None = None
    seed: int = 0
    e2e_only: bool = False
    precision: str = DEFAULT_PRECISION
    head: str = DEFAULT_HEAD
    #: a finished table of another setting (path or stem): measure a few operators and map the rest from it
    transfer_from: str = ""
    #: operators measured on the new setting in a transfer
    transfer_ops: int = xfer.DEFAULT_TRANSFER_OPS
    #: timing passes per operator: the first, then re-timings in shuffled batches (latency/passes.py)
    passes: int = retiming.DEFAULT_PASSES

    def cache(self) -> str:
        return self.cache_dir or str(networks.cache_dir(self.tables_dir))

    def setting(self, dev) -> Setting:
        """The setting measured on ``dev``: its default threads unless ``threads`` is given."""
        threads = self.threads if self.threads is not None else int(getattr(dev, "default_threads", 1))
        return Setting(dev.name, self.size, threads, self.precision, self.head)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Profiler:
    """One profiling run over several devices (shared conversion, one table per device)."""

    def __init__(self, device_names: Sequence[str], settings: ProfileSettings, progress: bool = True):
        self.s = settings
        self.devices = [get_device(n) for n in device_names]
        for dev in self.devices:
            status = dev.check()
            if not status.ok:
                raise EtfError(f"device {dev.name} is not reachable: {status.detail}")
        self.settings = {d.name: self.s.setting(d) for d in self.devices}
        # rows mapped by an earlier transfer are not measurements: dropped here, regenerated by a transfer run's end
        self.tables = {d.name: _measured_only(tbl.read_csv_checked(self._path(d.name, ".csv"), tbl.OP_COLUMNS, "key"))
                       for d in self.devices}
        self.passes = {d.name: self._read_passes(d.name) for d in self.devices}
        self.tables = {name: retiming.apply_medians(t, self.passes[name]) for name, t in self.tables.items()}
        self.e2e = {d.name: tbl.read_csv_checked(self._path(d.name, ".e2e.csv"), tbl.E2E_COLUMNS, "arch_key")
                    for d in self.devices}
        self.meta = {d.name: self._load_meta(d) for d in self.devices}
        self.source: tuple[pd.DataFrame, Setting, Path] | None = None
        if settings.transfer_from:
            self.source = xfer.source_table(settings.transfer_from, settings.tables_dir)
            for setting in self.settings.values():
                xfer.check_transfer(self.source[1], setting)
        self.ref = reference_op(self.s.size)
        self.progress = progress
        self.start = time.monotonic()
        self.stopped_for_budget = False
        self.measured_now = 0
        self._pool: ProcessPoolExecutor | None = None
        self._bar = None

    # -- bookkeeping --------------------------------------------------------------------------------------
    def _path(self, dev_name: str, suffix: str) -> Path:
        """A file of ``dev_name``'s table in this run's setting (always the setting's own stem: a legacy table is
        read by the predictor, never extended by a new run)."""
        return tbl.table_stem(self.s.tables_dir, self.settings[dev_name], write=True).with_suffix(suffix)

    def _load_meta(self, dev) -> dict[str, Any]:
        path = self._path(dev.name, ".meta.json")
        meta = tbl.read_json(path) if path.exists() else {}
        if meta and meta.get("size") != self.s.size:
            raise EtfError(f"{path} is for input size {meta.get('size')}, not {self.s.size}")
        setting = self.settings[dev.name]
        if meta.get("setting") not in (None, setting.to_dict()):
            raise EtfError(f"{path} records the setting {Setting.from_dict(meta['setting']).describe()}, "
                           f"not {setting.describe()}; delete it or use another --out")
        meta["setting"] = setting.to_dict()
        meta.setdefault("device", dev.name)
        meta.setdefault("device_kind", dev.kind)
        meta.setdefault("size", self.s.size)
        meta.setdefault("created", _now())
        meta.setdefault("timing", {"convert_wall_s": 0.0, "convert_cpu_s": 0.0, "conversions": 0,
                                   "measure_wall_s": 0.0, "measurements": 0, "e2e_convert_wall_s": 0.0,
                                   "e2e_measure_wall_s": 0.0, "runs": 0})
        meta.setdefault("drift", [])
        meta["describe"] = dev.describe()
        meta["converter"] = converter_version()
        return meta

    def _read_passes(self, dev_name: str) -> pd.DataFrame:
        df = tbl.read_csv_checked(self._path(dev_name, ".passes.csv"), retiming.PASS_COLUMNS, ["key", "pass"])
        return df.astype({"pass": int}) if len(df) else df

    def _save(self, dev_name: str) -> None:
        if len(self.passes[dev_name]):  # first: the table's medians are recomputed from it on resume
            tbl.write_csv_atomic(self.passes[dev_name][retiming.PASS_COLUMNS], self._path(dev_name, ".passes.csv"))
        tbl.write_csv_atomic(self.tables[dev_name][tbl.OP_COLUMNS], self._path(dev_name, ".csv"))
        if len(self.e2e[dev_name]):
            tbl.write_csv_atomic(self.e2e[dev_name][tbl.E2E_COLUMNS], self._path(dev_name, ".e2e.csv"))
        meta = self.meta[dev_name]
        meta["updated"] = _now()
        meta["rows"] = int(len(self.tables[dev_name]))
        meta["rows_by_kind"] = {k: int(v) for k, v in self.tables[dev_name]["kind"].value_counts().items()}
        meta["e2e_rows"] = int(len(self.e2e[dev_name]))
        tbl.write_json_atomic(meta, self._path(dev_name, ".meta.json"))

    def _pending(self, ops: Sequence[Operator]) -> list[Operator]:
        done = [set(t["key"]) for t in self.tables.values()]
        return [op for op in ops if any(op.key not in d for d in done)]

    def _over_budget(self, next_cost_s: float, reserve_s: float = 0.0) -> bool:
        """True once the next step would overrun ``--budget-min`` (minus ``reserve_s`` kept for later phases)."""
        if self.s.budget_min is None:
            return False
        return time.monotonic() - self.start + next_cost_s > self.s.budget_min * 60 - reserve_s

    # -- conversion -----------------------------------------------------------------------------------------
    def _workers(self) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")  # torch + fork is not safe
            self._pool = ProcessPoolExecutor(max_workers=self.s.workers, mp_context=ctx, initializer=ignore_sigint)
        return self._pool

    def convert(self, keys: Sequence[str]) -> tuple[dict[str, Path], dict[str, str], float, float, int]:
        """Convert ``keys`` into the cache in parallel: (paths, failures, wall s, summed worker s, converted)."""
        cache = self.s.cache()
        paths = {k: cache_path(cache, k, self.s.precision) for k in keys}
        todo = [k for k in keys if not paths[k].exists()]
        failures: dict[str, str] = {}
        start, cpu = time.monotonic(), 0.0
        if todo:
            with sigint_ignored():
                futures = {self._workers().submit(convert_cached, k, str(paths[k]), self.s.precision): k
                           for k in todo}
            for fut in as_completed(futures):
                try:
                    _, _, secs = fut.result()
                    cpu += secs
                except Exception as exc:  # one operator that does not convert must not stop the run
                    failures[futures[fut]] = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                if self._bar is not None:
                    self._bar.set_postfix_str(f"converting {len(todo)}", refresh=True)
        done = len(todo) - len(failures)
        return {k: p for k, p in paths.items() if k not in failures}, failures, time.monotonic() - start, cpu, done

    # -- measurement ------------------------------------------------------------------------------------------
    def _measure_on(self, dev, paths: list[Path], interleave: bool = False) -> tuple[list[Any], list[float]]:
        return measure_with_reference(dev, cache_path(self.s.cache(), self.ref.key, self.s.precision), paths,
                                      runs=self.s.runs,
                                      warmup=self.s.warmup, threads=self.settings[dev.name].threads,
                                      interleave=interleave)

    def _measure_all(self, paths: list[Path], interleave: bool = False) -> dict[str, tuple[list[Any], list[float]]]:
        if len(self.devices) == 1:
            dev = self.devices[0]
            return {dev.name: self._measure_on(dev, paths, interleave)}
        with ThreadPoolExecutor(len(self.devices)) as ex:
            futs = {dev.name: ex.submit(self._measure_on, dev, paths, interleave) for dev in self.devices}
            return {name: f.result() for name, f in futs.items()}

    def _measure_in_regime(self, paths: list[Path]) -> dict[str, tuple[list[Any], list[float]]]:
        """Time ``paths`` on every device; a batch timed while a device was in another state is timed again."""
        results = self._measure_all(paths)
        previous: dict[str, float] = {}
        for attempt in range(REGIME_RETRIES):
            refs_now = {name: sum(refs) / len(refs) for name, (_, refs) in results.items()}
            off = [name for name, ref in refs_now.items()
                   if time_again(ref, self._fastest_ref(name), previous.get(name))]
            if not off:
                break
            for name in off:
                self.meta[name]["timing"]["retried_batches"] = self.meta[name]["timing"].get("retried_batches", 0) + 1
            previous = refs_now
            time.sleep(1.0 * (attempt + 1))
            results = self._measure_all(paths)
        return results

    def run_batch(self, ops: Sequence[Operator], phase: str) -> None:
        """Convert, measure on every device and append the rows of one batch (atomic write per device)."""
        keys = [self.ref.key] + [op.key for op in ops]
        paths, failures, conv_wall, conv_cpu, converted = self.convert(keys)
        if self.ref.key in failures:
            raise EtfError(f"the reference operator does not convert: {failures[self.ref.key]}")
        ok = [op for op in ops if op.key in paths]
        t0 = time.monotonic()
        results = self._measure_in_regime([paths[op.key] for op in ok]) if ok else {}
        meas_wall = time.monotonic() - t0
        for dev in self.devices:
            meta = self.meta[dev.name]
            timing = meta["timing"]
            timing["convert_wall_s"] += conv_wall
            timing["convert_cpu_s"] += conv_cpu
            timing["conversions"] += converted
            timing["measure_wall_s"] += meas_wall
            meta.setdefault("failed", {}).update(failures)
            if dev.name not in results:
                continue
            stats, refs = results[dev.name]
            ref_ms, batch_id = self._record_batch(dev.name, refs, phase, len(stats))
            have = set(self.tables[dev.name]["key"])
            rows = [self._row(dev, op, st, ref_ms, batch_id, phase) for op, st in zip(ok, stats) if op.key not in have]
            if rows:
                self.tables[dev.name] = pd.concat([self.tables[dev.name], pd.DataFrame(rows)], ignore_index=True) \
                    if len(self.tables[dev.name]) else pd.DataFrame(rows, columns=tbl.OP_COLUMNS)
            self._save(dev.name)
        self.measured_now += len(ok)
        if self._bar is not None:
            self._bar.update(len(ops))
            self._bar.set_postfix_str(f"convert {conv_wall:.0f}s measure {meas_wall:.0f}s", refresh=True)

    def _record_batch(self, dev_name: str, refs: Sequence[float], phase: str, n_models: int) -> tuple[float, int]:
        """Record one timed batch in the device's drift record and counts; (its reference ms, its batch id)."""
        meta = self.meta[dev_name]
        ref_ms = float(sum(refs) / len(refs))
        batch_id = len(meta["drift"])
        meta["drift"].append({"batch": batch_id, "timestamp": _now(), "ref_ms": ref_ms, "phase": phase,
                              "ops": n_models})
        meta["timing"]["measurements"] += n_models + 2  # + the reference before and after
        return ref_ms, batch_id

    def _fastest_ref(self, dev_name: str) -> float | None:
        """The fastest reference-operator latency of the device's earlier batches (its normal state), or None."""
        refs = [d["ref_ms"] for d in self.meta[dev_name]["drift"]]
        return min(refs) if refs else None

    def _row(self, dev, op: Operator, st, ref_ms: float, batch: int, phase: str) -> dict[str, Any]:
        return {"key": op.key, "kind": op.kind, "phase": phase, "device": dev.name, "device_kind": dev.kind,
                "runtime": st.runtime, "threads": st.threads, "size": self.s.size, "median_ms": st.median_ms,
                "mean_ms": st.mean_ms, "std_ms": st.std_ms, "min_ms": st.min_ms, "max_ms": st.max_ms,
                "cv": st.cv, "runs": st.runs, "warmup": st.warmup, "ref_ms": ref_ms, "batch": batch,
                "timestamp": _now(), "converter": converter_version(), "precision": self.s.precision,
                "head": self.s.head}

    # -- phases ------------------------------------------------------------------------------------------------
    def run_ops(self, ops: Sequence[Operator], phase: str) -> None:
        pending = self._pending(ops)
        last_cost = 0.0
        reserve = self._e2e_reserve()
        for i in range(0, len(pending), self.s.batch):
            if self._over_budget(last_cost, reserve):
                self.stopped_for_budget = True
                return
            t0 = time.monotonic()
            self.run_batch(pending[i:i + self.s.batch], phase)
            last_cost = time.monotonic() - t0

    def _e2e_reserve(self) -> float:
        """Seconds of ``--budget-min`` kept for the end-to-end phase (~45 s per subnet conversion on this machine,
        --workers at a time)."""
        if self.s.budget_min is None:
            return 0.0
        return min(0.3 * self.s.budget_min * 60, self.s.e2e * 45.0 / self.s.workers)

    def retime(self, pass_index: int, reserve_s: float = 0.0) -> None:
        """Time every measured operator once more (pass ``pass_index``) in shuffled batches; each table then keeps
        an operator's median over its passes (latency/passes.py). Stops at the budget; resumes where it stopped."""
        from etf.progress import progress_bar

        for name in self.tables:  # pass 0, the table's own timing, is recorded before anything is re-timed
            first = retiming.first_pass_rows(self.tables[name], self.passes[name])
            if len(first):
                self.passes[name] = pd.concat([self.passes[name], first], ignore_index=True) \
                    if len(self.passes[name]) else first
        todo = sorted({k for name, t in self.tables.items()
                       for k in retiming.pending(list(t["key"]), self.passes[name], pass_index)})
        if not todo:
            return
        bar = progress_bar(len(todo), f"re-timing, pass {pass_index + 1} of {self.s.passes}",
                           enabled=self.progress, unit="op")
        last_cost = 0.0
        try:
            for chunk in retiming.pass_batches(todo, pass_index, self.s.batch, self.s.seed):
                if self._over_budget(last_cost, reserve_s):
                    self.stopped_for_budget = True
                    return
                t0 = time.monotonic()
                files = {k: cache_path(self.s.cache(), k, self.s.precision) for k in chunk}
                chunk = [k for k in chunk if files[k].exists()]  # gone from the cache: its earlier passes stand
                results = self._measure_in_regime([files[k] for k in chunk]) if chunk else {}
                last_cost = time.monotonic() - t0
                for dev in self.devices:
                    if dev.name not in results:
                        continue
                    stats, refs = results[dev.name]
                    ref_ms, batch_id = self._record_batch(dev.name, refs, f"retime{pass_index}", len(stats))
                    timing = self.meta[dev.name]["timing"]
                    timing["retime_wall_s"] = timing.get("retime_wall_s", 0.0) + last_cost
                    mine = set(retiming.pending(list(self.tables[dev.name]["key"]), self.passes[dev.name], pass_index))
                    rows = pd.DataFrame([{"key": k, "pass": pass_index, "median_ms": st.median_ms, "ref_ms": ref_ms,
                                          "batch": batch_id, "timestamp": _now()}
                                         for k, st in zip(chunk, stats) if k in mine], columns=retiming.PASS_COLUMNS)
                    self.passes[dev.name] = pd.concat([self.passes[dev.name], rows], ignore_index=True)
                    self.tables[dev.name] = retiming.apply_medians(self.tables[dev.name], self.passes[dev.name])
                    self._save(dev.name)
                bar.update(len(chunk))
        finally:
            bar.close()

    def adaptive_picks(self, kind: str, k: int, pool: Sequence[Operator], step: int | None = None) -> list[Operator]:
        """The next up-to-``step`` operators of ``kind`` (never past ``k`` adaptive ones in all) where a forest
        fitted on the first device's measured rows of that kind is least sure."""
        t = self.tables[self.devices[0].name]
        done = int(((t["kind"] == kind) & (t["phase"] == "adaptive")).sum())
        rows = t[t["kind"] == kind]
        measured = [parse_key(key) for key in rows["key"]]
        want = k - done if step is None else min(step, k - done)
        return most_uncertain(measured, rows["median_ms"].astype(float).tolist(), pool, want, self.s.seed)

    def run(self) -> dict[str, Any]:
        """Run every phase that is not done yet; return a summary (also stored in the meta files)."""
        from etf.progress import progress_bar

        s = self.s
        design = designed_sample(s.size, mbconv=s.mbconv, seed=s.seed, head=s.head)
        plan = self.transfer_plan(design) if self.source is not None else interleave(design)
        if s.limit is not None:
            plan = plan[:s.limit]
        pending = [] if s.e2e_only else self._pending(plan)
        adaptive = s.limit is None and not s.e2e_only and self.source is None
        adaptive_total = sum(s.adaptive.values()) if adaptive else 0
        self._bar = progress_bar(len(pending) + adaptive_total, "operators", enabled=self.progress, unit="op")
        try:
            if not s.e2e_only:
                self.run_ops(plan, xfer.MEASURED_PHASE if self.source is not None else "design")
            if adaptive and not self.stopped_for_budget:
                self.run_adaptive()
            self._bar.close()
            retime = s.passes > 1 and not s.e2e_only
            if retime and not self.stopped_for_budget:  # one pass before the networks, the rest after: spread in time
                self.retime(1, reserve_s=self._e2e_reserve())
            if s.e2e > 0:
                self.run_e2e(correction_subnets(s.e2e), "correction")
            for p in range(2, s.passes if retime else 0):
                if not self.stopped_for_budget:
                    self.retime(p)
        except KeyboardInterrupt:
            self._stop_workers()
            raise
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
            if self._bar is not None:
                self._bar.close()
        return self.finish(design, plan)

    def run_adaptive(self) -> None:
        """Adaptive sampling as a loop: each round measures, per kind, the batch's share of the candidates the
        forest is least sure about, then the forest is refitted on everything measured so far (new points change
        where it is unsure), until every kind has its ``adaptive`` count or the budget ends."""
        cands = candidates(self.s.size, head=self.s.head)
        step = max(1, self.s.batch // max(1, len(self.s.adaptive)))
        tried: set[str] = set()  # an operator that failed to convert is not picked again
        while not self.stopped_for_budget:
            picks = []
            for kind, k in self.s.adaptive.items():
                pool = [op for op in cands[kind] if op.key not in tried]
                picks += self.adaptive_picks(kind, k, pool, step)
            if not picks:
                return
            tried.update(op.key for op in picks)
            self.run_ops(picks, "adaptive")

    def transfer_plan(self, design: dict[str, list[Operator]]) -> list[Operator]:
        """The operators a transfer measures: the designed subset of the source's table (latency/transfer.py),
        plus any designed operator the source lacks (another head's own operator)."""
        rows = self.source[0]
        sample = xfer.transfer_sample(rows, xfer.kind_budget(rows, self.s.transfer_ops))
        keys = {op.key for op in sample}
        return sample + [op for op in xfer.design_missing_from(rows, interleave(design)) if op.key not in keys]

    def _stop_workers(self) -> None:
        """On Ctrl-C: end our conversion workers now (a half-written model is a temp file, never a cache entry)."""
        if self._pool is not None:
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                proc.terminate()

    def finish(self, design: dict[str, list[Operator]], plan: list[Operator]) -> dict[str, Any]:
        s = self.s
        cands = {k: len(v) for k, v in candidates(s.size, head=s.head).items()}
        design_keys = {op.key for ops in design.values() for op in ops}
        summary = {}
        for dev in self.devices:
            meta = self.meta[dev.name]
            if self.source is not None:
                reasons = self._finish_transfer(dev, plan)
            else:
                meta.pop("transfer", None)
                reasons = self._design_reasons(dev, design_keys)
            if len(self.e2e[dev.name]) < s.e2e:
                reasons.append(f"{len(self.e2e[dev.name])} of {s.e2e} end-to-end subnets measured")
            t = self.tables[dev.name]
            meta["reduced"] = bool(reasons)
            meta["reduced_reasons"] = reasons
            meta["plan"] = {"mbconv": s.mbconv, "designed": {k: len(v) for k, v in design.items()},
                            "adaptive": s.adaptive if s.limit is None and self.source is None else {},
                            "candidates": cands, "runs": s.runs, "warmup": s.warmup, "threads": s.threads,
                            "seed": s.seed, "passes": s.passes}
            measured_keys = list(t["key"][t["phase"] != xfer.MAPPED_PHASE]) if len(t) else []
            meta["passes_done"] = retiming.passes_done(measured_keys, self.passes[dev.name])
            meta["passes_disagree"] = retiming.disagreement_record(self.passes[dev.name], measured_keys)
            meta["complete"] = not reasons
            meta["timing"]["runs"] += 1
            meta["timing"]["last_run_wall_s"] = time.monotonic() - self.start
            self._save(dev.name)
            summary[dev.name] = {"table": str(self._path(dev.name, ".csv")), "rows": len(t),
                                 "setting": self.settings[dev.name].to_dict(),
                                 "rows_by_kind": meta["rows_by_kind"], "e2e_rows": len(self.e2e[dev.name]),
                                 "reduced": meta["reduced"], "reduced_reasons": reasons, "timing": meta["timing"],
                                 "measured_this_run": self.measured_now, "passes": meta["passes_done"],
                                 "passes_disagree": meta["passes_disagree"]}
            if "transfer" in meta:
                summary[dev.name]["transfer"] = meta["transfer"]
        return summary

    def _design_reasons(self, dev, design_keys: set[str]) -> list[str]:
        """Why a full profile's table is not complete yet (designed or adaptive operators missing)."""
        s = self.s
        t = self.tables[dev.name]
        have = set(t["key"])
        missing = len(design_keys - have)
        reasons = []
        if missing:
            why = []
            if s.limit is not None:
                why.append(f"--limit {s.limit}")
            if self.stopped_for_budget:
                why.append(f"--budget-min {s.budget_min}")
            if s.e2e_only:
                why.append("--e2e-only")
            reasons.append(f"{missing} of {len(design_keys)} designed operators not measured yet"
                           + (f" (this run: {', '.join(why)})" if why else "")
                           + "; rerun etf-profile without --budget-min/--limit/--e2e-only to complete")
        for kind, k in s.adaptive.items():
            done = int(((t["kind"] == kind) & (t["phase"] == "adaptive")).sum())
            if done < k:
                reasons.append(f"{done} of {k} adaptive {kind} operators measured")
        return reasons

    def _finish_transfer(self, dev, plan: Sequence[Operator]) -> list[str]:
        """Complete ``dev``'s table from the transfer source (measured rows + mapped rows), record the transfer in
        its meta file, and say why it is not complete yet (planned operators not measured)."""
        rows, source_setting, source_path = self.source
        measured = self.tables[dev.name]
        reasons = []
        missing = [op for op in plan if op.key not in set(measured["key"])]
        if missing:
            reasons.append(f"{len(missing)} of {len(plan)} transfer operators not measured yet; rerun the same "
                           "command to complete")
        src_meta_path = source_path.with_name(source_path.name[:-len(".csv")] + ".meta.json")
        src_meta = tbl.read_json(src_meta_path) if src_meta_path.exists() else {}
        if src_meta.get("reduced"):
            reasons.append(f"the source table {source_path} is reduced; complete it first")
        if measured.empty:
            return reasons + ["no operator measured on this setting yet"]
        setting = self.settings[dev.name]
        template = {"device": dev.name, "device_kind": dev.kind, "threads": setting.threads,
                    "precision": setting.precision, "head": setting.head, "size": setting.size,
                    "ref_ms": float(measured["ref_ms"].median()), "converter": converter_version()}
        table, maps = xfer.transferred_table(rows, measured, template)
        self.tables[dev.name] = table
        src_e2e = int(src_meta.get("e2e_rows", 0))
        self.meta[dev.name]["transfer"] = xfer.transfer_record(
            source_path, source_setting, len(rows), maps, int((measured["phase"] == xfer.MEASURED_PHASE).sum()),
            len(self.e2e[dev.name]), src_e2e)
        return reasons

    # -- end-to-end subnets ---------------------------------------------------------------------------------
    def _ref_nominal(self, dev_name: str) -> float:
        refs = self.tables[dev_name]["ref_ms"]
        return float(refs.median()) if len(refs) else float("nan")

    def _measure_paired_all(self, paths: list[Path], ref_net: Path) -> dict[str, list[PairedResult]]:
        """Whole networks on every device with the paired protocol (latency/measure.py): runs split over its
        minimum rounds, more rounds while a ratio is uncertain."""
        runs = max(1, self.s.runs // MIN_ROUNDS)

        def one(dev) -> list[PairedResult]:
            return measure_paired(dev, paths, ref_net, rounds=MIN_ROUNDS, max_rounds=MAX_ROUNDS, runs=runs,
                                  warmup=self.s.warmup,
                                  threads=self.settings[dev.name].threads,
                                  baseline_ms=tbl.fastest_reference_ms(self.e2e[dev.name]))
        if len(self.devices) == 1:
            return {self.devices[0].name: one(self.devices[0])}
        with ThreadPoolExecutor(len(self.devices)) as ex:
            futs = {dev.name: ex.submit(one, dev) for dev in self.devices}
            return {name: f.result() for name, f in futs.items()}

    def run_e2e(self, subnets: Sequence[tuple[int | None, ArchConfig]], purpose: str) -> None:
        """Measure ``subnets`` ((seed or None, config) pairs) end to end, skipping those already in the table."""
        from etf.progress import progress_bar

        todo = [(seed, c) for seed, c in subnets
                if any(c.key() not in set(e["arch_key"]) for e in self.e2e.values())]
        bar = progress_bar(len(todo), "end-to-end", enabled=self.progress, unit="net")
        for i in range(0, len(todo), max(1, self.s.workers)):
            if self._over_budget(0.0):
                self.stopped_for_budget = True
                break
            chunk = todo[i:i + max(1, self.s.workers)]
            paths, wall = convert_networks([c for _, c in chunk], self.s.size, self.s.cache(), self._workers(),
                                           head=self.s.head, precision=self.s.precision)
            ref_net = reference_network_path(self.s.cache(), self.s.size, self._workers(), head=self.s.head,
                                             precision=self.s.precision)
            t0 = time.monotonic()
            results = self._measure_paired_all(paths, ref_net)
            meas = time.monotonic() - t0
            for dev in self.devices:
                self.meta[dev.name]["timing"]["e2e_convert_wall_s"] += wall
                self.meta[dev.name]["timing"]["e2e_measure_wall_s"] += meas
                rows = [e2e_row(self.settings[dev.name], seed, c, res, self._ref_nominal(dev.name), purpose)
                        for (seed, c), res in zip(chunk, results[dev.name])
                        if c.key() not in set(self.e2e[dev.name]["arch_key"])]
                self.e2e[dev.name] = pd.concat([self.e2e[dev.name], pd.DataFrame(rows)], ignore_index=True) \
                    if len(self.e2e[dev.name]) else pd.DataFrame(rows, columns=tbl.E2E_COLUMNS)
                self._save(dev.name)
            bar.update(len(chunk))
        bar.close()


def _measured_only(rows: pd.DataFrame) -> pd.DataFrame:
    """The operator rows that were measured (rows mapped by a transfer dropped)."""
    return rows[rows["phase"] != xfer.MAPPED_PHASE].reset_index(drop=True) if len(rows) else rows


def measure_with_reference(dev, ref_path: Path, paths: Sequence[Path], runs: int, warmup: int,
                           threads: int | None = None, interleave: bool = False) -> tuple[list[Any], list[float]]:
    """Time ``paths`` on ``dev`` in one round trip together with the reference operator; returns each model's
    stats and the reference latency (ms) it is normalised by.

    Bracketed (``[ref, m1, m2, ..., ref]``, for short operators) every model gets the mean of the two
    reference timings; interleaved (``[ref, m1, ref, m2, ref, ...]``, for whole networks, whose batch takes
    long enough for the machine's speed to change within it) each model gets the mean of its two neighbours.
    """
    order = [ref_path]
    for p in paths:
        order += [p, ref_path] if interleave else [p]
    if not interleave:
        order.append(ref_path)
    stats = dev.benchmark_many(order, runs=runs, warmup=warmup, threads=threads,
                               cooldown_s=0.0 if dev.kind == "local" else None)
    if interleave:
        models = stats[1::2]
        refs = [(stats[2 * i].median_ms + stats[2 * i + 2].median_ms) / 2 for i in range(len(models))]
    else:
        models = stats[1:-1]
        refs = [(stats[0].median_ms + stats[-1].median_ms) / 2] * len(models)
    return models, refs


def e2e_row(setting: Setting, seed: int | None, cfg, res: PairedResult, ref_ms: float,
            purpose: str) -> dict[str, Any]:
    """One end-to-end table row: ``cfg`` measured in ``setting`` with the paired protocol (``ref_ms``: the
    operator table's nominal reference operator, kept for old readers)."""
    from supernet.size import model_size

    return {"arch_key": cfg.key(), "arch_json": cfg.to_json(indent=None), "seed": seed, "purpose": purpose,
            "device": setting.device, "size": setting.size, "flops": model_size(cfg, setting.size).flops,
            "median_ms": res.raw_ms, "std_ms": res.std_ms, "runs": res.runs * res.rounds, "ref_ms": ref_ms,
            "timestamp": _now(), "threads": setting.threads, "precision": setting.precision, "head": setting.head,
            "ref_net_ms": res.ref_ms, "ratio": res.ratio}


