"""The arithmetic of operator re-timing passes (latency/passes.py): batches, pending work, medians."""
from __future__ import annotations

import pandas as pd
import pytest

from latency import passes as rp


def _table(values: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"key": list(values), "median_ms": list(values.values()), "ref_ms": 1.0, "batch": 0,
                         "timestamp": "t0"})


def test_pass_batches_cover_every_key_once_shuffled_per_pass_and_reproducibly():
    keys = [f"k{i}" for i in range(50)]
    one = rp.pass_batches(keys, 1, 8)
    assert [len(b) for b in one] == [8] * 6 + [2]
    assert sorted(k for b in one for k in b) == sorted(keys)
    assert one == rp.pass_batches(keys, 1, 8)  # seeded: a resumed pass cuts the same batches
    assert [k for b in one for k in b] != keys  # mixed, not the design's order
    assert rp.pass_batches(keys, 2, 8) != one  # another pass, other batches


def test_first_pass_rows_record_the_table_timing_once():
    table = _table({"a": 1.0, "b": 2.0})
    first = rp.first_pass_rows(table, pd.DataFrame(columns=rp.PASS_COLUMNS))
    assert list(first["key"]) == ["a", "b"] and set(first["pass"]) == {0}
    assert list(first["median_ms"]) == [1.0, 2.0] and list(first.columns) == rp.PASS_COLUMNS
    assert rp.first_pass_rows(table, first).empty  # recorded already: not again (a resumed run)
    more = rp.first_pass_rows(_table({"a": 1.0, "c": 3.0}), first)
    assert list(more["key"]) == ["c"]  # an operator measured later gets its own pass 0


def test_pending_medians_and_passes_done():
    table = _table({"a": 1.0, "b": 2.0, "c": 3.0})
    rec = pd.concat([rp.first_pass_rows(table, pd.DataFrame(columns=rp.PASS_COLUMNS)),
                     pd.DataFrame({"key": ["a", "b", "a", "b"], "pass": [1, 1, 2, 2], "median_ms": [1.3, 2.0, 1.1, 9.0],
                                   "ref_ms": 1.0, "batch": 1, "timestamp": "t1"})], ignore_index=True)
    assert rp.pending(["a", "b", "c"], rec, 1) == ["c"] and rp.pending(["a", "b", "c"], rec, 3) == ["a", "b", "c"]
    out = rp.apply_medians(table, rec)
    assert list(out["median_ms"]) == pytest.approx([1.1, 2.0, 3.0])  # median of 3; b's outlier pass ignored
    assert list(table["median_ms"]) == [1.0, 2.0, 3.0]  # the input is not modified
    assert rp.passes_done(["a", "b"], rec) == 3 and rp.passes_done(["a", "b", "c"], rec) == 1
    assert rp.passes_done([], rec) == 0 and rp.passes_done(["a"], pd.DataFrame(columns=rp.PASS_COLUMNS)) == 1


def test_passes_file_sits_beside_the_table():
    from latency.setting import Setting
    from latency.table import passes_path

    assert passes_path("t", Setting("local", 256, 1)).name == "local_256_t1_fp32_logits8.passes.csv"


def test_disagreeing_passes_flag_an_unsteady_table():
    """An operator whose passes differ by more than 30% was timed in two machine states; a table where more than
    a quarter of the re-timed operators do is flagged (demoR: 149 of 269; the other stored tables 2-20%)."""
    def rec(spreads: dict[str, float]) -> pd.DataFrame:
        rows = [{"key": k, "pass": p, "median_ms": 1.0 + (s if p == 2 else 0.0), "ref_ms": 1.0, "batch": p,
                 "timestamp": "t"} for k, s in spreads.items() for p in range(3)]
        return pd.DataFrame(rows, columns=rp.PASS_COLUMNS)

    calm = rec({f"k{i}": 0.05 for i in range(8)} | {"k8": 0.6, "k9": 0.2})
    assert rp.disagreeing(calm) == (1, 10) and not rp.disagreement_record(calm)["unsteady"]
    shaky = rec({f"k{i}": 0.55 for i in range(3)} | {f"c{i}": 0.0 for i in range(7)})
    assert rp.disagreeing(shaky) == (3, 10) and rp.disagreement_record(shaky)["unsteady"]
    assert rp.disagreeing(shaky, [f"c{i}" for i in range(7)]) == (0, 7)  # only the given operators count
    single = shaky[shaky["pass"] == 0]
    assert rp.disagreeing(single) == (0, 0) and not rp.disagreement_record(single)["unsteady"]  # one pass says nothing
    assert rp.disagreeing(pd.DataFrame(columns=rp.PASS_COLUMNS)) == (0, 0)
    record = rp.disagreement_record(shaky)
    assert record == {"operators": 3, "of": 10, "threshold": rp.DISAGREE, "unsteady": True}
    assert rp.unsteady_warning(record).startswith("WARNING: the machine was unsteady while profiling: 3 of 10 ")
    assert rp.unsteady_warning({**record, "unsteady": False}) is None and rp.unsteady_warning({}) is None
