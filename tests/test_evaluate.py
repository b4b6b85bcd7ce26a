"""etf-eval and SubnetEvaluator: metrics from the confusion matrix at label size, caching, order
independence, agreement between the CLI and the fast path, PNGs, JSON, and one-line errors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from supernet.training.checkpoint import load_supernet
from supernet.cli.eval import main
from supernet.evaluation.evaluator import SubnetEvaluator, predict, resolve_arch, validation_batches
from supernet.evaluation.metrics import SegmentationMetrics
from supernet.presets import PRESETS
from supernet.space import TABLE1
from tests.train_helpers import SIZE


@pytest.fixture(scope="module")
def evaluator(tiny_ckpt: Path, tiny_data: Path) -> SubnetEvaluator:
    return SubnetEvaluator.from_checkpoint(tiny_ckpt, tiny_data, "synthetic", SIZE, n_calib=2, n_val=8, batch=4)


def test_from_checkpoint_builds_fixed_subsets(evaluator: SubnetEvaluator) -> None:
    assert len(evaluator.calib_batches) == 2 and evaluator.calib_batches[0].shape == (4, 3, SIZE, SIZE)
    assert sum(images.shape[0] for images, _ in evaluator.val_batches) == 8
    assert evaluator.num_classes == 5


def test_evaluate_is_cached_and_independent_of_call_order(evaluator: SubnetEvaluator) -> None:
    tiny, other = PRESETS["topformer-tiny"], TABLE1.min_config()
    first = evaluator.evaluate(tiny)
    assert 0.0 <= first <= 100.0
    assert tiny.key() in evaluator.cache
    evaluator.evaluate(other)
    assert evaluator.evaluate(tiny) == first  # from the cache
    evaluator.cache.clear()
    assert evaluator.evaluate(tiny) == pytest.approx(first, abs=1e-9)  # recomputed after another subnet
    assert len(evaluator.cache) == 1


def test_evaluate_equals_a_confusion_matrix_computed_by_hand(evaluator: SubnetEvaluator) -> None:
    cfg = PRESETS["topformer-small"]
    miou = evaluator.evaluate(cfg)
    # recompute: recalibrate, predict, count pixels per (truth, prediction) pair in plain Python loops
    from supernet.recalibration import recalibrate_bn

    net = evaluator.supernet
    net.set_active_subnet(cfg)
    recalibrate_bn(net, evaluator.calib_batches)
    matrix = torch.zeros(5, 5, dtype=torch.long)
    for images, labels in evaluator.val_batches:
        pred = predict(net, images, labels.shape[-2:])
        for t, p in zip(labels.reshape(-1).tolist(), pred.reshape(-1).tolist()):
            if t != 255:
                matrix[t, p] += 1
    evaluator.restore_bn()
    ious = [matrix[c, c].item() / (matrix[c].sum() + matrix[:, c].sum() - matrix[c, c]).item()
            for c in range(5) if (matrix[c].sum() + matrix[:, c].sum()) > 0]
    assert miou == pytest.approx(100 * sum(ious) / len(ious), abs=1e-9)


def test_recalibrated_subnet_is_the_model_that_was_scored(evaluator: SubnetEvaluator) -> None:
    from supernet.recalibration import elastic_bn_layers

    cfg = TABLE1.sample(11)
    stored = [m.running_mean.clone() for m in elastic_bn_layers(evaluator.supernet)]
    sub = evaluator.recalibrated_subnet(cfg)
    assert not sub.training
    assert all(torch.equal(a, m.running_mean) for a, m in zip(stored, elastic_bn_layers(evaluator.supernet)))
    meter = SegmentationMetrics(evaluator.num_classes)
    for images, labels in evaluator.val_batches:
        meter.update(predict(sub, images, labels.shape[-2:]), labels)
    assert 100 * meter.summary()["mIoU"] == pytest.approx(evaluator.evaluate(cfg), abs=1e-6)


def test_search_saves_the_recalibrated_subnet_as_export_weights(evaluator: SubnetEvaluator, tmp_path: Path) -> None:
    from search.pieces import subnet_weights

    cfg = TABLE1.sample(12)
    state = torch.load(subnet_weights(cfg, evaluator, tmp_path / "subnet.pt"), weights_only=True)
    assert state["num_classes"] == evaluator.num_classes
    want = evaluator.recalibrated_subnet(cfg).state_dict()
    assert state["model"].keys() == want.keys()
    assert all(torch.equal(state["model"][k], want[k]) for k in want)


def test_predict_resizes_logits_back_to_the_label_size(tiny_ckpt: Path, tiny_data: Path) -> None:
    net = load_supernet(tiny_ckpt)
    batches, ds = validation_batches(tiny_data, "synthetic", 16, limit=2, batch=2)  # image 16, label 32
    images, labels = batches[0]
    assert images.shape[-2:] == (16, 16) and labels.shape[-2:] == (SIZE, SIZE)
    pred = predict(net, images, labels.shape[-2:])
    assert pred.shape == labels.shape and pred.dtype == torch.long
    meter = SegmentationMetrics(5)
    meter.update(pred, labels)
    assert meter.matrix.sum() == (labels != 255).sum()


def test_cli_agrees_with_the_fast_path_and_writes_pngs_and_json(tiny_ckpt: Path, tiny_data: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    shots = tmp_path / "shots"
    argv = ["--ckpt", str(tiny_ckpt), "--arch", "topformer-tiny", "--data", str(tiny_data), "--calib-batches", "2",
            "--calib-batch", "4", "--show", "3", "-o", str(shots), "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 8 and result["dataset"] == "synthetic" and result["size"] == SIZE
    assert set(result["per_class"]) == {"water", "sand", "grass", "boat", "car"}
    assert 0.0 <= result["mIoU"] <= 1.0 and 0.0 <= result["aAcc"] <= 1.0
    assert sorted(p.name for p in shots.glob("*.png")) == [f"synthetic_val_00000{i}.png" for i in range(3)]
    fast = SubnetEvaluator.from_checkpoint(tiny_ckpt, tiny_data, "synthetic", SIZE, n_calib=2, n_val=8, batch=4)
    assert fast.evaluate(PRESETS["topformer-tiny"]) == pytest.approx(100 * result["mIoU"], abs=1e-6)
    assert main(argv[:6] + ["--calib-batches", "0", "--limit", "2"]) == 0  # the human-readable table
    text = capsys.readouterr().out
    assert "mIoU" in text and "water" in text


def test_resolve_arch_accepts_presets_extremes_and_files(tmp_path: Path) -> None:
    assert resolve_arch("max") == TABLE1.max_config() and resolve_arch("min") == TABLE1.min_config()
    assert resolve_arch("topformer-base") == PRESETS["topformer-base"]
    path = tmp_path / "a.json"
    path.write_text(TABLE1.sample(1).to_json())
    assert resolve_arch(str(path)) == TABLE1.sample(1)


def _one_line_error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("etf-eval: error: "), err
    return err


def test_cli_bad_input_gives_one_line_and_exit_2(tiny_ckpt: Path, tiny_data: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    ok = ["--ckpt", str(tiny_ckpt), "--arch", "min", "--data", str(tiny_data), "--calib-batches", "0"]
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 64)
    assert "cannot read checkpoint" in _one_line_error(capsys, ["--ckpt", str(bad), *ok[2:]])
    assert "does not exist" in _one_line_error(capsys, ["--ckpt", str(tmp_path / "none.pt"), *ok[2:]])
    assert "does not exist" in _one_line_error(capsys, [*ok[:4], "--data", str(tmp_path / "nodata"), *ok[6:]])
    no_val = tmp_path / "no_val"
    shutil.copytree(tiny_data, no_val)
    shutil.rmtree(no_val / "annotations" / "validation")
    assert "lacks the split folder" in _one_line_error(capsys, [*ok[:4], "--data", str(no_val), *ok[6:]])
    assert "unknown preset" in _one_line_error(capsys, [*ok[:2], "--arch", "topformer-huge", *ok[4:]])
    assert "--show needs -o" in _one_line_error(capsys, [*ok, "--show", "2"])
    ade = tmp_path / "ADE"
    shutil.copytree(tiny_data, ade)
    assert "classes" in _one_line_error(capsys, [*ok[:4], "--data", str(ade), "--dataset", "ade20k", *ok[6:]])
