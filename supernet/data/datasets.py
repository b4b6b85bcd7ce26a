"""Segmentation datasets read from disk: ADE20K, COCO-Stuff-164k and the project's synthetic scenes.

One folder-reading :class:`SegmentationFolder` plus the usual mmseg-style train and validation
pipelines (pure numpy/PIL/torch). Bad trees and bad labels raise one-line :class:`EtfError`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from etf.common import EtfError

#: Label value that losses and metrics skip.
IGNORE_INDEX = 255
#: ImageNet statistics on the 0-255 scale (mmseg's Normalize, RGB order).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
#: The base scale is (LONG_SIDE_FACTOR * size, size), as mmseg's (2048, 512) for crop 512.
LONG_SIDE_FACTOR = 4

DATASET_NAMES = ("ade20k", "cocostuff", "synthetic")
#: Name of the metadata file the synthetic generator writes at the dataset root.
SYNTHETIC_META = "synthetic.json"


def _coco_raw_to_train_ids() -> dict[int, int]:
    """Map COCO-Stuff ``stuffthingmaps`` ids (0-181, 11 unused thing ids) to the 171 train ids."""
    unused = {11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90}  # 0-based ids of COCO's 11 retired thing classes
    used = [i for i in range(182) if i not in unused]
    return {raw: train_id for train_id, raw in enumerate(used)}


@dataclass(frozen=True)
class LabelCodec:
    """How raw PNG label values become train ids: a 256-entry lookup table plus the set of legal values."""

    lut: np.ndarray  # uint8[256]: raw value -> train id or IGNORE_INDEX
    valid: np.ndarray  # bool[256]: raw values allowed in the files
    description: str  # for error messages, e.g. "0..150"

    @staticmethod
    def reduce_zero_label(num_classes: int) -> "LabelCodec":
        """ADE20K style: 0 is 'other' (ignored), 1..C become 0..C-1 (mmseg's reduce_zero_label)."""
        lut = np.full(256, IGNORE_INDEX, np.uint8)
        lut[1 : num_classes + 1] = np.arange(num_classes, dtype=np.uint8)
        valid = np.zeros(256, bool)
        valid[: num_classes + 1] = True
        return LabelCodec(lut, valid, f"0..{num_classes}")

    @staticmethod
    def with_ignore(num_classes: int) -> "LabelCodec":
        """COCO-Stuff labelTrainIds style: 0..C-1 are classes, 255 is ignored."""
        lut = np.full(256, IGNORE_INDEX, np.uint8)
        lut[:num_classes] = np.arange(num_classes, dtype=np.uint8)
        valid = np.zeros(256, bool)
        valid[:num_classes] = True
        valid[IGNORE_INDEX] = True
        return LabelCodec(lut, valid, f"0..{num_classes - 1} or {IGNORE_INDEX}")

    @staticmethod
    def coco_stuffthingmaps() -> "LabelCodec":
        """Raw COCO-Stuff ``stuffthingmaps`` (0..181, 255): mapped to 171 train ids; retired ids -> ignore."""
        lut = np.full(256, IGNORE_INDEX, np.uint8)
        for raw, train_id in _coco_raw_to_train_ids().items():
            lut[raw] = train_id
        valid = np.zeros(256, bool)
        valid[:182] = True
        valid[IGNORE_INDEX] = True
        return LabelCodec(lut, valid, f"0..181 or {IGNORE_INDEX}")

    def decode(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Map a raw label array to train ids; raise EtfError naming ``path`` on an illegal value."""
        if raw.ndim != 2:
            raise EtfError(f"label {path} is not a single-channel image (shape {raw.shape})")
        if raw.dtype == np.uint8:  # the usual case: a 256-bin histogram is faster than np.unique
            values = np.flatnonzero(np.bincount(raw.ravel(), minlength=256))
        else:
            values = np.unique(raw)
        bad = [int(v) for v in values if v < 0 or v > 255 or not self.valid[int(v)]]
        if bad:
            raise EtfError(f"label {path} has value {bad[0]} outside the class range {self.description}")
        return self.lut[raw.astype(np.uint8)]


@dataclass(frozen=True)
class FolderLayout:
    """Where one dataset keeps images and labels, and how split names map to folders."""

    name: str
    num_classes: int
    splits: dict[str, str]  # user split name -> folder name
    image_suffix: str = ".jpg"
    label_suffix: str = ".png"
    class_names: tuple[str, ...] | None = None


ADE20K_LAYOUT = FolderLayout("ade20k", 150, {"train": "training", "val": "validation"})
COCOSTUFF_LAYOUT = FolderLayout("cocostuff", 171, {"train": "train2017", "val": "val2017"})


def _split_folder(layout: FolderLayout, split: str) -> str:
    """Accept 'train'/'val' or the dataset's own folder name ('training', 'val2017', ...)."""
    if split in layout.splits:
        return layout.splits[split]
    if split in layout.splits.values():
        return split
    known = sorted(set(layout.splits) | set(layout.splits.values()))
    raise EtfError(f"unknown split {split!r} for {layout.name}; use one of {', '.join(known)}")


# ----------------------------------------------------------------------------------------------
# Pipelines
# ----------------------------------------------------------------------------------------------


def _rescale_size(width: int, height: int, long_target: float, short_target: float) -> tuple[int, int]:
    """Keep-aspect size that fits (long_target, short_target), as mmseg's ``rescale_size``."""
    factor = min(long_target / max(width, height), short_target / min(width, height))
    return max(1, int(width * factor + 0.5)), max(1, int(height * factor + 0.5))


def normalize(image: np.ndarray) -> torch.Tensor:
    """uint8/float HxWx3 RGB -> float32 3xHxW tensor normalised with ImageNet mean/std."""
    array = (image.astype(np.float32) - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def photometric_distortion(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """mmseg's PhotoMetricDistortion: brightness ±32, contrast and saturation 0.5-1.5, hue ±18°, each p=0.5."""
    out = image.astype(np.float32)
    if rng.random() < 0.5:
        out = out + rng.uniform(-32, 32)
    contrast_first = rng.random() < 0.5
    if contrast_first and rng.random() < 0.5:
        out = out * rng.uniform(0.5, 1.5)
    out = np.clip(out, 0, 255)
    saturate, hue = rng.random() < 0.5, rng.random() < 0.5
    sat_factor, hue_delta = rng.uniform(0.5, 1.5), rng.uniform(-18, 18)
    if saturate or hue:
        hsv = np.asarray(Image.fromarray(out.astype(np.uint8)).convert("HSV")).astype(np.float32)
        if saturate:
            hsv[..., 1] = np.clip(hsv[..., 1] * sat_factor, 0, 255)
        if hue:  # PIL hue is 0..255 for a full turn; OpenCV's 0..180 scale -> multiply by 256/180
            hsv[..., 0] = np.mod(hsv[..., 0] + hue_delta * 256.0 / 180.0, 256)
        out = np.asarray(Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")).astype(np.float32)
    if not contrast_first and rng.random() < 0.5:
        out = np.clip(out * rng.uniform(0.5, 1.5), 0, 255)
    return out


@dataclass(frozen=True)
class TrainTransform:
    """Random resize (ratio_range of the base scale), random crop to ``size`` (optional cat_max_ratio),
    horizontal flip, photometric jitter, ImageNet normalisation, pad to ``size`` with ignore labels."""

    size: int
    ratio_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float | None = None
    flip_prob: float = 0.5
    photometric: bool = True

    def __call__(self, image: Image.Image, label: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        ratio = rng.uniform(*self.ratio_range)
        new_w, new_h = _rescale_size(image.width, image.height, LONG_SIDE_FACTOR * self.size * ratio, self.size * ratio)
        image = image.resize((new_w, new_h), Image.BILINEAR)
        label = np.asarray(Image.fromarray(label).resize((new_w, new_h), Image.NEAREST))
        top, left = self._crop_origin(label, rng)
        crop_h, crop_w = min(self.size, new_h), min(self.size, new_w)
        pixels = np.asarray(image)[top : top + crop_h, left : left + crop_w]
        label = label[top : top + crop_h, left : left + crop_w]
        if rng.random() < self.flip_prob:
            pixels, label = pixels[:, ::-1], label[:, ::-1]
        pixels = photometric_distortion(pixels, rng) if self.photometric else pixels.astype(np.float32)
        out_image = torch.zeros(3, self.size, self.size)
        out_label = torch.full((self.size, self.size), IGNORE_INDEX, dtype=torch.long)
        out_image[:, :crop_h, :crop_w] = normalize(pixels)
        out_label[:crop_h, :crop_w] = torch.from_numpy(label.astype(np.int64))
        return out_image, out_label

    def _crop_origin(self, label: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
        """Pick a crop corner; with cat_max_ratio retry (10 times) until no class fills more than that share."""
        height, width = label.shape
        max_top, max_left = max(height - self.size, 0), max(width - self.size, 0)
        for _ in range(10 if self.cat_max_ratio is not None else 1):
            top, left = int(rng.integers(0, max_top + 1)), int(rng.integers(0, max_left + 1))
            if self.cat_max_ratio is None:
                break
            crop = label[top : top + self.size, left : left + self.size]
            counts = np.bincount(crop[crop != IGNORE_INDEX].ravel(), minlength=1)
            counts = counts[counts > 0]
            if len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio:
                break
        return top, left


@dataclass(frozen=True)
class ValTransform:
    """Resize the short side to ``size`` (long side capped at 4*size), keep aspect, normalise.

    The label stays at the original size, so logits are resized back to it before scoring."""

    size: int

    def __call__(self, image: Image.Image, label: np.ndarray, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        new_w, new_h = _rescale_size(image.width, image.height, LONG_SIDE_FACTOR * self.size, self.size)
        pixels = np.asarray(image.resize((new_w, new_h), Image.BILINEAR))
        return normalize(pixels), torch.from_numpy(label.astype(np.int64))


@dataclass(frozen=True)
class SquareTransform:
    """Resize the whole image to ``size`` x ``size`` (aspect not kept), normalise: what a deployed model with
    a fixed SxS input sees (``etf-eval --tflite``, int8 calibration). The label stays at the original size.

    On square images this equals :class:`ValTransform` at short side ``size``; on other images it squashes
    the picture, as an app feeding a fixed-size model does."""

    size: int

    def __call__(self, image: Image.Image, label: np.ndarray, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = np.asarray(image.resize((self.size, self.size), Image.BILINEAR))
        return normalize(pixels), torch.from_numpy(label.astype(np.int64))


# ----------------------------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------------------------


@dataclass
class SamplePaths:
    """One image file and its label file."""

    name: str
    image: Path
    label: Path


class SegmentationFolder(Dataset):
    """Image/label pairs from ``root/images/<split>`` and ``root/annotations/<split>``.

    Each item is a dict ``{"image": float 3xHxW, "label": long HxW, "name": str}``; randomness comes
    from ``numpy.random.default_rng((seed, epoch, index))`` so a sample is the same whatever the
    worker count or process, and :meth:`set_epoch` gives a new draw per epoch.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        layout: FolderLayout,
        codec: LabelCodec,
        transform: Callable[[Image.Image, np.ndarray, np.random.Generator], tuple[torch.Tensor, torch.Tensor]],
        seed: int = 0,
        label_name: Callable[[str], str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.layout = layout
        self.codec = codec
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0
        self.num_classes = layout.num_classes
        self.class_names = layout.class_names or tuple(f"class_{i}" for i in range(layout.num_classes))
        folder = _split_folder(layout, split)
        self.split = folder
        self.samples = _pair_files(self.root, folder, layout, label_name or (lambda stem: stem + layout.label_suffix))

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Change the random draw of the training pipeline (call once per epoch)."""
        self.epoch = int(epoch)

    def load(self, index: int) -> tuple[Image.Image, np.ndarray]:
        """Read one RGB image and its decoded train-id label (uint8, IGNORE_INDEX = ignore), unaugmented."""
        paths = self.samples[index]
        image = _open_image(paths.image).convert("RGB")
        label = self.read_label(index)
        if label.shape != (image.height, image.width):
            raise EtfError(f"label {paths.label} is {label.shape[1]}x{label.shape[0]} but image {paths.image} is {image.width}x{image.height}")
        return image, label

    def read_label(self, index: int) -> np.ndarray:
        """Decode one label file to train ids, raising EtfError on a value outside the class range."""
        path = self.samples[index].label
        return self.codec.decode(np.asarray(_open_image(path)), path)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, label = self.load(index)
        rng = np.random.default_rng((self.seed, self.epoch, index))
        tensor, target = self.transform(image, label, rng)
        return {"image": tensor, "label": target, "name": self.samples[index].name}

    def validate(self, progress: bool = False) -> int:
        """Scan every label file (and image header) for problems; return the number of samples checked."""
        indices: Sequence[int] = range(len(self))
        if progress:
            from tqdm import tqdm

            indices = tqdm(indices, desc=f"checking {self.layout.name}/{self.split}", unit="img")
        for index in indices:
            image = _open_image(self.samples[index].image)
            label = self.read_label(index)
            if label.shape != (image.height, image.width):
                raise EtfError(f"label {self.samples[index].label} does not match the size of image {self.samples[index].image}")
        return len(self)


def _open_image(path: Path) -> Image.Image:
    """Open an image file, turning unreadable files into one-line errors."""
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError:
        raise EtfError(f"file {path} disappeared while reading the dataset") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise EtfError(f"cannot read image {path}: {exc}") from None
    return image


def _pair_files(root: Path, folder: str, layout: FolderLayout, label_name: Callable[[str], str]) -> list[SamplePaths]:
    """List images of one split and pair each with its label file; every problem is one EtfError line."""
    if not root.exists():
        raise EtfError(f"dataset path {root} does not exist")
    if not root.is_dir():
        raise EtfError(f"dataset path {root} is not a directory")
    image_dir, label_dir = root / "images" / folder, root / "annotations" / folder
    for needed in (image_dir, label_dir):
        if not needed.is_dir():
            raise EtfError(f"{layout.name} dataset at {root} lacks the split folder {needed.relative_to(root)}/")
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() == layout.image_suffix)
    if not images:
        raise EtfError(f"no *{layout.image_suffix} images in {image_dir}")
    samples = []
    for image in images:
        label = label_dir / label_name(image.stem)
        if not label.is_file():
            raise EtfError(f"image {image} has no label file {label}")
        samples.append(SamplePaths(image.stem, image, label))
    return samples


# ----------------------------------------------------------------------------------------------
# Factory
# ----------------------------------------------------------------------------------------------


def read_synthetic_meta(root: str | Path) -> dict[str, Any]:
    """Read the synthetic dataset's metadata (class names, counts); EtfError if it is not one."""
    root = Path(root)
    if not root.exists():
        raise EtfError(f"dataset path {root} does not exist")
    meta_path = root / SYNTHETIC_META
    if not meta_path.is_file():
        raise EtfError(f"{root} is not a synthetic dataset (no {SYNTHETIC_META}); make one with etf-make-synthetic -o {root}")
    try:
        meta = json.loads(meta_path.read_text())
        int(meta["num_classes"]), list(meta["classes"])
    except (ValueError, KeyError, TypeError) as exc:
        raise EtfError(f"{meta_path} is unreadable or incomplete ({exc}); regenerate the dataset") from None
    return meta


def build_dataset(name: str, root: str | Path, split: str, size: int, train: bool, *,
                  seed: int = 0, cat_max_ratio: float | None = None, photometric: bool = True,
                  transform: Any = None) -> SegmentationFolder:
    """Make a dataset by name ('ade20k', 'cocostuff', 'synthetic') with the train or validation pipeline.

    ``size`` is the crop side for training and the short side for validation. ``transform`` (e.g. a
    :class:`SquareTransform`) replaces the pipeline ``train`` would pick."""
    if size < 8:
        raise EtfError(f"image size {size} is too small; use at least 8")
    if transform is None:
        transform = (TrainTransform(size, cat_max_ratio=cat_max_ratio, photometric=photometric) if train
                     else ValTransform(size))
    root = Path(root)
    if name == "ade20k":
        layout = ADE20K_LAYOUT
        return SegmentationFolder(root, split, layout, LabelCodec.reduce_zero_label(150), transform, seed)
    if name == "cocostuff":
        layout = COCOSTUFF_LAYOUT
        folder = _split_folder(layout, split)
        label_dir = root / "annotations" / folder
        train_ids = label_dir.is_dir() and next(label_dir.glob("*_labelTrainIds.png"), None) is not None
        if train_ids:  # converted by mmseg's coco_stuff164k.py: 0..170 and 255
            return SegmentationFolder(root, split, layout, LabelCodec.with_ignore(171), transform, seed,
                                      label_name=lambda stem: f"{stem}_labelTrainIds.png")
        return SegmentationFolder(root, split, layout, LabelCodec.coco_stuffthingmaps(), transform, seed)
    if name == "synthetic":
        meta = read_synthetic_meta(root)
        layout = FolderLayout("synthetic", int(meta["num_classes"]), dict(ADE20K_LAYOUT.splits),
                              class_names=tuple(meta["classes"]))
        return SegmentationFolder(root, split, layout, LabelCodec.reduce_zero_label(layout.num_classes), transform, seed)
    raise EtfError(f"unknown dataset {name!r}; use one of {', '.join(DATASET_NAMES)}")


def detect_dataset(root: str | Path) -> str | None:
    """Which dataset kind the folder ``root`` holds, from its layout (synthetic.json, ADE20K's or COCO-Stuff's
    split folders), or None when it cannot tell."""
    root = Path(root)
    if (root / SYNTHETIC_META).is_file():
        return "synthetic"
    for layout in (ADE20K_LAYOUT, COCOSTUFF_LAYOUT):
        if all((root / "images" / folder).is_dir() for folder in layout.splits.values()):
            return layout.name
    return None


def collate_segmentation(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack images and labels when their shapes agree (training); otherwise keep lists (validation)."""
    out: dict[str, Any] = {"name": [item["name"] for item in batch]}
    for key in ("image", "label"):
        tensors = [item[key] for item in batch]
        same = all(t.shape == tensors[0].shape for t in tensors)
        out[key] = torch.stack(tensors) if same else tensors
    return out
