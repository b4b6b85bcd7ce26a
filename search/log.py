"""The search log: ``DIR/search_log.csv``, one row per accuracy evaluation, durable row by row.

Each row is appended, flushed and fsync'ed, so a killed search loses at most the row being written (a torn
last line is skipped on reading). A rerun reads the log back as an accuracy cache (``key -> accuracy``) and
replays the same deterministic search; rows already in the log (same run, same iteration) are not written again.
"""
from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from etf.common import EtfError, atomic_write
from supernet.space import ArchConfig

from search.objective import EvalRecord

COLUMNS = ("run", "iteration", "algo", "key", "config", "latency_ms", "gflops", "accuracy", "is_best", "eval_s",
           "cached", "timestamp")


@dataclass(frozen=True)
class LogRow:
    """One parsed row of the search log."""

    run: str
    iteration: int
    algo: str
    key: str
    cfg: ArchConfig
    latency_ms: float | None
    gflops: float | None
    accuracy: float
    is_best: bool
    eval_s: float
    cached: bool
    timestamp: float


def _opt_float(text: str) -> float | None:
    return float(text) if text not in ("", "nan", "None") else None


def read_log(path: str | Path) -> list[LogRow]:
    """All complete rows of a search log (an unreadable or torn row, e.g. from a kill mid-write, is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise EtfError(f"cannot read search log {path}: {exc}") from None
    lines = text.splitlines(keepends=True)
    if not lines:
        return []
    if tuple(next(csv.reader([lines[0]]))) != COLUMNS:
        raise EtfError(f"{path} is not a search log of this version (header differs); use another -o")
    rows: list[LogRow] = []
    for line in lines[1:]:
        if not line.endswith("\n"):
            continue  # torn last line
        try:
            r = next(csv.reader([line]))
            d = dict(zip(COLUMNS, r, strict=True))
            rows.append(LogRow(
                run=d["run"], iteration=int(d["iteration"]), algo=d["algo"], key=d["key"],
                cfg=ArchConfig.from_json(d["config"]), latency_ms=_opt_float(d["latency_ms"]),
                gflops=_opt_float(d["gflops"]), accuracy=float(d["accuracy"]), is_best=d["is_best"] == "1",
                eval_s=float(d["eval_s"]), cached=d["cached"] == "1", timestamp=float(d["timestamp"]),
            ))
        except (ValueError, StopIteration, EtfError):
            continue
    return rows


def accuracy_cache(rows: list[LogRow]) -> dict[str, float]:
    """``key -> accuracy`` over every logged evaluation (the resume cache)."""
    return {r.key: r.accuracy for r in rows}


class SearchLog:
    """Appends evaluation records to a CSV durably; ``writer(run, latency_of, gflops_of)`` gives the callback
    a search's ``on_evaluate`` takes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows = read_log(self.path)
        self._done = {(r.run, r.iteration) for r in self.rows}
        if not self.rows:  # new, empty, header only or a torn first row: start clean
            self._rewrite()

    def _rewrite(self) -> None:
        """Rewrite header + parsed rows atomically (drops a torn trailing line before appending after it)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(COLUMNS)
        for r in self.rows:
            w.writerow(self._cells(r))
        atomic_write(self.path, buf.getvalue())

    @staticmethod
    def _cells(r: LogRow) -> list[str]:
        fmt = lambda v: "" if v is None else repr(float(v))  # noqa: E731
        return [r.run, str(r.iteration), r.algo, r.key, r.cfg.to_json(indent=None), fmt(r.latency_ms),
                fmt(r.gflops), repr(float(r.accuracy)), "1" if r.is_best else "0", f"{r.eval_s:.4f}",
                "1" if r.cached else "0", f"{r.timestamp:.3f}"]

    def cache(self) -> dict[str, float]:
        return accuracy_cache(self.rows)

    def append(self, row: LogRow) -> None:
        """Append one row durably (flush + fsync), unless that run's iteration is already logged."""
        if (row.run, row.iteration) in self._done:
            return
        if self.path.exists():
            with open(self.path, "rb") as f:  # a torn last line from a kill: rewrite without it first
                f.seek(max(0, self.path.stat().st_size - 1))
                if f.read(1) not in (b"\n", b""):
                    self._rewrite()
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(self._cells(row))
        with open(self.path, "a") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        self.rows.append(row)
        self._done.add((row.run, row.iteration))

    def writer(self, run: str, latency_of: Callable[[ArchConfig], float | None] = lambda c: None,
               gflops_of: Callable[[ArchConfig], float | None] = lambda c: None) -> Callable[[EvalRecord], None]:
        """An ``on_evaluate`` callback that logs each record of run ``run`` with its predicted ms and GFLOPs."""

        def on_evaluate(rec: EvalRecord) -> None:
            self.append(LogRow(run, rec.iteration, rec.algo, rec.key, rec.cfg, latency_of(rec.cfg), gflops_of(rec.cfg),
                               rec.accuracy, rec.is_best, rec.seconds, rec.cached, rec.timestamp or time.time()))

        return on_evaluate


def run_id(algo: str, target: float, unit: str, seed: int, budget: int | None) -> str:
    """The name of one search run inside a log (rows of a rerun of the same run are not duplicated)."""
    return f"{algo}:{target:g}{unit}:seed{seed}:budget{budget if budget is not None else 'inf'}"


__all__ = ["COLUMNS", "LogRow", "read_log", "accuracy_cache", "SearchLog", "run_id"]
