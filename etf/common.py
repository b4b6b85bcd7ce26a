"""One error type for bad user input, the CLI wrapper that turns it into one line and exit 2, and the stdout
console every CLI prints its tables on.

Every command-line tool of the project wraps its ``main`` with :func:`cli_entry`, so a missing file,
an out-of-space config or an unreachable device never shows a traceback.
"""
from __future__ import annotations

import functools
import os
import sys
from typing import TYPE_CHECKING, Callable, TypeVar

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
    """Decorate a CLI ``main`` so that :class:`EtfError` and friends become ``prog: error: msg``.

    Set ``ETF_DEBUG=1`` to see the full traceback instead.
    """

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                code = fn(*args, **kwargs)
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
