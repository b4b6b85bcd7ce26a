"""etf.quiet.captured keeps native (fd-level) and Python output off the terminal, shows its tail on failure and
everything with --verbose; etf.progress prints plain lines with an ETA when stderr is not a terminal."""
from __future__ import annotations

import os
import sys

import pytest

from etf import quiet
from etf.progress import _Lines


def _native(text: str) -> None:
    """Write like C++ code does: straight to fds 1 and 2, bypassing sys.stdout."""
    os.write(1, f"{text} on fd 1\n".encode())
    os.write(2, f"{text} on fd 2\n".encode())


def test_success_drops_native_and_python_output(capfd, monkeypatch):
    monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
    with quiet.captured("conversion"):
        _native("I0000 flatbuffer_export.cc")
        print("python chatter")
        print("python warning", file=sys.stderr)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    print("after")  # the real streams are back
    assert capfd.readouterr().out == "after\n"


def test_failure_shows_the_tail_and_reraises(capfd, monkeypatch):
    monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
    with pytest.raises(RuntimeError, match="boom"):
        with quiet.captured("conversion"):
            _native("the converter's last words")
            raise RuntimeError("boom")
    out, err = capfd.readouterr()
    assert out == ""
    assert "conversion output" in err and "the converter's last words on fd 2" in err


def test_failure_without_tail_prints_nothing(capfd, monkeypatch):
    monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
    with pytest.raises(ValueError):
        with quiet.captured("interpreter", tail=False):
            _native("xnnpack")
            raise ValueError("bad model")
    assert capfd.readouterr() == ("", "")


def test_verbose_shows_everything(capfd, monkeypatch):
    quiet.set_verbose(True)
    try:
        with quiet.captured("conversion"):
            _native("visible")
    finally:
        quiet.set_verbose(False)
    out, err = capfd.readouterr()
    assert "visible on fd 1" in out and "visible on fd 2" in err


def test_progress_lines_in_a_log_are_separate_lines():
    class Sink:
        text = ""

        def write(self, s):
            self.text += s

        def flush(self):
            pass

    sink = Sink()
    lines = _Lines(sink)
    lines.write("\retf-train:  10%|#  | 1/10 [00:01<00:09,  1.00it/s]")
    lines.write("\retf-train:  20%|## | 2/10 [00:02<00:08,  1.00it/s]")
    lines.write("\n")
    assert sink.text.splitlines() == ["etf-train:  10%|#  | 1/10 [00:01<00:09,  1.00it/s]",
                                      "etf-train:  20%|## | 2/10 [00:02<00:08,  1.00it/s]"]


def test_progress_in_a_log_is_a_line_per_interval_not_per_postfix(monkeypatch) -> None:
    """In a log file (stderr not a terminal) a bar whose postfix changes every step (training's losses) prints
    its first and last line, not one line per step (600 lines for a demo's training before this)."""
    import io

    from etf.progress import progress_bar

    log = io.StringIO()
    monkeypatch.setattr("sys.stderr", log)
    bar = progress_bar(500, "etf-train", unit="it")
    for i in range(500):
        bar.update(1)
        bar.set_postfix(loss=f"{1 / (i + 1):.3f}")
        bar.set_postfix_str(f"step {i}")
    bar.close()
    lines = log.getvalue().splitlines()
    assert 1 <= len(lines) <= 3 and "\r" not in log.getvalue()
    assert "500/500" in lines[-1]
