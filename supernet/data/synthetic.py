"""A synthetic segmentation set drawn from a seed and written in the ADE20K folder layout.

Scenes of 'stuff' regions (water, sand, grass, rock) with 'things' on top. Several classes are
told apart by one cue only, so a model needs texture, shape and context, not just colour:
boat and car look identical (a boat sits on water, a car on land); ball and box share colour and
texture and differ in shape; flag and kite differ only in stripe orientation; tree has grass's
colour but a coarse texture; sign has sand's colour and texture and differs by its outline.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from supernet.data.datasets import SYNTHETIC_META
from etf.common import EtfError

FORMAT = "etf-synthetic"
VERSION = 2
MIN_CLASSES, MAX_CLASSES = 4, 12
MIN_SIZE = 32


@dataclass(frozen=True)
class ClassRecipe:
    """How one class is drawn: colour (HSV), texture, and for things a shape and where it may stand."""

    name: str
    stuff: bool
    hsv: tuple[float, float, float]  # hue in degrees, saturation and value in 0..1
    texture: str  # "stripes", "fine", "blotch"
    frequency: float = 0.0  # stripes: cycles per pixel; blotch: cells per pixel
    angle: float = 0.0  # stripes: direction of variation in degrees (0 = vertical bands)
    amplitude: float = 0.25
    shape: str = ""  # things: "disc", "square", "triangle", "hull", "blob"
    context: str = ""  # things: "water" or "land" (centre placed there), "" = anywhere


# Stripe frequencies stay <= 0.16 cycles/pixel so that the training pipeline's 0.5x down-scaling
# keeps them below the Nyquist limit (finer stripes alias into other orientations).
RECIPES: tuple[ClassRecipe, ...] = (
    ClassRecipe("water", True, (210, 0.6, 0.6), "stripes", 0.05, 90, 0.25),
    ClassRecipe("sand", True, (45, 0.45, 0.8), "fine", amplitude=0.18),
    ClassRecipe("grass", True, (110, 0.6, 0.55), "stripes", 0.16, 0, 0.3),
    ClassRecipe("boat", False, (0, 0.75, 0.75), "stripes", 0.08, 45, 0.25, "hull", "water"),
    ClassRecipe("car", False, (0, 0.75, 0.75), "stripes", 0.08, 45, 0.25, "hull", "land"),
    ClassRecipe("ball", False, (30, 0.8, 0.85), "stripes", 0.1, 90, 0.25, "disc"),
    ClassRecipe("box", False, (30, 0.8, 0.85), "stripes", 0.1, 90, 0.25, "square"),
    ClassRecipe("flag", False, (280, 0.5, 0.7), "stripes", 0.12, 90, 0.3, "triangle"),
    ClassRecipe("kite", False, (280, 0.5, 0.7), "stripes", 0.12, 0, 0.3, "triangle"),
    ClassRecipe("tree", False, (110, 0.6, 0.55), "blotch", 0.12, amplitude=0.35, shape="blob"),
    ClassRecipe("rock", True, (0, 0.05, 0.5), "blotch", 0.06, amplitude=0.3),
    ClassRecipe("sign", False, (45, 0.45, 0.72), "fine", amplitude=0.18, shape="triangle"),
)

_PALETTE = np.array([
    (30, 90, 200), (230, 200, 120), (60, 170, 60), (220, 30, 30), (120, 30, 160), (255, 140, 0),
    (0, 200, 200), (255, 0, 255), (150, 150, 255), (0, 90, 0), (120, 120, 120), (255, 255, 0),
], np.uint8)


def class_names(num_classes: int) -> list[str]:
    """Names of the first ``num_classes`` synthetic classes, in train-id order."""
    return [recipe.name for recipe in RECIPES[:num_classes]]


def class_palette(num_classes: int = MAX_CLASSES) -> np.ndarray:
    """Display colours (uint8, num_classes x 3) for the synthetic classes, distinct even where the
    rendered classes share colour (boat/car, ball/box)."""
    if not 1 <= num_classes <= MAX_CLASSES:
        raise EtfError(f"the synthetic palette has {MAX_CLASSES} colours, not {num_classes}")
    return _PALETTE[:num_classes].copy()


# ----------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------


def _hsv_to_rgb(hue: float, sat: float, val: float) -> np.ndarray:
    """One HSV colour (hue in degrees) -> RGB floats in 0..1."""
    h = (hue % 360) / 60.0
    c = val * sat
    x = c * (1 - abs(h % 2 - 1))
    rgb = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h) % 6]
    return np.asarray(rgb) + (val - c)


def _texture(recipe: ClassRecipe, grid: tuple[np.ndarray, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Brightness modulation in about -1..1 over the whole image for one class instance."""
    yy, xx = grid
    size = xx.shape[0]
    if recipe.texture == "stripes":
        theta = np.deg2rad(recipe.angle + rng.uniform(-8, 8))
        freq = recipe.frequency * rng.uniform(0.85, 1.15)
        return np.sin(2 * np.pi * freq * (xx * np.cos(theta) + yy * np.sin(theta)) + rng.uniform(0, 2 * np.pi))
    if recipe.texture == "fine":
        return np.clip(rng.normal(0, 0.7, (size, size)), -2, 2)
    cells = max(2, int(round(size * recipe.frequency)))
    coarse = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, "F").resize((size, size), Image.BILINEAR))


