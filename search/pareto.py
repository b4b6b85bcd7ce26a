"""The Pareto plot of a search: accuracy vs predicted latency of every evaluated config, winner and presets marked."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from etf.common import atomic_open
from supernet.space import ArchConfig

from search.log import LogRow


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (latency, accuracy) points not dominated by a faster-and-at-least-as-accurate one, by latency."""
    front: list[tuple[float, float]] = []
    for lat, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or acc > front[-1][1]:
            front.append((lat, acc))
    return front


def plot_pareto(rows: list[LogRow], path: str | Path, *, target: float | None = None, best_key: str | None = None,
                presets: Mapping[str, ArchConfig] | None = None, unit: str = "ms", title: str = "") -> Path:
    """Write the plot to ``path`` (PNG, atomically). x = predicted latency (or GFLOPs when ``unit`` is GFLOPs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xval = (lambda r: r.latency_ms) if unit == "ms" else (lambda r: r.gflops)
    seen: dict[str, LogRow] = {}
    for r in rows:
        if xval(r) is not None:
            seen.setdefault(r.key, r)
    pts = list(seen.values())
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    by_algo: dict[str, list[LogRow]] = {}
    for r in pts:
        by_algo.setdefault(r.algo, []).append(r)
    for algo, rs in sorted(by_algo.items()):
        ax.scatter([xval(r) for r in rs], [r.accuracy for r in rs], s=14, alpha=0.6, label=f"{algo} ({len(rs)})")
    front = pareto_front([(xval(r), r.accuracy) for r in pts])
    if front:
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="grey", lw=1, label="Pareto front")
    for name, cfg in (presets or {}).items():
        r = seen.get(cfg.key())
        if r is not None:
            ax.scatter([xval(r)], [r.accuracy], marker="s", s=60, facecolors="none", edgecolors="black")
            ax.annotate(name, (xval(r), r.accuracy), textcoords="offset points", xytext=(5, -10), fontsize=8)
    if best_key and best_key in seen:
        r = seen[best_key]
        ax.scatter([xval(r)], [r.accuracy], marker="*", s=220, color="red", zorder=5, label="best")
    if target is not None:
        ax.axvline(target, color="red", ls="--", lw=1, label=f"target {target:g} {unit}")
    ax.set_xlabel("predicted latency (ms)" if unit == "ms" else "GFLOPs")
    ax.set_ylabel("supernet mIoU (%)")
    ax.set_title(title or "search: every evaluated config")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png")
    plt.close(fig)
    return path


__all__ = ["pareto_front", "plot_pareto"]
