"""Loaders for ADE20K / COCO-Stuff trees built in tmp_path, their pipelines and their one-line errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from supernet.data.datasets import (IGNORE_INDEX, LabelCodec, TrainTransform, build_dataset, collate_segmentation)
from etf.common import EtfError


def write_pair(root: Path, split: str, stem: str, label: np.ndarray, label_name: str | None = None) -> None:
    """One random RGB jpg plus its label png under root/images|annotations/split."""
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(stem)) % 1000)
    Image.fromarray(rng.integers(0, 255, (*label.shape, 3), dtype=np.uint8)).save(root / "images" / split / f"{stem}.jpg")
    Image.fromarray(label.astype(np.uint8), "L").save(root / "annotations" / split / (label_name or f"{stem}.png"))


def ade_label(h: int = 30, w: int = 40, top: int = 150) -> np.ndarray:
    """Label covering 0 (ignore) and 1..top in vertical bands."""
    return (np.arange(w)[None, :].repeat(h, 0) * top // (w - 1)).astype(np.uint8)


@pytest.fixture
def ade_root(tmp_path: Path) -> Path:
    root = tmp_path / "ADEChallengeData2016"
    for i in range(3):
        write_pair(root, "training", f"ADE_train_{i:08d}", ade_label())
        write_pair(root, "validation", f"ADE_val_{i:08d}", ade_label(24, 36))
    return root


def test_ade_val_maps_zero_to_ignore_and_shifts_classes(ade_root: Path) -> None:
    dataset = build_dataset("ade20k", ade_root, "val", size=16, train=False)
    item = dataset[0]
    raw = ade_label(24, 36)
    expected = np.where(raw == 0, IGNORE_INDEX, raw.astype(np.int64) - 1)
    assert dataset.num_classes == 150 and len(dataset) == 3
    assert torch.equal(item["label"], torch.from_numpy(expected))  # original size, reduce_zero_label
    assert item["image"].shape == (3, 16, 24)  # short side 16, aspect kept (24x36 -> 16x24)
    assert item["image"].dtype == torch.float32 and item["name"] == "ADE_val_00000000"


def test_ade_train_crop_pad_and_range(ade_root: Path) -> None:
    dataset = build_dataset("ade20k", ade_root, "train", size=32, train=True, seed=3)
    for index in range(len(dataset)):
        item = dataset[index]
        assert item["image"].shape == (3, 32, 32) and item["label"].shape == (32, 32)
        values = item["label"].unique()
        assert bool(((values >= 0) & (values < 150) | (values == IGNORE_INDEX)).all())
        assert torch.isfinite(item["image"]).all()


def test_train_pipeline_is_deterministic_per_seed_index_and_epoch(ade_root: Path) -> None:
    a = build_dataset("ade20k", ade_root, "training", size=24, train=True, seed=7)
    b = build_dataset("ade20k", ade_root, "training", size=24, train=True, seed=7)
    first = [a[i]["image"] for i in (0, 1, 2)]
    reverse = [b[i]["image"] for i in (2, 1, 0)][::-1]  # order of access does not matter
    assert all(torch.equal(x, y) for x, y in zip(first, reverse))
    a.set_epoch(1)
    assert not torch.equal(a[0]["image"], first[0])
    c = build_dataset("ade20k", ade_root, "training", size=24, train=True, seed=8)
    assert not torch.equal(c[0]["image"], first[0])


def test_flip_mirrors_image_and_label() -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 64, 3), dtype=np.uint8))
    label = np.repeat(np.arange(64, dtype=np.uint8)[None] // 8, 32, 0)
    flat = dict(ratio_range=(1.0, 1.0), photometric=False)
    plain_img, plain = TrainTransform(32, flip_prob=0.0, **flat)(image, label, np.random.default_rng(5))
    flip_img, flipped = TrainTransform(32, flip_prob=1.0, **flat)(image, label, np.random.default_rng(5))
    assert torch.equal(flipped, plain.flip(-1)) and torch.allclose(flip_img, plain_img.flip(-1))
    assert len(plain.unique()) > 1


def test_small_image_is_padded_with_ignore() -> None:
    image = Image.new("RGB", (10, 6), (120, 20, 200))
    label = np.ones((6, 10), np.uint8)
    out, target = TrainTransform(16, ratio_range=(0.5, 0.5), photometric=False)(image, label, np.random.default_rng(0))
    assert out.shape == (3, 16, 16)
    assert (target == IGNORE_INDEX).sum() > 0 and (target == 1).sum() > 0
    assert (out[:, target == IGNORE_INDEX] == 0).all()  # padded after normalisation, with zeros


def test_cat_max_ratio_prefers_crops_with_several_classes() -> None:
    label = np.zeros((32, 128), np.uint8)
    label[:, 80:] = 1  # crops of width 32 see both classes only when they straddle column 80

    def mixed(transform: TrainTransform) -> float:
        hits = 0
        for seed in range(60):
            top, left = transform._crop_origin(label, np.random.default_rng(seed))
            hits += len(np.unique(label[top:top + 32, left:left + 32])) > 1
        return hits / 60

    assert mixed(TrainTransform(32, cat_max_ratio=0.9)) > 0.9
    assert mixed(TrainTransform(32)) < 0.6


def test_photometric_jitter_changes_colours_but_not_labels(ade_root: Path) -> None:
    jitter = build_dataset("ade20k", ade_root, "train", size=24, train=True, seed=1)
    plain = build_dataset("ade20k", ade_root, "train", size=24, train=True, seed=1, photometric=False)
    changed = [not torch.allclose(jitter[i]["image"], plain[i]["image"]) for i in range(3)]
    assert any(changed)
    # photometric draws come after the geometric ones, so labels agree exactly
    assert all(torch.equal(jitter[i]["label"], plain[i]["label"]) for i in range(3))


def test_collate_stacks_train_batches_and_lists_val_batches(ade_root: Path) -> None:
    train = build_dataset("ade20k", ade_root, "train", size=16, train=True)
    batch = collate_segmentation([train[0], train[1]])
    assert batch["image"].shape == (2, 3, 16, 16) and batch["label"].shape == (2, 16, 16)
    val = build_dataset("ade20k", ade_root, "val", size=16, train=False)
    write_pair(ade_root, "validation", "ADE_val_99999999", ade_label(20, 20))
    val2 = build_dataset("ade20k", ade_root, "val", size=16, train=False)
    mixed = collate_segmentation([val2[0], val2[3]])
    assert isinstance(mixed["image"], list) and mixed["name"] == ["ADE_val_00000000", "ADE_val_99999999"]
    assert len(val) == 3


def test_cocostuff_label_train_ids(tmp_path: Path) -> None:
    root = tmp_path / "coco_stuff164k"
    label = np.full((20, 30), 255, np.uint8)
    label[:, :10], label[:, 10:20] = 0, 170
    write_pair(root, "val2017", "000000000139", label, "000000000139_labelTrainIds.png")
    dataset = build_dataset("cocostuff", root, "val", size=16, train=False)
    assert dataset.num_classes == 171
    assert torch.equal(dataset[0]["label"], torch.from_numpy(label.astype(np.int64)))


def test_cocostuff_raw_stuffthingmaps_are_mapped_to_171_ids(tmp_path: Path) -> None:
    root = tmp_path / "coco_stuff164k"
    raw = np.array([[0, 10, 11, 12, 90, 91, 181, 255]], np.uint8).repeat(4, 0)
    write_pair(root, "train2017", "000000000009", raw)
    label = build_dataset("cocostuff", root, "train2017", size=8, train=False)[0]["label"][0].tolist()
    # 11 and 90 are retired COCO thing ids -> ignored; 12 follows 10 as train id 11; 181 is the last (170)
    assert label == [0, 10, 255, 11, 255, 80, 170, 255]


def test_label_codec_rejects_values_outside_range(tmp_path: Path) -> None:
    codec = LabelCodec.with_ignore(171)
    with pytest.raises(EtfError, match=r"value 200 outside the class range 0..170 or 255"):
        codec.decode(np.array([[0, 200]], np.uint8), tmp_path / "x.png")


# ---------------------------------------------------------------- errors, one line each


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_missing_path_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(EtfError) as excinfo:
        build_dataset("ade20k", tmp_path / "nope", "train", 32, True)
    assert "does not exist" in one_line(excinfo) and "nope" in one_line(excinfo)


def test_missing_split_is_named(ade_root: Path, tmp_path: Path) -> None:
    import shutil

    shutil.rmtree(ade_root / "annotations" / "validation")
    with pytest.raises(EtfError) as excinfo:
        build_dataset("ade20k", ade_root, "val", 32, False)
    assert "annotations/validation" in one_line(excinfo)
    with pytest.raises(EtfError, match="unknown split 'test'"):
        build_dataset("ade20k", ade_root, "test", 32, False)
    with pytest.raises(EtfError, match="images/val2017"):
        build_dataset("cocostuff", ade_root, "val", 32, False)


def test_image_without_label_is_named(ade_root: Path) -> None:
    (ade_root / "annotations" / "training" / "ADE_train_00000001.png").unlink()
    with pytest.raises(EtfError) as excinfo:
        build_dataset("ade20k", ade_root, "train", 32, True)
    assert "ADE_train_00000001.jpg has no label file" in one_line(excinfo)


def test_label_out_of_range_is_lazy_and_found_by_validate(ade_root: Path) -> None:
    write_pair(ade_root, "training", "ADE_train_00000002", ade_label(top=151))  # 151 > 150 classes
    dataset = build_dataset("ade20k", ade_root, "train", 16, True)  # listing alone does not read labels
    dataset[0]
    with pytest.raises(EtfError) as excinfo:
        dataset[2]
    assert "ADE_train_00000002.png has value 151 outside the class range 0..150" in one_line(excinfo)
    with pytest.raises(EtfError, match="value 151"):
        dataset.validate()


def test_validate_counts_good_samples(ade_root: Path) -> None:
    assert build_dataset("ade20k", ade_root, "val", 16, False).validate() == 3


def test_unreadable_image_and_size_mismatch(ade_root: Path) -> None:
    (ade_root / "images" / "training" / "ADE_train_00000000.jpg").write_bytes(b"not a jpeg")
    dataset = build_dataset("ade20k", ade_root, "train", 16, True)
    with pytest.raises(EtfError, match="cannot read image .*ADE_train_00000000.jpg"):
        dataset[0]
    write_pair(ade_root, "training", "ADE_train_00000001", ade_label())
    Image.fromarray(ade_label(10, 10), "L").save(ade_root / "annotations" / "training" / "ADE_train_00000001.png")
    with pytest.raises(EtfError, match="10x10 but image"):
        dataset[1]


def test_unknown_dataset_and_not_synthetic(ade_root: Path) -> None:
    with pytest.raises(EtfError, match="unknown dataset 'voc'"):
        build_dataset("voc", ade_root, "train", 16, True)
    with pytest.raises(EtfError, match="is not a synthetic dataset"):
        build_dataset("synthetic", ade_root, "train", 16, True)
