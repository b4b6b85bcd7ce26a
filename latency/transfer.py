"""A new setting's operator table from another setting's finished table plus a few measurements on the new one.

A full table costs ~430 operator conversions and measurements. Between two settings of the same network family
(another thread count, int8 instead of fp32, a similar phone) most of what changes is a speed-up per operator
kind that depends on the operator's size (2 threads help a 10 ms convolution more than a 0.1 ms one). So
``etf-profile --transfer-from A`` measures on the new setting B a designed subset of A's operators (per kind,
spread evenly over A's latency range, both ends included), fits per kind ``log t_B = a + b log t_A`` on them, maps
every other row of A through that line, and measures the smallest subnet and the three presets end to end for
B's whole-network correction. In the spirit of LitePred and HELP (adapt a source predictor with a few target
samples), reduced to what a dozen points per kind can carry: two numbers per kind. Where a kind's speed-up also
depends on the operator's shape (int8: 1.0-3.3x over MBConv blocks on this CPU, by channels, expansion and
resolution), the line is extended with the operator key's own numbers (log channels, expansion, kernel, stride,
resolution; standardised, ridge-penalised, clipped to the measured range) when that predicts the kind's measured
operators better in leave-one-out; or, preferred to both, for kinds whose operators name the work of their parts
(:func:`latency.costs.cost_terms`: the expansion's, depthwise's and projection's multiply-adds and the
maps they read and write), replaced by a non-negative sum of those parts plus a constant and the source time,
when that wins in leave-one-out: int8 speeds each part up by its own factor, which neither a line nor features
of the key in logs carry (int8 MBConv blocks mapped within 4-5% RMSE against 8-10%, latency/RESULTS.md).

Rows measured on B keep phase ``transfer``; mapped rows get phase ``transferred`` and are regenerated from the
measured ones on every run, so a later full ``etf-profile`` of B (without ``--transfer-from``) measures and
replaces them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from etf.common import EtfError
from latency import table as tbl
from latency.costs import cost_terms, nnls_relative
from latency.operators import Operator, parse_key
from latency.setting import Setting

#: Phase of an operator row measured on the new setting for the transfer.
MEASURED_PHASE = "transfer"
#: Phase of an operator row mapped from the source table (not measured on this setting).
MAPPED_PHASE = "transferred"
#: How the default operator budget is shared between kinds (kinds not named here: every row, they are 1-2).
#: MBConv 18 of 30 (8 of 20 until 2026-11-28): its speed-up from fp32 to int8 depends on the block's widths, and
#: 16 measured blocks mapped the rest within -8..+16% (10th-90th pct), 36 within -8..+10% (latency/RESULTS.md).
KIND_WEIGHTS = {"mbconv": 18, "transformer": 4, "injection": 3, "pool": 2, "stem": 1, "head": 2}
#: Operators measured on the new setting by default (about a seventh of a full table; 60 until 2026-11-29, 40
#: until 2026-11-28). With the 16 networks: 66 measurements, 18% of a full table's 342 operators + 24 networks.
DEFAULT_TRANSFER_OPS = 50
#: Whole networks measured on the new setting by default: the smallest config, the three presets and 12 random
#: subnets (3 random until 2026-11-29, the anchors alone until 2026-11-28). The networks, not the operators, carry
#: a transfer: 1 -> 2 threads simulated from full tables (B's own timings standing in), 3 random networks scored
#: 60-84% within +-5% whatever the operator budget, 8 or more 84-94% (tD, tE), as well as B's full table
#: (latency/RESULTS.md). From 8 random networks the correction has its weights term. A transfer into the source
#: table's folder finds their fp32 files in its cache.
DEFAULT_TRANSFER_E2E = 16
#: A kind's line is fitted with a free slope from this many points on; fewer: slope 1 (a pure ratio).
MIN_POINTS_FOR_SLOPE = 4
#: The fitted slope is kept within these bounds (a dozen noisy points must not extrapolate wildly).
SLOPE_RANGE = (0.5, 1.5)


#: A kind's line is extended with key features from this many measured operators on (and only when that wins
#: in leave-one-out by :data:`FEATURES_MUST_WIN`).
MIN_POINTS_FOR_FEATURES = 6
#: Ridge penalty on the standardised key features (the source latency and the intercept are not penalised).
FEATURE_RIDGE = 1.0
#: The features' (or the cost terms') leave-one-out RMSE (log ms) must be below this fraction of the line's to
#: be used; the cost terms win over the features when both do (in the int8 transfer of table tE, features chosen
#: over them by their leave-one-out missed the unmeasured blocks by 9.0% RMSE, the cost terms by 4.3%).
FEATURES_MUST_WIN = 0.9
#: A cost-terms map never maps an operator below this (ms; a guard for all-zero terms, whose log is -inf).
MIN_MAPPED_MS = 1e-4
#: Cost terms are in units of this many (multiply-adds, elements), so the fitted weights read as ms per million.
COST_UNIT = 1e6


def key_features(keys: Sequence[str]) -> pd.DataFrame:
    """The numbers in each operator key (:func:`latency.operators.parse_key`): log of every positive number,
    0/1 for flags; one row per key, NaN where a key lacks a field."""
    rows = []
    for key in keys:
        op = parse_key(key)
        row = {}
        for field in dataclasses.fields(op):
            value = getattr(op, field.name)
            if isinstance(value, bool):
                row[field.name] = float(value)
            elif isinstance(value, (int, float)) and value > 0:
                row[field.name] = float(np.log(value))
        rows.append(row)
    return pd.DataFrame(rows, index=range(len(rows)), dtype=float)


def cost_matrix(keys: Sequence[str], terms: Sequence[str]) -> np.ndarray:
    """The operators' cost terms (:func:`latency.costs.cost_terms`) named ``terms``, in
    :data:`COST_UNIT` units; one row per key (0 where an operator lacks a term)."""
    rows = [cost_terms(parse_key(key)) for key in keys]
    return np.array([[row.get(t, 0.0) / COST_UNIT for t in terms] for row in rows], float).reshape(len(rows), len(terms))


@dataclass(frozen=True)
class KindMap:
    """``log t_new = a + b log t_source (+ w . z)`` for one operator kind, fitted on ``n`` operators measured in
    both; ``z`` = the key features ``features`` standardised by ``mean`` / ``scale`` and clipped to what the
    measured operators spanned (``low``..``high``), ``form`` 'line' or 'features'. Form 'costs':
    ``t_new = a + b t_source + w . c`` in ms, ``c`` the operator's cost terms named ``features`` (in
    :data:`COST_UNIT` units), every coefficient non-negative."""

    a: float
    b: float
    n: int
    form: str = "line"
    features: tuple[str, ...] = ()
    mean: tuple[float, ...] = ()
    scale: tuple[float, ...] = ()
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()
    weights: tuple[float, ...] = ()

    def __call__(self, source_ms: np.ndarray, keys: Sequence[str] | None = None) -> np.ndarray:
        if self.form == "costs":
            if keys is None:
                raise ValueError("this kind's map uses the operator keys: pass them")
            t = self.a + self.b * np.asarray(source_ms, float) + cost_matrix(keys, self.features) @ np.asarray(self.weights)
            return np.maximum(t, MIN_MAPPED_MS)
        log_t = self.a + self.b * np.log(np.asarray(source_ms, float))
        if self.weights:
            if keys is None:
                raise ValueError("this kind's map uses the operator keys: pass them")
            log_t = log_t + self._z(key_features(keys)) @ np.asarray(self.weights)
        return np.exp(log_t)

    def _z(self, feats: pd.DataFrame) -> np.ndarray:
        x = feats.reindex(columns=list(self.features)).fillna(pd.Series(self.mean, index=list(self.features)))
        z = (x.to_numpy(float) - np.asarray(self.mean)) / np.asarray(self.scale)
        return np.clip(z, np.asarray(self.low), np.asarray(self.high))


def source_table(spec: str, tables_dir: str | Path) -> tuple[pd.DataFrame, Setting, Path]:
    """Read the source of a transfer: ``spec`` is a table's ``.csv`` path, or its stem
    (``local_512_t1_fp32_logits8``) in ``tables_dir``. Returns its rows (mapped rows of an earlier transfer
    dropped: only measurements are transferred), its setting and its path; anything unusable is one EtfError."""
    path = Path(spec)
    if not path.suffix:
        path = Path(tables_dir) / f"{spec}.csv"
    if not path.exists():
        raise EtfError(f"--transfer-from: no latency table at {path}; give a table's .csv path or its stem in "
                       f"--out (e.g. local_512_t1_fp32_logits8)")
    if path.name.endswith((".e2e.csv", ".heldout.csv")):
        raise EtfError(f"--transfer-from: {path} is an end-to-end file; give the operator table ({path.name.split('.')[0]}.csv)")
    rows = tbl.check_operator_rows(tbl.read_csv_checked(path, tbl.OP_COLUMNS, "key"), path)
    rows = rows[rows["phase"] != MAPPED_PHASE].reset_index(drop=True)
    setting = tbl.setting_of_rows(rows, f"latency table {path}")
    if setting is None:
        raise EtfError(f"--transfer-from: latency table {path} has no measured rows")
    return rows, setting, path


def check_transfer(source: Setting, target: Setting) -> None:
    """A transfer needs operators of the same input size and a target that is another setting (one line if not)."""
    if source.size != target.size:
        raise EtfError(f"--transfer-from: the source table is for {source.size} px, not {target.size}; operators "
                       f"transfer between settings of one input size")
    if source == target:
        raise EtfError(f"--transfer-from: the source table is this very setting ({target.describe()}); "
                       f"give another thread count, precision, head or device")


def kind_budget(source: pd.DataFrame, n_ops: int) -> dict[str, int]:
    """Operators to measure per kind for a budget of ``n_ops``: shared by :data:`KIND_WEIGHTS` (at least 2 per
    kind, at most the kind's rows); kinds without a weight (the output head's own operator) are all measured."""
    counts = source["kind"].value_counts().to_dict()
    weighted = {k: w for k, w in KIND_WEIGHTS.items() if k in counts}
    total_w = sum(weighted.values()) or 1
    out = {}
    for kind, have in counts.items():
        want = max(2, round(n_ops * weighted[kind] / total_w)) if kind in weighted else have
        out[str(kind)] = int(min(have, want))
    return out


def transfer_sample(source: pd.DataFrame, budget: dict[str, int]) -> list[Operator]:
    """Per kind, ``budget[kind]`` of the source's operators, the fastest and the slowest included; deterministic.
    Kinds whose operators name the work of their parts (:func:`latency.costs.cost_terms`) are spread over that
    work (:func:`spread_over_costs`), so a sum of the parts is pinned in every direction; the others evenly over
    their latency range, so each kind's line is pinned at both ends."""
    picks: list[Operator] = []
    for kind in sorted(budget):
        rows = source[source["kind"] == kind].sort_values(["median_ms", "key"], kind="stable")
        k = min(budget[kind], len(rows))
        if k <= 0:
            continue
        keys, ms = list(rows["key"]), rows["median_ms"].to_numpy(float)
        if 2 < k < len(rows) and cost_terms(parse_key(keys[0])):
            idx = spread_over_costs(keys, ms, k)
        else:
            idx = sorted({int(round(i)) for i in np.linspace(0, len(rows) - 1, k)})
        picks += [parse_key(keys[i]) for i in idx]
    return picks


