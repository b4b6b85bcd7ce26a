"""Argument checking shared by every etf-* command: a parser whose errors are one line, and ``type=`` functions.

Why: a bad value must fail while the command line is parsed, before a model is loaded or a search runs,
with one line on stderr and exit code 2 (never a traceback, never after the work is done). Each function
here turns a string into a value or raises :class:`argparse.ArgumentTypeError`, which argparse reports as
``prog: error: argument --x: <message>``. Example::

    from etf.args import Parser, positive_int, output_dir
    p = Parser(prog="etf-x")
    p.add_argument("--iters", type=positive_int, default=100)
    p.add_argument("-o", "--out", type=output_dir, required=True)

Checks that need another layer (the deployable input sizes live in ``supernet.trace``) are wrapped with
:func:`rule`, which turns their :class:`~etf.common.EtfError` into an argparse error.
"""
from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path
from typing import Any, Callable, NoReturn

from etf.common import EXIT_BAD_INPUT, EtfError


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with full option names only (``allow_abbrev=False``) and one-line errors.

    Plain argparse prints the whole usage block before the error; a user (or a script reading stderr) gets
    the one line that says what is wrong, and ``--help`` for the rest. Sub-parsers inherit the class.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Print ``prog: error: message (see prog --help)`` on one line and exit with code 2."""
        line = " ".join(str(message).split())
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {line} (see {self.prog} --help)\n")


def _bad(message: str) -> NoReturn:
    raise argparse.ArgumentTypeError(message)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        _bad(f"expected an integer, got {text!r}")


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        _bad(f"expected a number, got {text!r}")
    if not math.isfinite(value):
        _bad(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (iterations, batch sizes, runs, workers)."""
    value = _int(text)
    if value < 1:
        _bad(f"must be at least 1, got {value}")
    return value


def nonneg_int(text: str) -> int:
    """An integer >= 0 (counts where 0 means 'none' or 'off')."""
    value = _int(text)
    if value < 0:
        _bad(f"must be 0 or more, got {value}")
    return value


def any_int(text: str) -> int:
    """Any integer (seeds); only the syntax is checked."""
    return _int(text)


def positive_float(text: str) -> float:
    """A finite number > 0 (targets, learning rates, minutes)."""
    value = _float(text)
    if value <= 0:
        _bad(f"must be greater than 0, got {text}")
    return value


def nonneg_float(text: str) -> float:
    """A finite number >= 0 (pauses, weight decay, clip; 0 = off)."""
    value = _float(text)
    if value < 0:
        _bad(f"must be 0 or more, got {text}")
    return value


def int_range(low: int, high: int) -> Callable[[str], int]:
    """A ``type=`` for an integer in ``[low, high]``."""

    def check(text: str) -> int:
        value = _int(text)
        if not low <= value <= high:
            _bad(f"must be between {low} and {high}, got {value}")
        return value

    check.__name__ = f"int_{low}_{high}"
    return check


def rule(check: Callable[[Any], Any], convert: Callable[[str], Any] = _int) -> Callable[[str], Any]:
    """A ``type=`` from a checker of another layer: ``convert(text)``, then ``check(value)`` (its result is
    dropped: the argument keeps the converted value); the checker's :class:`EtfError` (or ValueError) becomes
    an argparse error. E.g. ``type=rule(check_deploy_size)``, ``type=rule(load_config, str)``."""

    def parse(text: str) -> Any:
        value = convert(text)
        try:
            check(value)
        except (EtfError, ValueError) as exc:
            _bad(str(exc))
        return value

    parse.__name__ = getattr(check, "__name__", "value")
    return parse


def text(value: str) -> str:
    """The argument as given (for :func:`rule` checkers that take a string, like a config loader)."""
    return value


def existing_file(text: str) -> Path:
    """A path to a readable file (its content is checked by whatever reads it)."""
    if not text:
        _bad("expected a file path, got an empty string")
    path = Path(text).expanduser()
    if not path.exists():
        _bad(f"file {text} does not exist")
    if path.is_dir():
        _bad(f"{text} is a folder, expected a file")
    if not os.access(path, os.R_OK):
        _bad(f"cannot read {text} (permission denied)")
    return path


def existing_dir(text: str) -> Path:
    """A path to a readable folder."""
    if not text:
        _bad("expected a folder path, got an empty string")
    path = Path(text).expanduser()
    if not path.exists():
        _bad(f"folder {text} does not exist")
    if not path.is_dir():
        _bad(f"{text} is not a folder")
    if not os.access(path, os.R_OK | os.X_OK):
        _bad(f"cannot read folder {text} (permission denied)")
    return path


