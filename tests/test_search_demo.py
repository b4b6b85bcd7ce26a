"""End to end: ``python -m search.cli.demo --quick`` runs the whole flow on this CPU and resumes when rerun.

Slow (a few minutes: trains a tiny supernet, profiles a reduced table, converts three models to TFLite).
It needs every piece of the flow; before the training and latency branches are merged it is skipped with the
missing module named.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from supernet.space import load_config
from search.log import read_log
from search.pipeline import FILL_BAND

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run_demo(out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "search.cli.demo", "--quick", "-o", str(out)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=900)


@pytest.mark.timeout(1200)
def test_quick_demo_runs_the_whole_flow_and_resumes(tmp_path):
    pytest.importorskip("supernet.evaluation.evaluator", reason="needs the training/evaluation branch (supernet.evaluation.evaluator)")
    pytest.importorskip("latency.predictor", reason="needs the latency branch (latency.predictor)")
    out = tmp_path / "demo"
    proc = _run_demo(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "demo_summary.json").read_text())
    rows = {r["model"]: r for r in summary["rows"]}
    tiny, small, found = rows["topformer-tiny"], rows["topformer-small"], rows["searched @ mid meas."]
    assert tiny["measured_ms"] > 0 and small["measured_ms"] > 0
    assert found["target_ms"] == pytest.approx((tiny["measured_ms"] + small["measured_ms"]) / 2, abs=0.01)
    assert found["predicted_ms"] <= found["target_ms"] + 1e-6
    assert found["measured_ms"] > 0 and 0.0 <= found["miou"] <= 100.0
    search = out / "search"
    best = load_config(search / "best.json")
    rows_logged = read_log(search / "search_log.csv")
    assert best.key() in {r.key for r in rows_logged}
    assert (search / "pareto.png").stat().st_size > 0 and (search / "model.tflite").stat().st_size > 0
    assert "artefacts:" in proc.stdout and str(search) in proc.stdout
    # the table reports the held-out split: the winner re-scored on images the search never saw, with an interval
    report = json.loads((search / "summary.json").read_text())["report"]
    assert found["miou"] == pytest.approx(report["winner"]["miou"]) and report["split"] == "report"
    diff = found["vs"]["winner_minus_ref"]
    assert diff["low"] <= diff["diff"] <= diff["high"] and diff["resamples"] == 1000
    split = json.loads((search / "search_meta.json").read_text())["val_split"]
    assert set(split["search"]["ids"]).isdisjoint(split["report"]["ids"]) and split["used"]["split"] == "search"
    assert "held-out report split" in proc.stdout and "inherit vs preset" in proc.stdout
    # the shipped file itself, scored in LiteRT on the same report images at the same size (64 px here), gives
    # the search's recalibrated score: the file that was benchmarked is the one that was scored
    assert found["tflite_miou"] == pytest.approx(found["miou"], abs=0.5)
    # the closed loop: a winner measured more than 5% under the target is searched again in [97.5%, 100%] of it
    loop = json.loads((search / "summary.json").read_text())
    rounds = loop["refinements"]
    if rounds[0]["measured_in_frame_ms"] < 0.95 * found["target_ms"] and not rounds[0].get("infeasible"):
        floor = (1 - FILL_BAND) * found["target_ms"]
        assert len(rounds) == 2 and rounds[1]["floor_ms"] == pytest.approx(floor)
        assert floor - 1e-6 <= rounds[1]["predicted_ms"] <= found["target_ms"] + 1e-6
    assert loop["refine_stop"] and loop["model_key"] == best.key()
    # every round is judged at the speed the target was measured at (TopFormer-Tiny beside the presets): its
    # measured ratio times that reference latency, whatever the device's speed during the round
    state = json.loads((out / "demo_state.json").read_text())
    assert loop["frame_ref_ms"] == pytest.approx(state["preset_paired"]["topformer-tiny"][0], rel=1e-3)
    assert all(r["measured_in_frame_ms"] == pytest.approx(r["ratio"] * loop["frame_ref_ms"]) for r in rounds)
    assert found["in_frame_ms"] == pytest.approx(loop["measured_in_frame_ms"])  # the table's 'vs tgt' uses it
    assert "frame ms" in proc.stdout

    # rerun: every stage is skipped or replayed from its log; nothing is recomputed or relogged
    again = _run_demo(out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("skipped, exists") >= 3
    assert len(read_log(search / "search_log.csv")) == len(rows_logged)
    assert load_config(search / "best.json") == best
