"""The latency table on disk: one CSV row per (operator, device), a JSON sidecar, atomic writes, strict reads.

Files of one setting (``latency.setting.Setting``: device D, size S, threads T, precision P, head H) under
``tables/``: ``D_S_tT_P_H.csv`` (operators), ``.e2e.csv`` (end-to-end subnets for the predictor's whole-network
correction), ``.meta.json`` (the setting, device/runtime, plan, timings, drift, whether the table is reduced).
Every row records its setting (threads, precision, head columns). A bad row is reported with its line number,
never silently dropped. Tables from before settings (``D_S.csv``) are read as the setting they measured.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from etf.common import EtfError, atomic_open, atomic_write_json
from latency.setting import LEGACY_HEAD, LEGACY_PRECISION, Setting, file_safe
from supernet.size import model_size

#: Columns that record the setting of each row (device and size were recorded from the start).
SETTING_COLUMNS = ["threads", "precision", "head"]
OP_COLUMNS = ["key", "kind", "phase", "device", "device_kind", "runtime", "threads", "size", "median_ms",
              "mean_ms", "std_ms", "min_ms", "max_ms", "cv", "runs", "warmup", "ref_ms", "batch", "timestamp",
              "converter", "precision", "head"]
#: Columns every end-to-end table has (tables written before the paired protocol have only these).
E2E_REQUIRED = ["arch_key", "arch_json", "seed", "purpose", "device", "size", "flops", "median_ms", "std_ms",
                "runs", "ref_ms", "timestamp", "threads", "precision", "head"]
#: Paired-protocol columns (latency/measure.py): the whole-network reference's median beside the row and the
#: median of (network / adjacent reference); NaN for rows measured without a reference network.
E2E_PAIRED = ["ref_net_ms", "ratio"]
E2E_COLUMNS = E2E_REQUIRED + E2E_PAIRED
#: Why a whole network was measured: ``correction`` (profiling), ``heldout`` (report, never fitted), and the
#: closed loop's ``winner`` (etf-search), ``bench`` (etf-record), ``preset`` (the demo).
E2E_PURPOSES = ("correction", "heldout", "winner", "bench", "preset")
#: The purposes the predictor's whole-network correction is fitted on (everything measured except held-out).
FIT_PURPOSES = ("correction", "winner", "bench", "preset")
_NUMERIC = ("median_ms", "std_ms", "ref_ms")


def legacy_stem(tables_dir: str | Path, device: str, size: int) -> Path:
    """``tables/<device>_<size>``: where tables were written before settings were recorded."""
    return Path(tables_dir) / f"{file_safe(device)}_{size}"


def _legacy_threads(path: Path) -> int | None:
    """The one thread count the rows of a legacy operator table were measured with (None: none or several)."""
    try:
        threads = pd.read_csv(path, usecols=["threads"])["threads"].dropna().unique()
    except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return None
    return int(threads[0]) if len(threads) == 1 else None


def legacy_setting(tables_dir: str | Path, device: str, size: int) -> Setting | None:
    """The setting a legacy table of ``device`` at ``size`` holds (threads from its rows, fp32, head logits), or
    None when there is no legacy table (or its rows mix thread counts)."""
    path = legacy_stem(tables_dir, device, size).with_suffix(".csv")
    if not path.exists():
        return None
    threads = _legacy_threads(path)
    return Setting(device, size, threads, LEGACY_PRECISION, LEGACY_HEAD) if threads else None


_told: set[Path] = set()


def table_stem(tables_dir: str | Path, setting: Setting, write: bool = False) -> Path:
    """``tables/<setting.stem>``; add ``.csv`` / ``.e2e.csv`` / ``.meta.json``.

    Reading (``write`` False) falls back to a legacy ``tables/<device>_<size>`` table when the setting has no
    table of its own and the legacy one holds exactly this setting (see ``latency.setting``); that is said once
    per process on stderr. Writers always get the setting's own stem.
    """
    stem = Path(tables_dir) / setting.stem
    if write or stem.with_suffix(".csv").exists():
        return stem
    old = legacy_setting(tables_dir, setting.device, setting.size)
    if old is None or old != setting:
        return stem
    legacy = legacy_stem(tables_dir, setting.device, setting.size)
    if legacy not in _told:
        _told.add(legacy)
        print(f"note: reading {legacy.with_suffix('.csv')}, written before settings were recorded, as "
              f"{setting.describe()} (what it measured); etf-profile now writes {stem.name}.csv", file=sys.stderr)
    return legacy


def missing_table_hint(tables_dir: str | Path, setting: Setting) -> str:
    """Why there is no table for ``setting`` and what to run, in one line (mentions a legacy table of another
    setting when there is one)."""
    cmd = (f"etf-profile --device {setting.device} --size {setting.size} --threads {setting.threads} "
           f"--head {setting.head}" + (f" --precision {setting.precision}" if setting.precision != "fp32" else ""))
    msg = (f"no latency table for {setting.describe()}: run {cmd} first "
           f"(looked for {Path(tables_dir) / setting.stem}.csv)")
    old = legacy_setting(tables_dir, setting.device, setting.size)
    if old is not None and old != setting:
        msg += (f"; {legacy_stem(tables_dir, setting.device, setting.size)}.csv is an older table measured with "
                f"{old.difference(setting)} (pass --head {old.head} --threads {old.threads} to use it)")
    return msg


def ops_path(tables_dir: str | Path, setting: Setting, write: bool = False) -> Path:
    return table_stem(tables_dir, setting, write).with_suffix(".csv")


def e2e_path(tables_dir: str | Path, setting: Setting, write: bool = False) -> Path:
    return table_stem(tables_dir, setting, write).with_suffix(".e2e.csv")


def meta_path(tables_dir: str | Path, setting: Setting, write: bool = False) -> Path:
    return table_stem(tables_dir, setting, write).with_suffix(".meta.json")


def passes_path(tables_dir: str | Path, setting: Setting, write: bool = False) -> Path:
    """Every timing pass of the operator table's operators (latency/passes.py)."""
    return table_stem(tables_dir, setting, write).with_suffix(".passes.csv")


