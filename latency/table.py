"""The latency table on disk: one CSV row per (operator, device), a JSON sidecar, atomic writes, strict reads.

Files for device D at input size S under ``tables/``: ``D_S.csv`` (operators), ``D_S.e2e.csv`` (end-to-end
subnets for the predictor's whole-network correction), ``D_S.meta.json`` (device/runtime, plan, timings,
drift, whether the table is reduced). A bad row is reported with its line number, never silently dropped.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import time
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from etf.common import EtfError, atomic_open, atomic_write_json
from supernet.size import model_size
from supernet.space import ArchConfig

OP_COLUMNS = ["key", "kind", "phase", "device", "device_kind", "runtime", "threads", "size", "median_ms",
              "mean_ms", "std_ms", "min_ms", "max_ms", "cv", "runs", "warmup", "ref_ms", "batch", "timestamp",
              "converter"]
E2E_COLUMNS = ["arch_key", "arch_json", "seed", "purpose", "device", "size", "flops", "median_ms", "std_ms",
               "runs", "ref_ms", "timestamp"]
_NUMERIC = ("median_ms", "std_ms", "ref_ms")


def table_stem(tables_dir: str | Path, device: str, size: int) -> Path:
    """``tables/<device>_<size>`` (device name made file-safe); add ``.csv`` / ``.e2e.csv`` / ``.meta.json``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", device)
    return Path(tables_dir) / f"{safe}_{size}"


def ops_path(tables_dir: str | Path, device: str, size: int) -> Path:
    return table_stem(tables_dir, device, size).with_suffix(".csv")


def e2e_path(tables_dir: str | Path, device: str, size: int) -> Path:
    return table_stem(tables_dir, device, size).with_suffix(".e2e.csv")


def meta_path(tables_dir: str | Path, device: str, size: int) -> Path:
    return table_stem(tables_dir, device, size).with_suffix(".meta.json")


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


def read_csv_checked(path: Path, columns: list[str], key: str) -> pd.DataFrame:
    """Read a table CSV; missing columns, non-numeric/negative latencies or duplicate keys raise EtfError."""
    if not path.exists():
        return pd.DataFrame(columns=columns)
    try:
        df = pd.read_csv(path, dtype={key: str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise EtfError(f"latency table {path} is corrupted: {str(exc).splitlines()[0]}") from None
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
    dup = df[key].duplicated()
    if dup.any():
        raise EtfError(f"latency table {path} line {int(dup.idxmax()) + 2}: duplicate row for {df[key][dup].iloc[0]}")
    return df


def read_ops(tables_dir: str | Path, device: str, size: int) -> pd.DataFrame:
    """The operator table (empty frame with the right columns when none exists yet)."""
    path = ops_path(tables_dir, device, size)
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


def read_e2e(tables_dir: str | Path, device: str, size: int) -> pd.DataFrame:
    """The end-to-end subnet measurements."""
    return read_csv_checked(e2e_path(tables_dir, device, size), E2E_COLUMNS, "arch_key")


def add_e2e_rows(tables_dir: str | Path, device: str, size: int,
                 measurements: Sequence[tuple[ArchConfig, float, float, int]], purpose: str = "correction") -> bool:
    """Record whole networks measured end to end (config, median ms, std ms, runs) in the device's end-to-end
    table, replacing earlier rows of the same config and purpose; the one way code outside profiling adds rows.

    Their ``ref_ms`` is the operator table's nominal reference (the reference operator was not timed with them).
    Returns whether the table changed (identical measurements already recorded: no write).
    """
    e2e = read_e2e(tables_dir, device, size)
    ref = float(read_ops(tables_dir, device, size)["ref_ms"].median())
    new = {cfg.key(): (cfg, ms, std, runs) for cfg, ms, std, runs in measurements}
    same = (e2e["arch_key"].isin(new) & (e2e["purpose"] == purpose)) if len(e2e) else pd.Series(dtype=bool)
    old = e2e[same] if len(e2e) else e2e
    if len(old) == len(new) and all(abs(float(r.median_ms) - new[r.arch_key][1]) < 1e-9 for r in old.itertuples()):
        return False
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    rows = [{"arch_key": key, "arch_json": cfg.to_json(indent=None), "seed": None, "purpose": purpose,
             "device": device, "size": size, "flops": model_size(cfg, size).flops, "median_ms": ms, "std_ms": std,
             "runs": runs, "ref_ms": ref, "timestamp": stamp} for key, (cfg, ms, std, runs) in new.items()]
    keep = e2e[~same] if len(e2e) else e2e
    table = pd.concat([keep, pd.DataFrame(rows, columns=E2E_COLUMNS)], ignore_index=True)
    write_csv_atomic(table[E2E_COLUMNS], e2e_path(tables_dir, device, size))
    return True


def fingerprint(tables_dir: str | Path, device: str, size: int) -> str:
    """Hash of the operator and end-to-end tables: a predictor is valid only for the tables it was fitted on."""
    h = hashlib.sha1(f"{device}|{size}".encode())
    for p in (ops_path(tables_dir, device, size), e2e_path(tables_dir, device, size)):
        h.update(p.read_bytes() if p.exists() else b"-")
    return h.hexdigest()[:16]
