"""The search/report split of the validation set: disjoint, covering, stable across runs and processes,
independent of listing order; and the paired image bootstrap of mIoU differences on known cases."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from etf.common import EtfError
from supernet.evaluation.bootstrap import bootstrap_miou, bootstrap_miou_difference, miou_of_sums
from supernet.evaluation.metrics import mean_iou
from supernet.evaluation.split import split_ids
from tests.train_helpers import ROOT

IDS = [f"ADE_val_{i:08d}" for i in range(1, 201)]


def test_split_is_disjoint_covering_and_sized_by_the_fraction() -> None:
    s = split_ids(IDS, fraction=0.3, seed=0)
    assert set(s.search).isdisjoint(s.report)
    assert sorted(s.search + s.report) == list(range(len(IDS)))
    assert len(s.report) == 60 and list(s.report) == sorted(s.report) and list(s.search) == sorted(s.search)
    # a hash, not a prefix: both splits reach over the whole set
    assert min(s.report) < 20 and max(s.report) > 180
    rec = s.record()
    assert rec["search"]["images"] == 140 and rec["report"]["ids"] == s.split_ids("report")
    assert rec["search"]["ids_sha256"] != rec["report"]["ids_sha256"]


def test_split_depends_on_ids_and_seed_only() -> None:
    a = split_ids(IDS, 0.5, seed=0)
    shuffled = IDS[::-1]
    b = split_ids(shuffled, 0.5, seed=0)
    assert set(a.split_ids("report")) == set(b.split_ids("report"))  # listing order does not matter
    assert set(split_ids(IDS, 0.5, seed=1).split_ids("report")) != set(a.split_ids("report"))
    tiny = split_ids(["a", "b"], 0.9)
    assert len(tiny.report) == 1 and len(tiny.search) == 1  # never an empty split


def test_split_is_the_same_in_another_process() -> None:
    code = ("import json; from supernet.evaluation.split import split_ids; "
            f"print(json.dumps(split_ids({IDS!r}, 0.5, seed=3).record()))")
    env_runs = [subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                               env={"PYTHONPATH": str(ROOT), "PYTHONHASHSEED": str(h)}) for h in (1, 2)]
    here = split_ids(IDS, 0.5, seed=3).record()
    assert [json.loads(r.stdout) for r in env_runs] == [here, here]


@pytest.mark.parametrize("ids,fraction,needle", [(["a"], 0.5, "at least 2"), (["a", "b"], 0.0, "between 0 and 1"),
                                                 (["a", "b"], 1.0, "between 0 and 1"), (["a", "a"], 0.5, "unique")])
def test_split_bad_input_is_one_line(ids, fraction, needle) -> None:
    with pytest.raises(EtfError, match=needle):
        split_ids(ids, fraction)


# -- bootstrap ------------------------------------------------------------------------------------------------

def _perfect(n: int, c: int, pixels: int = 10) -> torch.Tensor:
    return torch.diag_embed(torch.full((n, c), pixels, dtype=torch.int64))


def _swapped(n: int, pixels: int = 10) -> torch.Tensor:
    """Two classes, every pixel predicted as the other class: IoU 0 for both."""
    return torch.tensor([[0, pixels], [pixels, 0]], dtype=torch.int64).expand(n, 2, 2).clone()


def test_miou_of_sums_matches_mean_iou_including_absent_classes() -> None:
    gen = torch.Generator().manual_seed(0)
    mats = torch.randint(0, 5, (6, 4, 4), generator=gen)
    mats[:, 3, :] = 0
    mats[:, :, 3] = 0  # class 3 never present: NaN, left out of the mean
    got = miou_of_sums(mats)
    assert torch.allclose(got, torch.tensor([mean_iou(m) for m in mats], dtype=torch.float64))


def test_identical_models_give_a_zero_difference_and_a_zero_interval() -> None:
    gen = torch.Generator().manual_seed(1)
    a = torch.randint(0, 20, (30, 3, 3), generator=gen)
    r = bootstrap_miou_difference(a, a.clone(), resamples=200, seed=0)
    assert (r.estimate, r.low, r.high) == (0.0, 0.0, 0.0) and not r.excludes_zero()


def test_a_perfect_model_against_an_always_wrong_one_differs_by_exactly_one() -> None:
    r = bootstrap_miou_difference(_perfect(12, 2), _swapped(12), resamples=100, seed=0)
    assert (r.estimate, r.low, r.high) == (1.0, 1.0, 1.0) and r.excludes_zero() and r.images == 12


def test_images_that_all_look_alike_give_a_degenerate_interval_at_the_estimate() -> None:
    # every image has the same confusion matrix: every resample has the same mIoU as the whole set
    one = torch.tensor([[8, 2], [1, 9]], dtype=torch.int64)
    r = bootstrap_miou(one.expand(20, 2, 2).clone(), resamples=100)
    assert r.low == pytest.approx(r.estimate, abs=1e-12) and r.high == pytest.approx(r.estimate, abs=1e-12)
    assert r.estimate == pytest.approx(mean_iou(one))


def test_a_difference_carried_by_one_image_is_not_significant_and_is_seeded() -> None:
    # models agree (both perfect) on 19 images; on one image a is right and b is wrong
    a, b = _perfect(20, 2), _perfect(20, 2)
    b[7] = _swapped(1)[0]
    r = bootstrap_miou_difference(a, b, resamples=1000, seed=5)
    assert r.estimate > 0 and r.low == 0.0 and r.high > r.estimate  # resamples without image 7 differ by 0
    assert not r.excludes_zero()
    assert bootstrap_miou_difference(a, b, resamples=1000, seed=5) == r
    assert bootstrap_miou_difference(a, b, resamples=1000, seed=6) != r
    assert bootstrap_miou_difference(b, a, resamples=1000, seed=5).estimate == -r.estimate


def test_a_consistent_one_point_gain_over_many_images_is_significant() -> None:
    gen = torch.Generator().manual_seed(2)
    n, c = 200, 3
    base = torch.randint(50, 100, (n, c), generator=gen)
    b = torch.diag_embed(base)
    b[:, 0, 1] = 10  # b mislabels 10 pixels of class 0 as class 1 on every image
    a = torch.diag_embed(base)
    a[:, 0, 1] = 8
    a[:, 0, 0] += 2  # a gets 2 of them right
    r = bootstrap_miou_difference(a, b, resamples=500)
    assert r.estimate > 0 and r.excludes_zero() and r.low <= r.estimate <= r.high


def test_bootstrap_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="same images"):
        bootstrap_miou_difference(_perfect(3, 2), _perfect(4, 2))
    with pytest.raises(ValueError, match="per-image"):
        bootstrap_miou(torch.zeros(2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_miou(_perfect(3, 2), resamples=0)