def write_csv_atomic(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` as a table CSV (no index) atomically: a crash leaves the old file whole."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        df.to_csv(fh, index=False)


def write_json_atomic(data: dict[str, Any], path: Path) -> None:
    """Write a table sidecar (indented JSON; timestamps and paths as strings) atomically."""
    atomic_write_json(path, data, indent=2, default=str)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EtfError(f"cannot read {path}: {exc}") from None


def read_csv_checked(path: Path, columns: list[str], key: str | list[str],
                     optional: Sequence[str] = (), text: Sequence[str] = ()) -> pd.DataFrame:
    """Read a table CSV; missing columns, non-numeric/negative latencies or duplicate keys raise EtfError.

    ``key``: the column (or columns) unique per row; ``optional``: columns added as NaN when an older file lacks
    them (validated as positive numbers where present); ``text``: columns read as text ("" when absent or
    empty), e.g. a fingerprint that happens to be all digits."""
    keys = [key] if isinstance(key, str) else list(key)
    if not path.exists():
        return pd.DataFrame(columns=columns + [c for c in [*optional, *text] if c not in columns])
    try:
        df = pd.read_csv(path, dtype={k: str for k in [*keys, *text]})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise EtfError(f"latency table {path} is corrupted: {str(exc).splitlines()[0]}") from None
    for col, value in (("precision", LEGACY_PRECISION), ("head", LEGACY_HEAD)):  # tables from before settings
        if col in columns:
            df[col] = df[col].fillna(value) if col in df.columns else value
    if "threads" in columns and "threads" not in df.columns:  # legacy end-to-end rows: the operator rows' threads
        ops_file = next((path.with_name(path.name[:-len(sfx)] + ".csv") for sfx in (".e2e.csv", ".heldout.csv")
                         if path.name.endswith(sfx)), path)
        df["threads"] = _legacy_threads(ops_file)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise EtfError(f"latency table {path} lacks column(s) {', '.join(missing)}")
    for col in _NUMERIC:
        if col not in df.columns:
            continue
        values = pd.to_numeric(df[col], errors="coerce")
        finite = values.map(lambda v: v == v and math.isfinite(v))
        bad = ~finite | ((values < 0) if col == "std_ms" else (values <= 0))
        if bad.any():
            row = int(bad.idxmax())
            raise EtfError(f"latency table {path} line {row + 2}: {col}={df[col].iloc[row]!r} is not a valid "
                           "latency; delete the line and rerun etf-profile to re-measure it")
        df[col] = values
    for col in optional:
        if col not in df.columns:
            df[col] = float("nan")
            continue
        values = pd.to_numeric(df[col], errors="coerce")
        bad = (df[col].notna() & values.isna()) | (values <= 0) | values.map(lambda v: v in (math.inf, -math.inf))
        if bad.any():
            row = int(bad.idxmax())
            raise EtfError(f"latency table {path} line {row + 2}: {col}={df[col].iloc[row]!r} is not a positive "
                           "number; delete the line and measure it again")
        df[col] = values.astype(float)
    for col in text:
        df[col] = df[col].fillna("").astype(str) if col in df.columns else ""
    dup = df.duplicated(subset=keys)
    if dup.any():
        row = int(dup.idxmax())
        raise EtfError(f"latency table {path} line {row + 2}: duplicate row for "
                       f"{'/'.join(str(df[k].iloc[row]) for k in keys)}")
    return df


def read_ops(tables_dir: str | Path, setting: Setting) -> pd.DataFrame:
    """The operator table (empty frame with the right columns when none exists yet)."""
    path = ops_path(tables_dir, setting)
    return check_operator_rows(read_csv_checked(path, OP_COLUMNS, "key"), path)


def check_operator_rows(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Every row's ``key`` must parse to an operator (``latency.operators.parse_key``) whose kind is the row's
    ``kind``: a hand-edited or truncated key would otherwise fail deep inside the predictor's fit."""
    from latency.operators import parse_key

    for row, (key, kind) in enumerate(zip(df["key"], df["kind"])):
        try:
            op = parse_key(key)
        except ValueError as exc:
            raise EtfError(f"latency table {path} line {row + 2}: {exc}; delete the line and rerun etf-profile "
                           "to re-measure it") from None
        if op.kind != kind:
            raise EtfError(f"latency table {path} line {row + 2}: kind={kind!r} but the key is a {op.kind!r} "
                           "operator; delete the line and rerun etf-profile to re-measure it")
    return df


def read_e2e(tables_dir: str | Path, setting: Setting) -> pd.DataFrame:
    """The end-to-end subnet measurements (one row per config and purpose; paired columns NaN in old tables)."""
    return read_csv_checked(e2e_path(tables_dir, setting), E2E_REQUIRED, ["arch_key", "purpose"], E2E_PAIRED)


def setting_of_rows(df: pd.DataFrame, what: str) -> Setting | None:
    """The one setting the rows of ``df`` were measured in (None for no rows); rows of several settings are an
    EtfError naming the first row that differs."""
    if not len(df):
        return None
    first = df.iloc[0]
    for col in ("device", "size", *SETTING_COLUMNS):
        other = df[df[col].astype(str) != str(first[col])]
        if len(other):
            raise EtfError(f"{what} mixes settings: line {int(other.index[0]) + 2} has {col}={other[col].iloc[0]}, "
                           f"line 2 has {col}={first[col]}; a table holds one setting, rerun etf-profile")
    try:
        return Setting(str(first["device"]), int(first["size"]), int(first["threads"]), str(first["precision"]),
                       str(first["head"]))
    except (ValueError, TypeError) as exc:
        raise EtfError(f"{what} line 2: not a valid setting ({exc})") from None



def add_e2e_rows(tables_dir: str | Path, setting: Setting, measurements: Sequence[tuple],
                 purpose: str = "correction", seeds: Sequence[int | None] | None = None) -> bool:
    """Record whole networks measured end to end in ``setting``'s end-to-end table: the ONE way rows are added
    (profiling, held-out, and the closed loop: search winners, etf-record, demo presets).

    Each measurement is ``(config, median ms, std ms, runs)`` or, measured with the paired protocol
    (latency/measure.py), ``(config, median ms, std ms, runs, reference network ms, ratio)``. A row replaces an
    earlier row of the same config and purpose (the newest measurement wins). ``ref_ms`` is the operator table's
    nominal reference operator (that operator is not timed beside whole networks). A predictor loaded with
    :func:`latency.predictor.load_for_device` afterwards is refitted (the table's fingerprint changed).
    Returns whether the table changed (identical measurements already recorded: no write).
    """
    if purpose not in E2E_PURPOSES:
        raise EtfError(f"unknown end-to-end purpose {purpose!r}; use one of {', '.join(E2E_PURPOSES)}")
    e2e = read_e2e(tables_dir, setting)
    ops = read_ops(tables_dir, setting)
    ref = float(ops["ref_ms"].median()) if len(ops) else float("nan")
    new: dict[str, tuple] = {}
    for i, m in enumerate(measurements):
        if len(m) not in (4, 6):
            raise EtfError(f"an end-to-end measurement is (config, ms, std, runs[, ref_net_ms, ratio]), got {len(m)} "
                           "values")
        cfg, ms, std, runs = m[:4]
        ref_net, ratio = (float(m[4]), float(m[5])) if len(m) == 6 else (float("nan"), float("nan"))
        if not (ms > 0 and math.isfinite(ms)):
            raise EtfError(f"end-to-end latency of {cfg.key()} is {ms!r}, not a positive number")
        new[cfg.key()] = (cfg, float(ms), float(std), int(runs), ref_net, ratio,
                          seeds[i] if seeds is not None else None)
    same = (e2e["arch_key"].isin(new) & (e2e["purpose"] == purpose)) if len(e2e) else pd.Series(dtype=bool)
    old = e2e[same] if len(e2e) else e2e
    if len(old) == len(new) and all(abs(float(r.median_ms) - new[r.arch_key][1]) < 1e-9 for r in old.itertuples()):
        return False
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    rows = [{"arch_key": key, "arch_json": cfg.to_json(indent=None), "seed": seed, "purpose": purpose,
             "device": setting.device, "size": setting.size, "flops": model_size(cfg, setting.size).flops,
             "median_ms": ms, "std_ms": std, "runs": runs, "ref_ms": ref, "timestamp": stamp,
             "threads": setting.threads, "precision": setting.precision, "head": setting.head,
             "ref_net_ms": ref_net, "ratio": ratio}
            for key, (cfg, ms, std, runs, ref_net, ratio, seed) in new.items()]
    keep = e2e[~same] if len(e2e) else e2e
    added = pd.DataFrame(rows, columns=E2E_COLUMNS)
    table = pd.concat([keep, added], ignore_index=True) if len(keep) else added
    write_csv_atomic(table[E2E_COLUMNS], e2e_path(tables_dir, setting))
    return True


def latest_reference_ms(e2e: pd.DataFrame) -> float | None:
    """The whole-network reference's latency (ms) of the newest paired row (by timestamp), or None without any:
    the device's speed now, which a reference-relative prediction is scaled by."""
    if not len(e2e) or "ref_net_ms" not in e2e:
        return None
    paired = e2e[pd.to_numeric(e2e["ref_net_ms"], errors="coerce").notna()]
    if not len(paired):
        return None
    newest = paired.sort_values("timestamp", kind="stable").iloc[-1]
    return float(newest["ref_net_ms"])


def fastest_reference_ms(e2e: pd.DataFrame) -> float | None:
    """The fastest whole-network reference latency (ms) of the paired rows, or None without any: the device's
    normal state, which an off-regime round is told from (latency/measure.py)."""
    if not len(e2e) or "ref_net_ms" not in e2e:
        return None
    refs = pd.to_numeric(e2e["ref_net_ms"], errors="coerce").dropna()
    return float(refs.min()) if len(refs) else None


def operator_setting(tables_dir: str | Path, setting: Setting) -> Setting:
    """The setting whose operator table a predictor of ``setting`` sums: for more than one thread, the same
    device, size, precision and head at 1 thread when that table is in the folder; else ``setting`` itself.

    Why: an operator timed alone on two threads differs from the same operator inside a network on two threads
    (no linear correction of the 2-thread sums reached 95% of tE's stored set within +-5%), and the 1-thread sums,
    fitted with the same 2-thread end-to-end rows, did better: 88.7% of 7 stored held-out sets within +-5% against
    80.4%, better on 6. On three fresh sets they were level (96, 92, 84 against 94, 94, 84; latency/RESULTS.md,
    2026-11-29)."""
    if setting.threads == 1:
        return setting
    one = Setting(setting.device, setting.size, 1, setting.precision, setting.head)
    return one if ops_path(tables_dir, one).exists() else setting


def _hash_files(setting: Setting, paths: Sequence[Path]) -> str:
    h = hashlib.sha1(setting.stem.encode())
    for p in paths:
        h.update(p.read_bytes() if p.exists() else b"-")
    return h.hexdigest()[:16]


def ops_fingerprint(tables_dir: str | Path, setting: Setting) -> str:
    """Hash of the setting and the operator table its predictor sums (:func:`operator_setting`): what held-out
    rows are tied to (closed-loop end-to-end rows do not change the operators the predictor sums, so they do not
    expire the held-out set)."""
    return _hash_files(setting, [ops_path(tables_dir, operator_setting(tables_dir, setting))])


def fingerprint(tables_dir: str | Path, setting: Setting) -> str:
    """Hash of the setting, the operator table its predictor sums (:func:`operator_setting`), its own operator
    table and its end-to-end table: a predictor is valid only for the tables it was fitted on."""
    paths = [ops_path(tables_dir, setting), e2e_path(tables_dir, setting)]
    source = operator_setting(tables_dir, setting)
    return _hash_files(setting, paths if source == setting else [ops_path(tables_dir, source)] + paths)
