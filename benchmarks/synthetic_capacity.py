"""Is the synthetic task learnable, and does capacity matter? Train three plain conv nets on CPU and print mIoU.

A local 3-layer net (7 px receptive field) can use colour and fine texture only; a small and a larger
encoder-decoder see shape and surroundings. Same data pipeline, iterations, optimiser and seed for all.
Example: PYTHONPATH=. python benchmarks/synthetic_capacity.py --data /tmp/etf-synthetic --iters 300
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from supernet.data.datasets import build_dataset, collate_segmentation
from supernet.evaluation.metrics import SegmentationMetrics
from supernet.data.synthetic import make_synthetic


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class LocalNet(nn.Module):
    """Three 3x3 convs at full resolution: a 7-pixel receptive field, no context."""

    def __init__(self, classes: int, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(3, width), conv_bn(width, width), nn.Conv2d(width, classes, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class EncoderDecoder(nn.Module):
    """Stride-2 stages down to 1/2**depth, then a fused multi-scale head (a tiny FPN-like decoder)."""

    def __init__(self, classes: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        stages, cin = [], 3
        for w in widths:
            stages.append(nn.Sequential(conv_bn(cin, w, 2), conv_bn(w, w)))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.lateral = nn.ModuleList(nn.Conv2d(w, widths[0], 1) for w in widths)
        self.head = nn.Sequential(conv_bn(widths[0], widths[0]), nn.Conv2d(widths[0], classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        size = feats[0].shape[-2:]
        fused = sum(F.interpolate(lat(f), size=size, mode="bilinear", align_corners=False)
                    for lat, f in zip(self.lateral, feats))
        return self.head(fused)


MODELS = {
    "local-3conv-w8": lambda classes: LocalNet(classes, 8),
    "encdec-1/8-w16": lambda classes: EncoderDecoder(classes, (16, 16, 24)),
    "encdec-1/32-w24": lambda classes: EncoderDecoder(classes, (24, 32, 48, 64, 96)),
}


def evaluate(model: nn.Module, dataset, classes: int) -> SegmentationMetrics:
    """Whole-image inference at the validation scale, logits resized back to the original label size."""
    metrics = SegmentationMetrics(classes, class_names=dataset.class_names)
    model.eval()
    with torch.no_grad():
        for i in range(len(dataset)):
            item = dataset[i]
            logits = model(item["image"][None])
            logits = F.interpolate(logits, size=item["label"].shape, mode="bilinear", align_corners=False)
            metrics.update(logits, item["label"][None])
    return metrics


def train(model: nn.Module, dataset, iters: int, batch: int, lr: float, seed: int) -> float:
    torch.manual_seed(seed)
    loader_gen = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda it: (1 - it / iters) ** 0.9)
    model.train()
    start, it, epoch = time.perf_counter(), 0, 0
    while it < iters:
        dataset.set_epoch(epoch)
        loader = DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True, generator=loader_gen,
                            collate_fn=collate_segmentation)
        for sample in loader:
            logits = model(sample["image"])
            logits = F.interpolate(logits, size=sample["label"].shape[-2:], mode="bilinear", align_corners=False)
            loss = F.cross_entropy(logits, sample["label"], ignore_index=255)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            it += 1
            if it >= iters:
                break
        epoch += 1
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/etf-synthetic"),
                        help="synthetic set (made here with --train/--val images if missing)")
    parser.add_argument("--train-images", type=int, default=400)
    parser.add_argument("--val-images", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=128, help="side of the generated images")
    parser.add_argument("--size", type=int, default=64, help="training crop / validation short side")
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    t0 = time.perf_counter()
    make_synthetic(args.data, args.train_images, args.val_images, args.image_size, 10, args.seed)
    gen_s = time.perf_counter() - t0
    train_set = build_dataset("synthetic", args.data, "train", args.size, train=True, seed=args.seed)
    val_set = build_dataset("synthetic", args.data, "val", args.size, train=False)
    classes = train_set.num_classes
    rows = []
    # chance reference: always predict the most frequent training class
    counts = torch.zeros(classes, dtype=torch.long)
    for i in range(len(train_set)):
        label = torch.from_numpy(train_set.read_label(i).astype("int64"))
        counts += torch.bincount(label[label != 255], minlength=classes)
    majority = SegmentationMetrics(classes)
    for i in range(len(val_set)):
        label = val_set[i]["label"]
        majority.update(torch.full_like(label, int(counts.argmax())), label)
    rows.append({"model": "majority-class", "params": 0, "train_s": 0.0, "mIoU": majority.mean_iou(),
                 "aAcc": majority.pixel_accuracy(), "per_class": {}})
    names = train_set.class_names
    if not args.json:
        print(f"synthetic set {args.data}: {args.train_images} train / {args.val_images} val, {args.image_size}px, "
              f"{classes} classes (generated or checked in {gen_s:.1f} s); crop {args.size}, "
              f"{args.iters} iters x batch {args.batch}, torch threads {torch.get_num_threads()}")
        print(f"{'model':<17}{'params':>8}{'train s':>9}{'mIoU':>7}{'aAcc':>7}  " + " ".join(f"{n[:5]:>5}" for n in names))
        print_row(rows[-1], names)
    for name, factory in MODELS.items():
        torch.manual_seed(args.seed)
        model = factory(classes)
        seconds = train(model, train_set, args.iters, args.batch, args.lr, args.seed)
        metrics = evaluate(model, val_set, classes)
        ious = metrics.iou_per_class().tolist()
        rows.append({"model": name, "params": sum(p.numel() for p in model.parameters()), "train_s": seconds,
                     "mIoU": metrics.mean_iou(), "aAcc": metrics.pixel_accuracy(),
                     "per_class": dict(zip(names, ious))})
        if not args.json:
            print_row(rows[-1], names)
    if args.json:
        print(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "generate_s": gen_s, "rows": rows}))


def print_row(row: dict, names: tuple[str, ...]) -> None:
    """One table line: model, size, time, mIoU, pixel accuracy and per-class IoU in percent."""
    per = " ".join(f"{100 * row['per_class'][n]:5.1f}" if n in row["per_class"] else "    -" for n in names)
    print(f"{row['model']:<17}{row['params']:>8}{row['train_s']:>9.1f}{100 * row['mIoU']:>7.1f}"
          f"{100 * row['aAcc']:>7.1f}  {per}", flush=True)


if __name__ == "__main__":
    main()
