"""Project-wide plumbing: the error type for bad user input, the CLI wrapper that turns it into one line and
exit 2, the stdout console every CLI prints its tables on, and atomic file writes.

Every command-line tool of the project wraps its ``main`` with :func:`cli_entry`, so a missing file,
an out-of-space config or an unreachable device never shows a traceback.

Output files that a crash must not tear (tables, checkpoints, logs, JSON state, plots, exported models) are
written with :func:`atomic_write`, :func:`atomic_write_json`, :func:`atomic_open` or :func:`atomic_path`, never
with a hand-written temp-then-rename block: the bytes go to a uniquely named
temporary file in the target's own folder, are flushed and fsync'ed, and the file is then renamed over the
target (``os.replace``, atomic within one file system) and the folder fsync'ed. A crash, a kill or an
exception while writing therefore leaves either the old file or the new one, never a torn mix, and no
temporary file behind (except after a hard kill, which leaves a hidden ``.NAME.PID.RANDOM.tmp``).
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Iterator, TypeVar

if TYPE_CHECKING:
    from rich.console import Console

F = TypeVar("F", bound=Callable[..., int | None])

#: Exit code for bad input (the same code argparse uses for usage errors).
EXIT_BAD_INPUT = 2
#: Exit code when the user interrupted a long job (results written so far are kept).
EXIT_INTERRUPTED = 130


class EtfError(Exception):
    """An error the user can fix: its message is printed as one line, without a traceback."""


def cli_entry(prog: str) -> Callable[[F], F]:
    """Decorate a CLI ``main`` so that :class:`EtfError` and friends become ``prog: error: msg``, and an
    argument-parsing exit (``--help``, a bad option) becomes ``main``'s return value instead of SystemExit.

    Set ``ETF_DEBUG=1`` to see the full traceback instead.
    """

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                code = fn(*args, **kwargs)
            except SystemExit as exc:  # argparse: --help (0) or a one-line usage error (2); main returns the code
                return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except EtfError as exc:
                if os.environ.get("ETF_DEBUG"):
                    raise
                print(f"{prog}: error: {exc}", file=sys.stderr)
                return EXIT_BAD_INPUT
            except BrokenPipeError:  # output piped into `head` and closed: not an error
                sys.stderr.close()
                return 0
            except KeyboardInterrupt:
                print(f"{prog}: interrupted; results written so far are kept, rerun to resume", file=sys.stderr)
                return EXIT_INTERRUPTED
            return 0 if code is None else code

        return inner  # type: ignore[return-value]

    return wrap


def out_console() -> "Console":
    """Stdout console; wide when piped so tables are not folded to 80 columns."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=160)


# ---------------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------------
def _temp_sibling(path: Path) -> Path:
    """A fresh hidden temporary name next to ``path``: same folder, so the final rename stays atomic; pid and
    random parts, so two processes (or two writers in one) writing the same target never share a file."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable; silently skipped where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _staged(path: str | os.PathLike[str], sync_file: bool) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; on a clean exit rename it over ``path``, on any exception
    (KeyboardInterrupt included) remove it and leave ``path`` alone."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(target)
    try:
        yield tmp
        if sync_file:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` for a writer that only takes a file name (a model converter,
    ``PIL.Image.save``); on a clean exit the file written there is fsync'ed and renamed over ``path``.

    The temporary name ends in ``.tmp``, so pass the format explicitly to writers that guess it from the
    extension. On an exception the temporary file is removed and ``path`` is left as it was. The parent
    folder is created if missing.
    """
    with _staged(path, sync_file=True) as tmp:
        yield tmp


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", *, encoding: str | None = None,
                newline: str | None = None) -> Iterator[IO[Any]]:
    """Open a file object whose content replaces ``path`` atomically when the ``with`` block ends cleanly.

    ``mode`` is ``"w"`` (text; ``encoding`` and ``newline`` as for :func:`open`) or ``"wb"`` (bytes: for
    ``torch.save``, ``pickle.dump``, ``savefig(fh, format="png")``). The data is flushed and fsync'ed before
    the rename. If the block raises, the temporary file is removed and ``path`` keeps its old content.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open mode must be 'w' or 'wb', not {mode!r}")
    with _staged(path, sync_file=False) as tmp:
        with open(tmp, "x" if mode == "w" else "xb", encoding=encoding, newline=newline) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write(path: str | os.PathLike[str], data: bytes | str, *, encoding: str | None = None) -> Path:
    """Replace ``path`` atomically with ``data`` (``str`` is written in text mode); return ``path``."""
    if isinstance(data, str):
        with atomic_open(path, "w", encoding=encoding) as fh:
            fh.write(data)
    else:
        with atomic_open(path, "wb") as fb:
            fb.write(data)
    return Path(path)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 1,
                      default: Callable[[Any], Any] | None = None, sort_keys: bool = False) -> Path:
    """Replace ``path`` atomically with ``obj`` as JSON plus a trailing newline; return ``path``.

    The object is serialised before anything is opened, so an unserialisable object leaves no trace.
    """
    text = json.dumps(obj, indent=indent, default=default, sort_keys=sort_keys) + "\n"
    return atomic_write(path, text)