def _creatable(path: Path, text: str) -> None:
    """``path`` does not exist; its nearest existing ancestor must be a writable folder."""
    parent = path.parent
    while not parent.exists():
        if parent == parent.parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        _bad(f"cannot create {text}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        _bad(f"cannot create {text}: folder {parent} is not writable")


def output_dir(text: str) -> Path:
    """A folder to write into: an existing writable folder, or a path that can be created (not a file).
    Nothing is created here; the command creates it when it writes."""
    if not text:
        _bad("expected an output folder, got an empty string")
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            _bad(f"{text} is a file, expected a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            _bad(f"folder {text} is not writable")
        return path
    _creatable(path, text)
    return path


def output_file(text: str) -> Path:
    """A file to (over)write: not a folder, and its folder exists writable or can be created."""
    if not text:
        _bad("expected an output file, got an empty string")
    path = Path(text).expanduser()
    if path.is_dir():
        _bad(f"{text} is a folder, expected a file name")
    if path.exists():
        if not os.access(path.parent, os.W_OK | os.X_OK):
            _bad(f"cannot replace {text}: its folder is not writable")
        return path
    _creatable(path, text)
    return path


_DEVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def device_name(text: str) -> str:
    """The syntax of a benchmark device name (``local`` or a ``[devices.NAME]`` of the devices TOML); whether
    the device is configured is checked by ``android_bench.device_config.resolve_device``."""
    if not _DEVICE_NAME.match(text or ""):
        _bad(f"{text!r} is not a device name (letters, digits, '_', '.', '-'; e.g. local, pixel7)")
    return text


def device_names(text: str) -> list[str]:
    """A comma-separated list of distinct device names (``local,pixel7``)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        _bad(f"expected device name(s), got {text!r}")
    if len(set(names)) != len(names):
        _bad(f"device names must be distinct, got {text!r}")
    return [device_name(n) for n in names]


_TORCH_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def torch_device(text: str) -> str:
    """A PyTorch device for training/evaluation: ``auto`` (a GPU when present), ``cpu``, ``cuda``, ``cuda:N``
    or ``mps``; a GPU this torch build or machine does not have is refused here, not at the first tensor."""
    if not _TORCH_DEVICE.match(text):
        _bad(f"unknown device {text!r}; use auto, cpu, cuda, cuda:N or mps")
    if text in ("auto", "cpu"):
        return text
    import torch  # the commands that take a torch device import it anyway

    if text == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            _bad("device mps is not available on this machine; use cpu")
        return text
    if not torch.cuda.is_available():
        why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        _bad(f"device {text} is not available ({why}); use cpu or auto")
    index = int(text.split(":")[1]) if ":" in text else 0
    if index >= torch.cuda.device_count():
        _bad(f"device {text} does not exist: {torch.cuda.device_count()} CUDA device(s)")
    return text


def unit_interval(text: str) -> float:
    """A number in [0, 1] (a loss weight, a fraction)."""
    value = _float(text)
    if not 0.0 <= value <= 1.0:
        _bad(f"must be between 0 and 1, got {text}")
    return value


#: Training crop sides (etf-train, etf-finetune): the synthetic generator's smallest image up to a side no GPU
#: batch fits.
crop_side = int_range(32, 4096)


def given_options(argv: list[str]) -> set[str]:
    """Names of the options the user typed, as ``dest`` names (``--no-progress`` also counts as ``progress``),
    so ``--resume`` can tell a user's choice from a default."""
    given = {tok[2:].split("=", 1)[0].replace("-", "_") for tok in argv if tok.startswith("--")}
    if "-o" in argv:
        given.add("out")
    if "no_progress" in given:
        given.add("progress")
    return given


__all__ = ["unit_interval", "crop_side", "given_options", 
    "Parser", "text", "positive_int", "nonneg_int", "any_int", "positive_float", "nonneg_float", "int_range", "rule",
    "existing_file", "existing_dir", "output_dir", "output_file", "device_name", "device_names", "torch_device",
]


def add_verbose(parser: argparse.ArgumentParser) -> None:
    """``--verbose`` for a command that converts or runs models: show the converter's and runtime's own output
    (C++ logs included) instead of capturing it (:mod:`etf.quiet`); the command calls ``set_verbose``."""
    parser.add_argument("--verbose", action="store_true",
                        help="show the converter's and runtime's own output (C++ logs included); by default it is "
                             "captured and shown only when a step fails")
