"""The synthetic scene set: deterministic, atomic, idempotent, readable by the ADE20K-layout loader."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from supernet.data.datasets import IGNORE_INDEX, build_dataset
from etf.common import EtfError
from supernet.cli.make_synthetic import main
from supernet.data.synthetic import RECIPES, class_palette, make_synthetic, render_scene

SMALL = dict(train=6, val=3, size=48, classes=10, seed=0)


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_images(tmp_path: Path) -> None:
    make_synthetic(tmp_path / "a", **SMALL)
    make_synthetic(tmp_path / "b", **SMALL)
    make_synthetic(tmp_path / "c", **{**SMALL, "seed": 1})
    a, b, c = (tree_digest(tmp_path / n) for n in "abc")
    assert a == b
    assert a["images/training/synthetic_train_000000.jpg"] != c["images/training/synthetic_train_000000.jpg"]
    assert len([k for k in a if k.startswith("images/training/")]) == 6
    assert len([k for k in a if k.startswith("annotations/validation/")]) == 3


def test_rerun_is_a_no_op_and_other_settings_refuse(tmp_path: Path) -> None:
    out = tmp_path / "syn"
    assert make_synthetic(out, **SMALL)["created"] is True
    stamp = (out / "synthetic.json").stat().st_mtime_ns
    assert make_synthetic(out, **SMALL)["created"] is False
    assert (out / "synthetic.json").stat().st_mtime_ns == stamp
    with pytest.raises(EtfError, match="other settings"):
        make_synthetic(out, **{**SMALL, "train": 7})
    assert not list(tmp_path.glob(".*partial"))  # the temporary folder was renamed, not left behind


def test_incomplete_or_foreign_folder_is_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"x")
    with pytest.raises(EtfError, match="not empty"):
        make_synthetic(foreign, **SMALL)
    (tmp_path / "empty").mkdir()
    assert make_synthetic(tmp_path / "empty", **SMALL)["created"] is True  # an empty folder is fine


@pytest.mark.parametrize("bad, match", [({"classes": 3}, "--classes"), ({"classes": 13}, "--classes"),
                                        ({"size": 16}, "--size"), ({"val": 0}, "--val")])
def test_bad_arguments(tmp_path: Path, bad: dict, match: str) -> None:
    with pytest.raises(EtfError, match=match):
        make_synthetic(tmp_path / "x", **{**SMALL, **bad})


def test_loader_reads_it_with_names_and_valid_labels(tmp_path: Path) -> None:
    make_synthetic(tmp_path / "syn", **SMALL)
    train = build_dataset("synthetic", tmp_path / "syn", "train", size=32, train=True)
    val = build_dataset("synthetic", tmp_path / "syn", "val", size=48, train=False)
    assert (len(train), len(val), train.num_classes) == (6, 3, 10)
    assert train.class_names[:5] == ("water", "sand", "grass", "boat", "car")
    assert val.validate() == 3 and train.validate() == 6
    label = val[0]["label"]
    assert label.shape == (48, 48)
    assert bool((((label >= 0) & (label < 10)) | (label == IGNORE_INDEX)).all())
    assert "NOT ADE20K" in (tmp_path / "syn" / "README.txt").read_text()


def test_scenes_use_every_class_and_respect_context() -> None:
    seen: set[int] = set()
    for index in range(40):
        _, label = render_scene(64, 12, np.random.default_rng((0, 0, index)))
        classes = set(np.unique(label).tolist())
        seen |= classes
        if 4 in classes:  # boat (file value 4) is only placed on water (file value 1)
            assert 1 in classes
    assert seen == set(range(13))  # 0 = unlabelled clutter, 1..12 = the twelve classes


def test_look_alike_pairs_share_colour_and_texture() -> None:
    by_name = {r.name: r for r in RECIPES}
    for a, b, differs in [("boat", "car", "context"), ("ball", "box", "shape"), ("flag", "kite", "angle")]:
        ra, rb = by_name[a], by_name[b]
        assert ra.hsv == rb.hsv and ra.texture == rb.texture and ra.frequency == rb.frequency
        assert getattr(ra, differs) != getattr(rb, differs)
    assert by_name["tree"].hsv == by_name["grass"].hsv and by_name["tree"].texture != by_name["grass"].texture


def test_palette_is_distinct() -> None:
    palette = class_palette(12)
    assert palette.shape == (12, 3) and palette.dtype == np.uint8
    assert len({tuple(c) for c in palette}) == 12
    with pytest.raises(EtfError):
        class_palette(13)


def test_cli_writes_then_skips_and_reports_bad_input_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli"
    args = ["-o", str(out), "--train", "2", "--val", "1", "--size", "32", "--classes", "5", "--json"]
    assert main(args) == 0
    assert '"created": true' in capsys.readouterr().out
    assert main(args) == 0
    assert '"created": false' in capsys.readouterr().out
    with Image.open(out / "images" / "training" / "synthetic_train_000001.jpg") as image:
        assert image.size == (32, 32)
    assert main(["-o", str(tmp_path / "y"), "--classes", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("etf-make-synthetic: error: argument --classes") and "\n" not in err