def _colour(recipe: ClassRecipe, rng: np.random.Generator) -> np.ndarray:
    """The recipe's colour with a little per-instance jitter."""
    hue, sat, val = recipe.hsv
    return _hsv_to_rgb(hue + rng.uniform(-8, 8), np.clip(sat + rng.uniform(-0.08, 0.08), 0, 1),
                       np.clip(val + rng.uniform(-0.06, 0.06), 0, 1))


def _shape_mask(shape: str, centre: tuple[float, float], radius: float, grid: tuple[np.ndarray, np.ndarray],
                rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of one object outline."""
    yy, xx = grid
    cy, cx = centre
    angle = rng.uniform(0, 2 * np.pi) if shape in ("square", "triangle") else rng.uniform(-0.25, 0.25)
    u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    if shape == "disc":
        return u * u + v * v <= radius * radius
    if shape == "square":
        side = radius * 0.886  # same area as the disc of this radius
        return (np.abs(u) <= side) & (np.abs(v) <= side)
    if shape == "hull":
        return (u / radius) ** 2 + (v / (0.45 * radius)) ** 2 <= 1
    if shape == "triangle":
        r = radius * 1.2
        inside = np.ones_like(u, bool)
        for k in range(3):  # three half-planes of an equilateral triangle
            phi = 2 * np.pi * k / 3
            inside &= u * np.cos(phi) + v * np.sin(phi) <= r / 2
        return inside
    # blob: a disc whose radius wobbles with angle
    phase = rng.uniform(0, 2 * np.pi, 3)
    polar = np.arctan2(v, u)
    wobble = 1 + 0.18 * np.sin(3 * polar + phase[0]) + 0.1 * np.sin(5 * polar + phase[1])
    return np.hypot(u, v) <= radius * wobble


def _stuff_layout(stuff_ids: list[int], grid: tuple[np.ndarray, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Class id per pixel for 1-3 stuff regions split by tilted wavy boundaries."""
    yy, xx = grid
    size = xx.shape[0]
    regions = int(rng.choice([1, 2, 3], p=[0.15, 0.5, 0.35]))
    chosen = rng.choice(stuff_ids, size=regions, replace=len(stuff_ids) < regions)
    tilt = np.deg2rad(rng.uniform(-30, 30))
    coord = yy * np.cos(tilt) - xx * np.sin(tilt)
    coord = coord + size * 0.06 * np.sin(2 * np.pi * xx / size * rng.uniform(0.5, 2) + rng.uniform(0, 2 * np.pi))
    cuts = np.sort(rng.uniform(coord.min(), coord.max(), regions - 1))
    return np.asarray(chosen)[np.searchsorted(cuts, coord)]


def render_scene(size: int, num_classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw one scene: RGB uint8 HxWx3 and label uint8 HxW with 0 = unlabelled clutter, c+1 = class c."""
    recipes = RECIPES[:num_classes]
    grid = np.mgrid[0:size, 0:size].astype(np.float32)
    grid = (grid[0], grid[1])
    stuff_ids = [i for i, r in enumerate(recipes) if r.stuff]
    thing_ids = [i for i, r in enumerate(recipes) if not r.stuff]
    class_map = _stuff_layout(stuff_ids, grid, rng)
    image = np.zeros((size, size, 3), np.float32)
    for cid in np.unique(class_map):
        region = class_map == cid
        shade = _colour(recipes[cid], rng) * (1 + recipes[cid].amplitude * _texture(recipes[cid], grid, rng))[..., None]
        image[region] = shade[region]
    label = (class_map + 1).astype(np.uint8)
    water = RECIPES[0].name == "water" and 0 in stuff_ids
    for _ in range(int(rng.integers(2, 7))):
        cid = int(rng.choice(thing_ids))
        recipe = recipes[cid]
        allowed = np.ones_like(class_map, bool)
        if recipe.context == "water":
            allowed = class_map == 0 if water else np.zeros_like(allowed)
        elif recipe.context == "land":
            allowed = class_map != 0 if water else allowed
        ys, xs = np.nonzero(allowed)
        if len(ys) == 0:
            continue
        pick = int(rng.integers(len(ys)))
        radius = size * float(np.exp(rng.uniform(np.log(0.06), np.log(0.25))))
        mask = _shape_mask(recipe.shape, (float(ys[pick]), float(xs[pick])), radius, grid, rng)
        shade = _colour(recipe, rng) * (1 + recipe.amplitude * _texture(recipe, grid, rng))[..., None]
        image[mask] = shade[mask]
        label[mask] = cid + 1
    if rng.random() < 0.5:  # unlabelled clutter, the ADE20K 'other' (label 0, ignored)
        centre = (float(rng.uniform(0, size)), float(rng.uniform(0, size)))
        mask = _shape_mask("blob", centre, size * rng.uniform(0.04, 0.1), grid, rng)
        image[mask] = rng.uniform(0, 1, 3)
        label[mask] = 0
    image = image * rng.uniform(0.8, 1.2) + rng.normal(0, 0.04, image.shape)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), label


# ----------------------------------------------------------------------------------------------
# Writing the dataset
# ----------------------------------------------------------------------------------------------

SPLITS = (("training", "train"), ("validation", "val"))

README_TEXT = """\
THIS IS NOT ADE20K. It is a synthetic segmentation set generated by etf-make-synthetic
(Efficient-TopFormer), stored in the ADE20K folder layout so the same loader reads it.

Images: images/training/*.jpg, images/validation/*.jpg ({size}x{size} RGB, JPEG).
Labels: annotations/<split>/*.png, one byte per pixel: 0 = unlabelled clutter (ignored),
        1..{num_classes} = classes {names} (train ids 0..{last} after mmseg's reduce_zero_label).
Split sizes: {train} training, {val} validation images; seed {seed}; format version {version}.

What its numbers mean: mIoU on this set measures whether a model uses colour, texture, shape and
context (boat vs car differ only by surroundings, ball vs box only by shape, flag vs kite only by
stripe orientation, tree vs grass only by texture scale). It is a smoke test and a way to compare
models of different capacity quickly on a CPU; it says nothing about accuracy on real images and its
mIoU must never be reported as, or compared with, an ADE20K or COCO-Stuff number.
"""


def _params(train: int, val: int, size: int, classes: int, seed: int) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "train": train, "val": val, "size": size,
            "num_classes": classes, "seed": seed, "classes": class_names(classes)}


def _is_complete(out_dir: Path, params: dict[str, Any]) -> bool:
    """True when ``out_dir`` holds a finished synthetic set made with exactly these parameters."""
    meta_path = out_dir / SYNTHETIC_META
    if not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError:
        return False
    if any(meta.get(k) != v for k, v in params.items()):
        raise EtfError(f"{out_dir} already holds a synthetic set made with other settings "
                       f"({', '.join(f'{k}={meta.get(k)}' for k in ('train', 'val', 'size', 'num_classes', 'seed'))}); "
                       "choose another -o or delete it")
    for folder, key in SPLITS:
        if len(list((out_dir / "annotations" / folder).glob("*.png"))) != params[key]:
            return False
    return True


def make_synthetic(out_dir: str | Path, train: int = 400, val: int = 100, size: int = 128, classes: int = 10,
                   seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Write the synthetic set to ``out_dir`` (atomically: a temporary folder renamed at the end).

    Same arguments on an existing complete folder do nothing. Returns the metadata plus ``created``."""
    if not MIN_CLASSES <= classes <= MAX_CLASSES:
        raise EtfError(f"--classes must be between {MIN_CLASSES} and {MAX_CLASSES}, not {classes}")
    if size < MIN_SIZE:
        raise EtfError(f"--size must be at least {MIN_SIZE} pixels, not {size}")
    if train < 1 or val < 1:
        raise EtfError(f"--train and --val must be at least 1 (got {train} and {val})")
    out_dir = Path(out_dir)
    params = _params(train, val, size, classes, seed)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise EtfError(f"{out_dir} exists and is not a directory")
        if _is_complete(out_dir, params):
            return {**params, "path": str(out_dir), "created": False}
        if any(out_dir.iterdir()):
            raise EtfError(f"{out_dir} exists, is not empty and is not a complete synthetic set; choose another -o")
    if not out_dir.parent.is_dir():
        raise EtfError(f"parent folder {out_dir.parent} does not exist")
    tmp = out_dir.parent / f".{out_dir.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    jobs = [(folder, key, i) for split_no, (folder, key) in enumerate(SPLITS) for i in range(params[key])]
    for folder, _ in SPLITS:
        (tmp / "images" / folder).mkdir(parents=True)
        (tmp / "annotations" / folder).mkdir(parents=True)
    iterator: Any = jobs
    if progress:
        from etf.progress import progress_bar

        iterator = progress_bar(len(jobs), "drawing scenes", iterable=jobs, unit="img")
    for folder, key, index in iterator:
        rng = np.random.default_rng((seed, 0 if key == "train" else 1, index))
        image, label = render_scene(size, classes, rng)
        stem = f"synthetic_{key}_{index:06d}"
        Image.fromarray(image).save(tmp / "images" / folder / f"{stem}.jpg", quality=92)
        Image.fromarray(label, "L").save(tmp / "annotations" / folder / f"{stem}.png")
    (tmp / "README.txt").write_text(README_TEXT.format(**params, last=classes - 1, names=", ".join(params["classes"])))
    (tmp / SYNTHETIC_META).write_text(json.dumps(params, indent=1))
    if out_dir.exists():
        out_dir.rmdir()  # empty, checked above
    os.replace(tmp, out_dir)
    return {**params, "path": str(out_dir), "created": True}
