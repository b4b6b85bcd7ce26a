"""etf-finetune: one subnet trained on its own from its inherited weights, resumable bit-for-bit, read back by
etf-eval with its own architecture."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from etf.common import EtfError
from supernet.presets import PRESETS
from supernet.training import finetune as ft
from supernet.training.checkpoint import load_supernet, read_checkpoint
from supernet.training.finetune import FinetuneConfig, finetune, finetuned_arch
from tests.train_helpers import SIZE, run_cli

ARCH = PRESETS["topformer-tiny"]


def _config(ckpt: Path, data: Path, out: Path, **kw) -> FinetuneConfig:
    args = dict(supernet=str(ckpt), arch=ARCH.to_dict(), data=str(data), dataset="synthetic", out=str(out), iters=4,
                batch=2, size=SIZE, lr=1e-3, warmup_iters=1, distill=0.5, workers=0, ckpt_every=2, device="cpu",
                progress=False)
    args.update(kw)
    return FinetuneConfig(**args)


def test_killed_and_resumed_finetune_matches_the_uninterrupted_one(tiny_ckpt: Path, tiny_data: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    straight = finetune(_config(tiny_ckpt, tiny_data, tmp_path / "straight"))
    assert straight["iteration"] == 4 and straight["arch"] == ARCH.key()

    calls = {"n": 0}
    real_step = ft._step

    def dies_in_step_three(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(ft, "_step", dies_in_step_three)
    with pytest.raises(KeyboardInterrupt):
        finetune(_config(tiny_ckpt, tiny_data, tmp_path / "killed"))
    assert read_checkpoint(tmp_path / "killed" / "last.pt")["iteration"] == 2
    monkeypatch.setattr(ft, "_step", real_step)
    resumed = finetune(_config(tiny_ckpt, tiny_data, tmp_path / "killed"), resume=True, given=set())
    assert resumed["iteration"] == 4

    a = read_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    b = read_checkpoint(tmp_path / "killed" / "last.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows_a = (tmp_path / "straight" / "log.csv").read_text().splitlines()
    rows_b = (tmp_path / "killed" / "log.csv").read_text().splitlines()
    assert [r.split(",")[:4] for r in rows_a] == [r.split(",")[:4] for r in rows_b]  # same losses, time differs


def test_finetune_trains_the_subnet_and_leaves_unused_blocks_alone(tiny_ckpt: Path, tiny_data: Path,
                                                                   tmp_path: Path) -> None:
    finetune(_config(tiny_ckpt, tiny_data, tmp_path / "ft", distill=0.0))
    before = load_supernet(tiny_ckpt).state_dict()
    after = load_supernet(tmp_path / "ft" / "last.pt").state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed, "fine-tuning changed no weight"
    # blocks beyond Tiny's depths get no gradient at all, so AdamW leaves them exactly as they were
    unused = [k for k in before if k.startswith("stages.") and before[k].dtype.is_floating_point
              and k not in changed]
    assert unused, "every supernet tensor changed: the inactive blocks were trained too"
    assert finetuned_arch(tmp_path / "ft" / "last.pt") == ARCH
    assert finetuned_arch(tiny_ckpt) is None


def test_resume_refuses_another_architecture(tiny_ckpt: Path, tiny_data: Path, tmp_path: Path) -> None:
    finetune(_config(tiny_ckpt, tiny_data, tmp_path / "ft", iters=1))
    other = _config(tiny_ckpt, tiny_data, tmp_path / "ft", iters=2, arch=PRESETS["topformer-small"].to_dict())
    with pytest.raises(EtfError, match="--arch differs"):
        finetune(other, resume=True, given={"arch", "iters"})
    with pytest.raises(EtfError, match="already exists"):
        finetune(_config(tiny_ckpt, tiny_data, tmp_path / "ft"))


def test_cli_finetune_then_eval_reads_the_recorded_architecture(tiny_ckpt: Path, tiny_data: Path,
                                                                tmp_path: Path) -> None:
    out = tmp_path / "cli"
    done = run_cli("supernet.cli.finetune", "--supernet", str(tiny_ckpt), "--arch", "topformer-tiny", "--data",
                   str(tiny_data), "--iters", "2", "--batch", "2", "--workers", "0", "--no-progress", "--json",
                   "-o", str(out))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["iteration"] == 2 and summary["arch"] == ARCH.key()
    scored = run_cli("supernet.cli.eval", "--ckpt", str(out / "last.pt"), "--data", str(tiny_data), "--limit", "2",
                     "--calib-batches", "1", "--calib-batch", "2", "--json")
    assert scored.returncode == 0, scored.stderr
    result = json.loads(scored.stdout)
    assert result["arch"] == ARCH.key() and 0.0 <= result["mIoU"] <= 1.0 and result["images"] == 2


def test_finetune_and_compare_scores_both_on_the_report_split_and_reuses_finished_runs(
        tiny_ckpt: Path, tiny_data: Path, tmp_path: Path) -> None:
    from search.finetune_compare import FinetuneSettings, finetune_and_compare
    from supernet.evaluation.evaluator import SubnetEvaluator

    reporter = SubnetEvaluator.from_checkpoint(tiny_ckpt, tiny_data, "synthetic", SIZE, 1, None, 2, split="report")
    searched = PRESETS["topformer-small"]
    recipe = FinetuneSettings(iters=1, lr=1e-3, batch=2, size=SIZE)
    first = finetune_and_compare(tiny_ckpt, searched, ARCH, "topformer-tiny", tiny_data, "synthetic", tmp_path,
                                 reporter, SIZE, recipe, batch=2, progress=False)
    assert first["report_images"] == reporter.images > 0
    assert first["searched"]["key"] == searched.key() and first["preset"]["name"] == "topformer-tiny"
    d = first["searched_minus_preset"]
    assert d["low"] <= d["diff"] <= d["high"] and d["images"] == reporter.images
    assert d["diff"] == pytest.approx(first["searched"]["miou"] - first["preset"]["miou"], abs=1e-6)
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("last.pt")}
    assert len(stamps) == 2
    again = finetune_and_compare(tiny_ckpt, searched, ARCH, "topformer-tiny", tiny_data, "synthetic", tmp_path,
                                 reporter, SIZE, recipe, batch=2, progress=False)
    assert again["searched"]["miou"] == first["searched"]["miou"]
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("last.pt")} == stamps  # finished runs reused