def spread_over_costs(keys: Sequence[str], source_ms: np.ndarray, k: int) -> list[int]:
    """``k`` of the operators (indices; ``keys`` sorted by ``source_ms``): the fastest and the slowest, then
    greedily the one that most raises ``log det(X'X)`` of the cost-terms design ``X`` (``[1, t_source, terms]``
    per row, divided by the row's source time as the relative fit weighs it; columns scaled to unit norm): a
    D-optimal design for the non-negative sum. On three stored fp32/int8 table pairs, blocks picked so mapped
    the rest of the networks' MBConv time within 1.8-2.1% (sd over held-out networks) against 2.8-3.1% when
    spread over latency (latency/RESULTS.md, 2026-11-29 "noon")."""
    _, design = _cost_design(keys, np.log(np.asarray(source_ms, float)))
    x = design / np.asarray(source_ms, float)[:, None]
    x = x / np.linalg.norm(x, axis=0, keepdims=True).clip(1e-12)
    chosen = [0, len(keys) - 1]
    ridge = 1e-6 * np.eye(x.shape[1])
    while len(chosen) < k:
        gram = x[chosen].T @ x[chosen] + ridge
        inv = np.linalg.inv(gram)
        gain = np.einsum("ij,jk,ik->i", x, inv, x)  # det(G + v v') = det(G) (1 + v' G^-1 v)
        gain[chosen] = -np.inf
        chosen.append(int(np.argmax(gain)))
    return sorted(chosen)


