"""A fixed, seeded partition of a validation set into a ``search`` split and a ``report`` split.

Selecting a winner and reporting its score on the same images is optimistic (the winner is, in part, the
config that got lucky on those images). The search scores configs on the ``search`` split only; winners and
the presets are re-scored on the ``report`` split, which the search never saw.

Assignment is by a stable hash of the image id (its file stem) and the seed: the ids are ranked by
``sha256(f"{seed}:{id}")`` and the lowest ``round(fraction * n)`` (at least 1, at most n - 1) form the report
split. Same ids, seed and fraction give the same split on any machine, in any process, in any listing order;
both splits are in the dataset's own order.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

from etf.common import EtfError

__all__ = ["SPLITS", "ValSplit", "split_ids", "ids_digest"]

SPLITS = ("search", "report")
DEFAULT_REPORT_FRACTION = 0.5


def _rank_key(seed: int, image_id: str) -> str:
    return hashlib.sha256(f"{seed}:{image_id}".encode()).hexdigest()


def ids_digest(ids: Sequence[str]) -> str:
    """sha256 of the ids joined by newlines (in the given order): a short record of exactly which images."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


@dataclass(frozen=True)
class ValSplit:
    """Which validation images (by index into the dataset and by id) belong to each split."""

    seed: int
    fraction: float  # share of the images in the report split
    search: tuple[int, ...]
    report: tuple[int, ...]
    ids: tuple[str, ...]  # every image id, in dataset order

    def indices(self, split: str) -> tuple[int, ...]:
        """The dataset indices of ``split`` (``search`` or ``report``), in dataset order."""
        if split not in SPLITS:
            raise EtfError(f"unknown validation split {split!r}; use one of {', '.join(SPLITS)}")
        return self.search if split == "search" else self.report

    def split_ids(self, split: str) -> list[str]:
        return [self.ids[i] for i in self.indices(split)]

    def record(self, with_ids: bool = True) -> dict[str, Any]:
        """What the search log/meta keeps: seed, fraction, counts, a digest of each split's ids (and the ids)."""
        out: dict[str, Any] = {"seed": self.seed, "report_fraction": self.fraction}
        for name in SPLITS:
            ids = self.split_ids(name)
            out[name] = {"images": len(ids), "ids_sha256": ids_digest(ids)}
            if with_ids:
                out[name]["ids"] = ids
        return out


def split_ids(ids: Sequence[str], fraction: float = DEFAULT_REPORT_FRACTION, seed: int = 0) -> ValSplit:
    """Partition images ``ids`` (dataset order) into search and report splits; see the module docstring."""
    ids = [str(i) for i in ids]
    if not 0.0 < fraction < 1.0:
        raise EtfError(f"the report fraction must be between 0 and 1 (exclusive), not {fraction:g}")
    if len(ids) < 2:
        raise EtfError(f"a search/report split needs at least 2 validation images, the set has {len(ids)}")
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise EtfError(f"validation image ids must be unique to split them; {dup!r} appears twice")
    n_report = min(len(ids) - 1, max(1, round(fraction * len(ids))))
    ranked = sorted(range(len(ids)), key=lambda i: _rank_key(seed, ids[i]))
    report = set(ranked[:n_report])
    return ValSplit(seed=seed, fraction=fraction, search=tuple(i for i in range(len(ids)) if i not in report),
                    report=tuple(sorted(report)), ids=tuple(ids))
