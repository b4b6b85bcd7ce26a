"""The setting a latency was measured in: device, input size, threads, precision, output head.

A latency is a number only within its setting: the same network takes another time with 2 threads, in fp16, or
with the full-resolution ``logits`` head (at 512 px most of TopFormer-Tiny's time is that final resize). So a
:class:`Setting` names every latency table and every predictor (``tables/<stem>.csv``, ``.e2e.csv``,
``.meta.json``, ``.predictor.json``), is written into their rows and files, and a predictor fitted in one setting
refuses to predict another with one line naming the first field that differs.

Tables written before settings existed (``tables/<device>_<size>.csv``, no precision/head columns) were measured
with the full-resolution head in fp32 at the threads their rows record: they are read as exactly that setting
(one line on stderr says so) and for any other setting they are not used (the message says to re-profile or to
ask for ``--head logits``). Reading beats refusing here: those tables are correct measurements of that setting
and took tens of minutes to profile; using them for another head would be wrong, so that is refused.
"""
from __future__ import annotations

import argparse
import inspect
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from etf.common import EtfError
from supernet.heads import DEFAULT_HEAD, HEADS, LEGACY_HEAD

#: Every precision a setting can name; which ones convert today: :func:`available_precisions`.
PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_PRECISION = "fp32"
#: The precision of tables written before settings existed (float32 conversion was the only one).
LEGACY_PRECISION = "fp32"


def file_safe(text: str) -> str:
    """``text`` with every run of characters other than letters, digits, ``_ . -`` replaced by ``-``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)


@dataclass(frozen=True)
class Setting:
    """Device, input size, threads, precision and output head of a latency (see module doc)."""

    device: str
    size: int
    threads: int
    precision: str = DEFAULT_PRECISION
    head: str = DEFAULT_HEAD

    def __post_init__(self) -> None:
        if not isinstance(self.device, str) or not self.device:
            raise EtfError(f"a setting needs a device name, got {self.device!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise EtfError(f"input size must be a positive integer, got {self.size!r}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise EtfError(f"threads must be a positive integer, got {self.threads!r}")
        if self.precision not in PRECISIONS:
            raise EtfError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.head not in HEADS:
            raise EtfError(f"unknown head {self.head!r}; choose one of {', '.join(HEADS)}")

    @property
    def stem(self) -> str:
        """File-name stem of this setting's table files: ``<device>_<size>_t<threads>_<precision>_<head>``."""
        return f"{file_safe(self.device)}_{self.size}_t{self.threads}_{self.precision}_{self.head}"

    def describe(self) -> str:
        """One readable line: ``local, 512 px, 1 thread, fp32, head logits8``."""
        return (f"{self.device}, {self.size} px, {self.threads} thread{'s' if self.threads != 1 else ''}, "
                f"{self.precision}, head {self.head}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Setting":
        """The setting recorded as :meth:`to_dict`; anything else is a one-line EtfError."""
        if not isinstance(data, dict) or any(f.name not in data for f in fields(cls)):
            raise EtfError(f"not a recorded setting: {data!r}")
        return cls(str(data["device"]), int(data["size"]), int(data["threads"]), str(data["precision"]),
                   str(data["head"]))

    def difference(self, other: "Setting") -> str | None:
        """The first field where ``self`` (what a file was made for) differs from ``other`` (what is asked), as
        ``"head logits, not logits8"``; None when they are the same setting."""
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if mine != theirs:
                label = {"size": "input size", "threads": "threads"}.get(f.name, f.name)
                return f"{label} {mine}, not {theirs}"
        return None

    def check(self, asked: "Setting", source: str) -> None:
        """Raise a one-line EtfError when ``asked`` is not this setting: ``<source> was fitted for head logits,
        not logits8``."""
        diff = self.difference(asked)
        if diff is not None:
            raise EtfError(f"{source} was fitted for {diff} ({self.describe()})")


def available_precisions() -> tuple[str, ...]:
    """Precisions the profiler can convert operators to: every one that
    ``latency.export_op.export_operator`` takes (fp32, fp16 weights, int8 through ai-edge-quantizer)."""
    from latency.export_op import export_operator

    if "precision" in inspect.signature(export_operator).parameters:
        return PRECISIONS
    return (DEFAULT_PRECISION,)


def check_precision(precision: str) -> str:
    """``precision`` if this checkout can convert to it, else a one-line EtfError saying it is not available."""
    if precision not in PRECISIONS:
        raise EtfError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision not in available_precisions():
        raise EtfError(f"precision {precision} is not available yet: this checkout converts to "
                       f"{', '.join(available_precisions())} only")
    return precision


def device_threads(device: str, threads: int | None) -> int:
    """``threads``, or the device's own default (``threads`` in its devices.toml entry; 1 for ``local``)."""
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise EtfError(f"--threads must be a positive integer, got {threads!r}")
        return threads
    from android_bench.device_config import resolve_device

    return int(getattr(resolve_device(device), "default_threads", 1))


def make_setting(device: str, size: int, threads: int | None = None, precision: str = DEFAULT_PRECISION,
                 head: str = DEFAULT_HEAD) -> Setting:
    """The setting of a command's flags: threads resolved from the device when not given, precision checked
    against what this checkout converts."""
    check_precision(precision)
    return Setting(device, size, device_threads(device, threads), precision, head)


__all__ = ["Setting", "PRECISIONS", "DEFAULT_PRECISION", "LEGACY_PRECISION", "LEGACY_HEAD", "HEADS", "DEFAULT_HEAD",
           "file_safe", "available_precisions", "check_precision", "device_threads", "make_setting"]


def add_setting_arguments(parser: argparse.ArgumentParser,
                          threads_help: str = "inference threads (default: the device's setting)") -> None:
    """``--head``, ``--threads`` and ``--precision``: the parts of a :class:`Setting` besides device and size, the
    same options for every command that predicts or measures (``threads_help`` says where its default comes from)."""
    from etf.args import positive_int

    parser.add_argument("--head", choices=HEADS, default=DEFAULT_HEAD,
                        help="output head of the deployed model: logits8 (logits at 1/8), labels (argmax + nearest "
                             "upsample, int32), logits (full-resolution logits) (default logits8)")
    parser.add_argument("--threads", type=positive_int, default=None, help=threads_help)
    parser.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION,
                        help="model precision (default fp32)")