def _ridge(x: np.ndarray, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[b, a, w...] of ``y = b x + a + w . z`` with :data:`FEATURE_RIDGE` on ``w`` only."""
    design = np.column_stack([x, np.ones(len(x)), z])
    penalty = np.eye(design.shape[1]) * FEATURE_RIDGE
    penalty[0, 0] = penalty[1, 1] = 0.0
    return np.linalg.lstsq(design.T @ design + penalty, design.T @ y, rcond=None)[0]


def _loo_rmse(fit_predict, n: int) -> float:
    errs = []
    for i in range(n):
        keep = np.arange(n) != i
        errs.append(fit_predict(keep, i))
    return float(np.sqrt(np.mean(np.square(errs))))


def _fit_kind(keys: Sequence[str], x: np.ndarray, y: np.ndarray) -> KindMap:
    """The line of one kind, or the line plus key features, or the sum of its parts' work (:func:`_fit_costs`),
    whichever predicts its measured operators better than the line in leave-one-out (see
    :data:`FEATURES_MUST_WIN`; the parts' work first)."""
    a, b = _fit_line(x, y)
    line = KindMap(a, b, int(len(x)))
    if len(x) < MIN_POINTS_FOR_FEATURES:
        return line
    feats = key_features(keys)
    feats = feats.loc[:, feats.notna().all() & (feats.std(ddof=0) > 1e-9)]
    if feats.shape[1] == 0:
        return line
    mean, scale = feats.mean().to_numpy(float), feats.std(ddof=0).to_numpy(float)
    z = (feats.to_numpy(float) - mean) / scale

    def line_err(keep: np.ndarray, i: int) -> float:
        la, lb = _fit_line(x[keep], y[keep])
        return float(y[i] - (la + lb * x[i]))

    def ridge_err(keep: np.ndarray, i: int) -> float:
        c = _ridge(x[keep], z[keep], y[keep])
        return float(y[i] - (c[0] * x[i] + c[1] + z[i] @ c[2:]))

    line_loo = _loo_rmse(line_err, len(x))
    costs = _fit_costs(keys, x, y)
    if costs is not None and _beats(costs[1], line_loo):
        return costs[0]  # before the features: a sum of the parts' work extrapolates, logs of the key clip
    if not _beats(_loo_rmse(ridge_err, len(x)), line_loo):
        return line
    c = _ridge(x, z, y)
    return KindMap(float(c[1]), float(c[0]), int(len(x)), "features", tuple(map(str, feats.columns)),
                   tuple(map(float, mean)), tuple(map(float, scale)), tuple(map(float, z.min(axis=0))),
                   tuple(map(float, z.max(axis=0))), tuple(map(float, c[2:])))


def _beats(loo: float, line_loo: float) -> bool:
    """Whether a map's leave-one-out RMSE beats the line's by :data:`FEATURES_MUST_WIN` and by 0.5% at least
    (less is noise, not shape)."""
    return loo < FEATURES_MUST_WIN * line_loo and line_loo - loo >= 0.005


def _cost_design(keys: Sequence[str], x: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """The cost terms the kind's operators name (those non-zero somewhere), and ``[1, t_source, terms...]``."""
    names = sorted({t for key in keys for t in cost_terms(parse_key(key))})
    c = cost_matrix(keys, names)
    nonzero = np.any(c > 0, axis=0)
    used = tuple(n for n, keep in zip(names, nonzero) if keep)
    return used, np.column_stack([np.ones(len(x)), np.exp(x), c[:, nonzero]])


def _fit_costs(keys: Sequence[str], x: np.ndarray, y: np.ndarray) -> tuple[KindMap, float] | None:
    """The cost-terms map of one kind and its leave-one-out RMSE (log ms), or None when its operators name no
    cost terms or there are too few of them for the terms."""
    terms, design = _cost_design(keys, x)
    if not terms or len(x) < design.shape[1] + MIN_POINTS_FOR_SLOPE:
        return None
    t = np.exp(y)

    def err(keep: np.ndarray, i: int) -> float:
        c = nnls_relative(design[keep], t[keep])
        return float(y[i] - np.log(max(design[i] @ c, MIN_MAPPED_MS)))

    c = nnls_relative(design, t)
    return KindMap(float(c[0]), float(c[1]), int(len(x)), "costs", terms, weights=tuple(map(float, c[2:]))), \
        _loo_rmse(err, len(x))


def _fit_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if len(x) >= MIN_POINTS_FOR_SLOPE and np.ptp(x) > 1e-6:
        b, a = np.polyfit(x, y, 1)
        b = float(np.clip(b, *SLOPE_RANGE))
        return float(np.median(y - b * x)), b
    return float(np.median(y - x)), 1.0


def fit_maps(source: pd.DataFrame, measured: pd.DataFrame) -> dict[str, KindMap]:
    """Per kind, the log-log line from the source's latencies to the new setting's (extended with key features
    where they win, :func:`_fit_kind`), on the operators measured in both; a kind with none measured takes the
    line of all kinds pooled."""
    both = measured.merge(source[["key", "median_ms"]], on="key", suffixes=("", "_src"))
    if both.empty:
        raise EtfError("--transfer-from: none of the operators measured on this setting is in the source table; "
                       "nothing to map from")
    maps = {}
    for kind, rows in both.groupby("kind"):
        maps[str(kind)] = _fit_kind(list(rows["key"]), np.log(rows["median_ms_src"].to_numpy(float)),
                                    np.log(rows["median_ms"].to_numpy(float)))
    a, b = _fit_line(np.log(both["median_ms_src"].to_numpy(float)), np.log(both["median_ms"].to_numpy(float)))
    pooled = KindMap(a, b, int(len(both)))
    for kind in source["kind"].unique():
        maps.setdefault(str(kind), pooled)
    return maps


def mapped_rows(source: pd.DataFrame, measured: pd.DataFrame, maps: dict[str, KindMap],
                template: dict[str, Any]) -> pd.DataFrame:
    """The source's rows not measured on the new setting, with latencies mapped through their kind's line and
    the new setting's columns (``template``: device, threads, precision, head, ...); phase ``transferred``."""
    rest = source[~source["key"].isin(set(measured["key"]))].copy()
    if rest.empty:
        return rest.reindex(columns=tbl.OP_COLUMNS)
    scale = np.ones(len(rest))
    for kind, idx in rest.groupby("kind").groups.items():
        pos = rest.index.get_indexer(idx)
        src = rest.loc[idx, "median_ms"].to_numpy(float)
        new = maps[str(kind)](src, list(rest.loc[idx, "key"]))
        scale[pos] = new / src
    for col in ("median_ms", "mean_ms", "min_ms", "max_ms", "std_ms"):
        rest[col] = pd.to_numeric(rest[col], errors="coerce") * scale
    for col, value in template.items():
        rest[col] = value
    rest["phase"] = MAPPED_PHASE
    return rest[tbl.OP_COLUMNS].reset_index(drop=True)


def transferred_table(source: pd.DataFrame, measured: pd.DataFrame,
                      template: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, KindMap]]:
    """The new setting's full operator table: its measured rows plus the source's other rows mapped (see
    :func:`mapped_rows`), and the per-kind lines used."""
    measured = measured[measured["phase"] != MAPPED_PHASE].reset_index(drop=True)
    maps = fit_maps(source, measured)
    mapped = mapped_rows(source, measured, maps, template)
    table = pd.concat([measured[tbl.OP_COLUMNS], mapped], ignore_index=True) if len(mapped) else measured
    return table, maps


def transfer_record(path: Path, source_setting: Setting, source_rows: int, maps: dict[str, KindMap],
                    measured_ops: int, measured_e2e: int, source_e2e: int) -> dict[str, Any]:
    """What the meta file records about a transfer: the source, the lines, and the cost against a full table."""
    full = source_rows + source_e2e
    return {"from": str(path), "from_setting": source_setting.to_dict(), "measured_ops": int(measured_ops),
            "measured_e2e": int(measured_e2e), "mapped_ops": int(source_rows - measured_ops),
            "fraction_of_full": round((measured_ops + measured_e2e) / full, 4) if full else None,
            "maps": {k: asdict(m) for k, m in sorted(maps.items())}}


def design_missing_from(source: pd.DataFrame, design: Sequence[Operator]) -> list[Operator]:
    """Designed operators of a kind the source has no row of (e.g. another head's own operator): these are
    measured in full, since there is nothing to map them from."""
    kinds = set(source["kind"])
    return [op for op in design if op.kind not in kinds]


__all__ = ["KindMap", "key_features", "cost_matrix", "COST_UNIT", "MEASURED_PHASE", "MAPPED_PHASE", "KIND_WEIGHTS", "DEFAULT_TRANSFER_OPS",
           "DEFAULT_TRANSFER_E2E", "source_table", "check_transfer", "kind_budget", "transfer_sample", "spread_over_costs", "fit_maps",
           "mapped_rows", "transferred_table", "transfer_record", "design_missing_from"]
