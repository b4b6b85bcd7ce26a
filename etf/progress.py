"""Progress lines with an ETA for every long stage (training, profiling, search), on a terminal or in a log.

Why: a 13-minute training stage with no output looks hung. On a terminal :func:`progress_bar` is a plain tqdm
bar (elapsed<remaining ETA in its text); when stderr is a file or a pipe (CI logs, ``make demo > log``) tqdm
would either stay silent (``disable=None``) or write one endless ``\\r`` line, so the same bar is printed as
one ordinary line every :data:`LOG_INTERVAL_S` seconds instead::

    etf-train:  40%|████      | 240/600 [05:12<07:48,  1.30s/it, max=0.912]
"""
from __future__ import annotations

import sys
from typing import IO, Any

#: Seconds between progress lines when stderr is not a terminal.
LOG_INTERVAL_S = 30.0


class _Lines:
    """A file-like wrapper that turns tqdm's carriage-return refreshes into separate lines."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        line = text.replace("\r", "").strip("\n")
        if line.strip():
            self.stream.write(line.rstrip() + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(total: int | None, desc: str, enabled: bool = True, **kwargs: Any):
    """A tqdm bar over ``total`` steps on stderr: live on a terminal, a line every 30 s in a log; a no-op bar
    when ``enabled`` is False. Extra keyword arguments go to tqdm (``initial``, ``unit``, ``leave``...)."""
    from tqdm import tqdm

    stream = sys.stderr
    if not enabled:
        return tqdm(total=total, desc=desc, disable=True, **kwargs)
    if stream.isatty():
        return tqdm(total=total, desc=desc, file=stream, dynamic_ncols=True, **kwargs)
    kwargs.pop("dynamic_ncols", None)

    class LogBar(tqdm):
        """In a log a postfix change must not print a line (tqdm refreshes on every ``set_postfix``): the
        postfix rides along with the next timed line."""

        def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kw: Any) -> None:
            super().set_postfix(ordered_dict, refresh=False, **kw)

        def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
            super().set_postfix_str(s, refresh=False)

    return LogBar(total=total, desc=desc, file=_Lines(stream), mininterval=LOG_INTERVAL_S,
                  maxinterval=LOG_INTERVAL_S, ncols=100, ascii=True, **kwargs)


__all__ = ["progress_bar", "LOG_INTERVAL_S"]
