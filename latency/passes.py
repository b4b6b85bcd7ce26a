"""Operator re-timing passes: every measured operator is timed again at later moments, in shuffled batches, and
the table keeps the median of its passes.

Why: one pass times an operator once, inside one batch of ~24 operators that takes well under a second at the
demo's 256 px (0.1-0.7 ms per run). A slow or fast moment of the machine then shifts a whole batch, and batches
follow the design's order, so it shifts a whole operator kind at once; the whole-network correction cannot
absorb that, since it moves networks with more of that kind more. On the demo's 256 px table (demoL), refits on
each of three re-timing passes scored 37-70% of 30 held-out subnets within +-5% and the median of the passes
63-73% (latency/RESULTS.md). A pass costs the measurement alone (files are converted once): ~5 s at 256 px,
~25 s at 512 px with one thread.

The passes file (``<table stem>.passes.csv``, ``latency.table.passes_path``) keeps every timing: pass 0 is the table's own measurement,
recorded when the first re-timing pass starts; the table's ``median_ms`` is the median over the passes.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

#: Timing passes per operator by default (the first plus two re-timings).
DEFAULT_PASSES = 3
#: Columns of the passes file; one row per (key, pass).
PASS_COLUMNS = ["key", "pass", "median_ms", "ref_ms", "batch", "timestamp"]
#: An operator whose passes differ by more than this (slowest / fastest - 1) was timed in different machine states.
DISAGREE = 0.3
#: A table is flagged unsteady when more than this share of its re-timed operators disagree. Stored tables here:
#: 2-20% at 256 px and 512 px, except demoR's 55%, the table whose widest head operator was timed +55% in two of
#: three passes and whose searched winners were then over-predicted by 6-16% (search/RESULTS.md, 2026-11-29).
UNSTEADY_SHARE = 0.25


def first_pass_rows(ops: pd.DataFrame, recorded: pd.DataFrame) -> pd.DataFrame:
    """Pass-0 rows (the table's own timing) for the operators of ``ops`` that ``recorded`` lacks them for."""
    have = set(recorded.loc[recorded["pass"] == 0, "key"]) if len(recorded) else set()
    new = ops[~ops["key"].isin(have)]
    return pd.DataFrame({"key": new["key"].to_numpy(), "pass": 0, "median_ms": new["median_ms"].to_numpy(float),
                         "ref_ms": new["ref_ms"].to_numpy(float), "batch": new["batch"].to_numpy(),
                         "timestamp": new["timestamp"].to_numpy()}, columns=PASS_COLUMNS)


def pending(keys: Sequence[str], recorded: pd.DataFrame, pass_index: int) -> list[str]:
    """The operators of ``keys`` not yet timed in pass ``pass_index``, in their given order."""
    done = set(recorded.loc[recorded["pass"] == pass_index, "key"]) if len(recorded) else set()
    return [k for k in keys if k not in done]


def pass_batches(keys: Sequence[str], pass_index: int, batch: int, seed: int = 0) -> list[list[str]]:
    """``keys`` shuffled (seeded by the pass) and cut into batches: a re-timing pass mixes kinds in every batch,
    so one slow moment touches a few operators of each kind instead of all of one."""
    order = list(keys)
    np.random.default_rng([seed, pass_index]).shuffle(order)
    return [order[i:i + batch] for i in range(0, len(order), max(1, batch))]


def pass_medians(recorded: pd.DataFrame) -> pd.Series:
    """key -> median latency (ms) over the passes recorded for it."""
    if not len(recorded):
        return pd.Series(dtype=float)
    return recorded.groupby("key")["median_ms"].median()


def apply_medians(ops: pd.DataFrame, recorded: pd.DataFrame) -> pd.DataFrame:
    """``ops`` with ``median_ms`` replaced by the median over passes where an operator has more than one pass."""
    if not len(recorded) or not len(ops):
        return ops
    counts = recorded.groupby("key")["pass"].nunique()
    med = pass_medians(recorded)[counts[counts > 1].index]
    out = ops.copy()
    hit = out["key"].isin(med.index)
    out.loc[hit, "median_ms"] = med[out.loc[hit, "key"]].to_numpy(float)
    return out


def disagreeing(recorded: pd.DataFrame, keys: Sequence[str] | None = None) -> tuple[int, int]:
    """(operators whose passes differ by more than :data:`DISAGREE`, operators with two passes or more), over
    ``keys`` (default: every recorded operator)."""
    if not len(recorded):
        return 0, 0
    rows = recorded if keys is None else recorded[recorded["key"].isin(set(keys))]
    by = rows.groupby("key")["median_ms"]
    multi = by.count() > 1
    spread = (by.max() / by.min() - 1)[multi]
    return int((spread > DISAGREE).sum()), int(multi.sum())


def disagreement_record(recorded: pd.DataFrame, keys: Sequence[str] | None = None) -> dict:
    """What the meta file and the profile's summary keep as ``passes_disagree`` (read by
    :func:`unsteady_warning`): the disagreeing operators, of how many re-timed, the threshold, and the verdict
    ``unsteady``: the machine moved so much while these operators were timed that the table is suspect (more than
    :data:`UNSTEADY_SHARE` of the re-timed operators disagree across their passes)."""
    bad, timed = disagreeing(recorded, keys)
    return {"operators": bad, "of": timed, "threshold": DISAGREE,
            "unsteady": timed > 0 and bad > UNSTEADY_SHARE * timed}


def unsteady_warning(disagree: dict) -> str | None:
    """The one-line warning for a profile's ``passes_disagree`` record (None when the table is steady)."""
    if not disagree.get("unsteady"):
        return None
    return (f"WARNING: the machine was unsteady while profiling: {disagree['operators']} of {disagree['of']} "
            f"operators' passes differ by more than {disagree['threshold']:.0%}; predictions from this table may be "
            f"off by 10% or more (profile again in a quieter moment)")


def passes_done(ops_keys: Sequence[str], recorded: pd.DataFrame) -> int:
    """How many passes every operator of ``ops_keys`` has (1 when none was re-timed)."""
    if not len(ops_keys):
        return 0
    if not len(recorded):
        return 1
    counts = recorded.groupby("key")["pass"].nunique()
    return int(min(max(1, int(counts.get(k, 1))) for k in ops_keys))
