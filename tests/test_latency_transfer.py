"""Transfer of a latency table to another setting (latency/transfer.py): the subset, the per-kind lines, the
mapped rows, and the errors. Pure table math on operator keys of the real 64 px design; the run through
etf-profile with real conversions and measurements is in tests/test_latency_profile.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from etf.common import EtfError
from latency import table as tbl
from latency import transfer as xfer
from latency.plan import designed_sample
from latency.setting import Setting

SIZE = 64
A = Setting("local", SIZE, 1)
B = Setting("local", SIZE, 2)


def table_of(setting: Setting, latencies: dict[str, float], phase: str = "design") -> pd.DataFrame:
    """Operator rows of ``setting`` with the given latencies (ms) per key."""
    from latency.operators import parse_key

    rows = [{"key": k, "kind": parse_key(k).kind, "phase": phase, "device": setting.device, "device_kind": "local",
             "runtime": "litert", "threads": setting.threads, "size": setting.size, "median_ms": v, "mean_ms": v,
             "std_ms": 0.01 * v, "min_ms": v, "max_ms": v, "cv": 0.01, "runs": 5, "warmup": 1, "ref_ms": 1.0,
             "batch": 0, "timestamp": "2026-11-27T00:00:00+00:00", "converter": "x", "precision": setting.precision,
             "head": setting.head} for k, v in latencies.items()]
    return pd.DataFrame(rows, columns=tbl.OP_COLUMNS)


@pytest.fixture(scope="module")
def source() -> pd.DataFrame:
    """Every designed operator at 64 px with a latency that grows with its cost (seeded)."""
    rng = np.random.default_rng(0)
    ops = [op for group in designed_sample(SIZE).values() for op in group]
    lat = {op.key: float(0.02 + 1e-6 * op.features()[-1] * rng.uniform(0.8, 1.25)) for op in ops}
    return table_of(A, lat)


def truth_b(src: pd.DataFrame) -> dict[str, float]:
    """A known per-kind law for the new setting: t_B = c_kind * t_A ** b_kind."""
    law = {"mbconv": (0.6, 0.9), "transformer": (0.7, 0.95), "injection": (0.8, 1.0), "pool": (0.9, 1.0),
           "stem": (0.5, 0.85), "head": (0.75, 1.05)}
    return {k: law[kind][0] * v ** law[kind][1] for k, kind, v in zip(src["key"], src["kind"], src["median_ms"])}


def test_budget_shares_operators_by_kind_with_two_at_least_and_never_more_than_there_are(source):
    budget = xfer.kind_budget(source, 60)
    counts = source["kind"].value_counts()
    assert budget["mbconv"] == 36 and budget["transformer"] == 8 and budget["injection"] == 6
    assert all(2 <= budget[k] <= counts[k] or budget[k] == counts[k] for k in budget)
    assert xfer.kind_budget(source, 1)["mbconv"] == 2  # a line needs two points


def test_sample_spans_each_kinds_latency_range_ends_included(source):
    budget = xfer.kind_budget(source, 60)
    picked = {op.key for op in xfer.transfer_sample(source, budget)}
    for kind, rows in source.groupby("kind"):
        mine = rows[rows["key"].isin(picked)]
        assert len(mine) == budget[kind]
        assert mine["median_ms"].min() == rows["median_ms"].min()
        assert mine["median_ms"].max() == rows["median_ms"].max()
    assert [op.key for op in xfer.transfer_sample(source, budget)] == \
        [op.key for op in xfer.transfer_sample(source.sample(frac=1, random_state=1), budget)]  # deterministic


def test_lines_recover_a_known_per_kind_law_and_map_every_other_row(source):
    truth = truth_b(source)
    picked = xfer.transfer_sample(source, xfer.kind_budget(source, 60))
    measured = table_of(B, {op.key: truth[op.key] for op in picked}, phase=xfer.MEASURED_PHASE)
    table, maps = xfer.transferred_table(source, measured, {"threads": 2, "device": "local", "ref_ms": 0.7})
    assert maps["mbconv"].b == pytest.approx(0.9, abs=1e-9) and np.exp(maps["mbconv"].a) == pytest.approx(0.6)
    assert maps["injection"].b == pytest.approx(1.0) and maps["mbconv"].n == 36
    assert len(table) == len(source) and set(table["key"]) == set(source["key"])
    mapped = table[table["phase"] == xfer.MAPPED_PHASE]
    assert len(mapped) == len(source) - len(picked)
    assert (mapped["threads"] == 2).all() and (mapped["ref_ms"] == 0.7).all()
    np.testing.assert_allclose(mapped["median_ms"], [truth[k] for k in mapped["key"]], rtol=1e-9)
    kept = table[table["phase"] == xfer.MEASURED_PHASE].set_index("key")["median_ms"]
    assert kept.to_dict() == pytest.approx({op.key: truth[op.key] for op in picked})


def test_a_kind_with_few_points_is_a_ratio_and_a_kind_with_none_takes_the_pooled_line(source):
    mb = source[source["kind"] == "mbconv"].sort_values("median_ms")
    measured = table_of(B, {k: 0.5 * v for k, v in zip(mb["key"].iloc[[0, -1]], mb["median_ms"].iloc[[0, -1]])},
                        phase=xfer.MEASURED_PHASE)
    maps = xfer.fit_maps(source, measured)
    assert maps["mbconv"].b == 1.0 and np.exp(maps["mbconv"].a) == pytest.approx(0.5)
    assert maps["transformer"] == maps["mbconv"] == maps["head"]


def test_slope_is_bounded_so_a_few_noisy_points_cannot_extrapolate_wildly(source):
    tf = source[source["kind"] == "transformer"].sort_values("median_ms").head(5)
    measured = table_of(B, {k: v ** 3 for k, v in zip(tf["key"], tf["median_ms"])}, phase=xfer.MEASURED_PHASE)
    assert xfer.fit_maps(source, measured)["transformer"].b == xfer.SLOPE_RANGE[1]


def test_source_errors_are_one_line(tmp_path, source):
    with pytest.raises(EtfError, match="no latency table at"):
        xfer.source_table("local_64_t1_fp32_logits8", tmp_path)
    path = tmp_path / f"{A.stem}.csv"
    source.to_csv(path, index=False)
    rows, setting, found = xfer.source_table(A.stem, tmp_path)
    assert setting == A and found == path and len(rows) == len(source)
    with pytest.raises(EtfError, match="this very setting"):
        xfer.check_transfer(A, A)
    with pytest.raises(EtfError, match="is for 64 px, not 128"):
        xfer.check_transfer(A, Setting("local", 128, 2))
    (tmp_path / "x.e2e.csv").write_text("a\n")
    with pytest.raises(EtfError, match="end-to-end file"):
        xfer.source_table(str(tmp_path / "x.e2e.csv"), tmp_path)
    with pytest.raises(EtfError, match="none of the operators measured"):
        xfer.fit_maps(source, table_of(B, {}, phase=xfer.MEASURED_PHASE))


def _transfer_with(source: pd.DataFrame, law: dict[str, float], n_ops: int = 60):
    picked = xfer.transfer_sample(source, xfer.kind_budget(source, n_ops))
    measured = table_of(B, {op.key: law[op.key] for op in picked}, phase=xfer.MEASURED_PHASE)
    table, maps = xfer.transferred_table(source, measured, {"precision": "int8", "device": "local", "ref_ms": 0.7})
    return picked, table, maps


def _map_round_trips_through_json(maps, source, kind: str, picked, mapped: pd.DataFrame) -> None:
    """The map in the meta record (JSON) maps exactly as the fitted one, and refuses to map without the keys."""
    import json

    record = xfer.transfer_record(Path("a.csv"), A, len(source), maps, len(picked), 4, 8)
    again = xfer.KindMap(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in json.loads(json.dumps(record["maps"]))[kind].items()})
    src = source.set_index("key").loc[mapped["key"], "median_ms"].to_numpy()
    np.testing.assert_allclose(again(src, list(mapped["key"])), mapped["median_ms"].to_numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="keys"):
        maps[kind](src)


def test_a_speed_up_that_depends_on_the_operators_shape_is_mapped_through_its_key_features(source):
    """A speed-up that grows with a transformer's head count at the same source latency: a line on the source
    latency cannot carry that, the key features (here the heads) can; the map survives JSON (the meta record)."""
    from latency.operators import parse_key

    def truth(key: str, ms: float) -> float:
        op = parse_key(key)
        return 0.5 * ms * (op.heads / 4.0) ** -0.6 if op.kind == "transformer" else 0.5 * ms

    law = {k: truth(k, v) for k, v in zip(source["key"], source["median_ms"])}
    picked, table, maps = _transfer_with(source, law, n_ops=120)
    assert maps["transformer"].form == "features" and "heads" in maps["transformer"].features
    assert maps["injection"].form == "line"  # a plain ratio there: the line wins, nothing to add
    mapped = table[(table["phase"] == xfer.MAPPED_PHASE) & (table["kind"] == "transformer")]
    seen = [parse_key(op.key).heads for op in picked if op.kind == "transformer"]
    mapped = mapped[[min(seen) <= parse_key(k).heads <= max(seen) for k in mapped["key"]]]  # beyond: clipped
    assert len(mapped) >= 10
    err = np.abs(mapped["median_ms"].to_numpy() / np.array([law[k] for k in mapped["key"]]) - 1)
    assert np.median(err) < 0.03 and err.max() < 0.15
    line_only = xfer.KindMap(maps["transformer"].a, maps["transformer"].b, maps["transformer"].n)
    src = source.set_index("key").loc[mapped["key"], "median_ms"].to_numpy()
    assert np.median(np.abs(line_only(src) / np.array([law[k] for k in mapped["key"]]) - 1)) > np.median(err)
    _map_round_trips_through_json(maps, source, "transformer", picked, mapped)


def test_a_speed_up_per_part_of_a_block_is_mapped_through_its_cost_terms(source):
    """int8 speeds a block's expansion, depthwise and projection up by different factors, so its new time is a sum
    of its parts' work with new weights, not a function of its source time: the MBConv map becomes that sum
    (non-negative weights, fitted on the measured blocks) and maps every other block of the kind, wider and
    narrower ones included, within 1%."""
    from latency.costs import cost_terms
    from latency.operators import parse_key

    weight = {"expand_macs": 0.1, "dw_macs": 1.0, "project_macs": 0.15, "expanded_elems": 0.5,
              "hidden_out_elems": 0.0, "in_out_elems": 0.25}  # ms per million; blocks of 0.2-0.6 ms at 64 px

    def truth(key: str, ms: float) -> float:
        op = parse_key(key)
        if op.kind != "mbconv":
            return 0.5 * ms
        return 0.2 + sum(weight[t] * v / xfer.COST_UNIT for t, v in cost_terms(op).items())

    law = {k: truth(k, v) for k, v in zip(source["key"], source["median_ms"])}
    picked, table, maps = _transfer_with(source, law)
    m = maps["mbconv"]
    assert m.form == "costs" and set(m.features) >= {"expand_macs", "dw_macs", "project_macs"}
    assert min(m.weights) >= 0 and m.a >= 0 and m.b >= 0
    assert dict(zip(m.features, m.weights))["dw_macs"] == pytest.approx(1.0, rel=0.05)
    mapped = table[(table["phase"] == xfer.MAPPED_PHASE) & (table["kind"] == "mbconv")]
    assert len(mapped) > 100
    err = np.abs(mapped["median_ms"].to_numpy() / np.array([law[k] for k in mapped["key"]]) - 1)
    assert err.max() < 0.01
    _map_round_trips_through_json(maps, source, "mbconv", picked, mapped)
    from latency.cli.profile import transfer_line

    line = transfer_line(xfer.transfer_record(Path("a.csv"), A, len(source), maps, len(picked), 16, 24))
    assert "mbconv costs (n=36)" in line and "injection line" in line and f"{len(picked)} operators and 16" in line


def test_cost_terms_are_the_operators_own_work_and_only_mbconv_names_its_parts(source):
    """latency/costs.py's MBConv terms add up to what the operator's features count (expansion, depthwise and
    projection multiply-adds; the memory term), so the two cannot drift apart; other kinds name none."""
    from latency.costs import cost_terms
    from latency.operators import parse_key

    for key in source["key"]:
        op = parse_key(key)
        terms = cost_terms(op)
        if op.kind != "mbconv":
            assert terms == {}
            continue
        f = op.features()
        assert [terms["expand_macs"], terms["dw_macs"], terms["project_macs"]] == [f[8], f[9], f[10]]
        assert terms["expanded_elems"] + terms["hidden_out_elems"] + terms["in_out_elems"] == f[11]


def test_blocks_are_picked_over_their_parts_work_so_the_sum_is_pinned_in_every_direction(source):
    """MBConv picks (a kind naming its parts' work) are a greedy D-optimal design for the cost-terms map: ends of
    the latency range included, and the relative design better conditioned (larger log det) than the same number
    of blocks spread evenly over latency; kinds without cost terms keep the even spread."""
    mb = source[source["kind"] == "mbconv"].sort_values(["median_ms", "key"], kind="stable")
    keys, ms = list(mb["key"]), mb["median_ms"].to_numpy(float)
    idx = xfer.spread_over_costs(keys, ms, 20)
    assert len(set(idx)) == 20 and 0 in idx and len(keys) - 1 in idx

    def logdet(picks: list[int]) -> float:
        _, design = xfer._cost_design([keys[i] for i in picks], np.log(ms[picks]))
        x = design / ms[picks][:, None]
        return float(np.linalg.slogdet(x.T @ x)[1])

    even = sorted({int(round(i)) for i in np.linspace(0, len(keys) - 1, 20)})
    assert logdet(idx) > logdet(even) + 1.0
    budget = {"mbconv": 20, "transformer": 5}
    picked = xfer.transfer_sample(source, budget)
    assert [op.key for op in picked if op.kind == "mbconv"] == [keys[i] for i in idx]
    tf = source[source["kind"] == "transformer"].sort_values(["median_ms", "key"], kind="stable")
    even_tf = [tf["key"].iloc[int(round(i))] for i in np.linspace(0, len(tf) - 1, 5)]
    assert [op.key for op in picked if op.kind == "transformer"] == even_tf
