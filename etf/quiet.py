"""Keep converter and runtime chatter off the terminal unless asked for (``--verbose``) or a step fails.

The TFLite converter, torch.export, LiteRT and absl print from C++ straight to file descriptors 1 and 2
(``I0000 ... flatbuffer_export.cc ... Estimated count of arithmetic ops``, ``Failed to load ... torchao``,
XNNPACK delegate notes), which ``contextlib.redirect_stdout`` cannot catch. :func:`captured` points fds 1 and 2
(and Python's ``sys.stdout``/``sys.stderr``, warnings included) at a temporary file around a step; on success
the text is dropped, on an exception its last lines are printed to the real stderr under a header and the
exception propagates unchanged. ``--verbose`` (:func:`set_verbose`, inherited by worker processes through
``ETF_VERBOSE``) turns capturing off. One helper, used by model conversion, operator export and LiteRT
interpreter creation::

    with captured("TFLite conversion"):
        import litert_torch
        litert_torch.convert(module, samples).export(path)
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import threading
import warnings
from typing import Iterator

#: Environment switch read by :func:`verbose` (set by :func:`set_verbose`; worker processes inherit it).
VERBOSE_ENV = "ETF_VERBOSE"
#: Lines of captured output shown when a step fails.
TAIL_LINES = 30
#: Native log levels that silence TensorFlow/absl/glog INFO and WARNING at the source (set unless verbose,
#: without overriding a value the user chose).
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "GLOG_minloglevel": "2", "ABSL_MIN_LOG_LEVEL": "2"}
_LOCK = threading.RLock()  # fds 1/2 are process-wide: one capture at a time
_depth = 0


def set_verbose(on: bool) -> None:
    """Show (``True``) or capture (``False``) converter/runtime output from now on, in this process and in the
    worker processes it starts afterwards."""
    if on:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.pop(VERBOSE_ENV, None)


def verbose() -> bool:
    """Whether converter/runtime output is shown (``--verbose`` / ``ETF_VERBOSE=1``)."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def quiet_native_logs() -> None:
    """Ask TensorFlow/absl/glog to drop INFO and WARNING logs (only effective before they are imported)."""
    if not verbose():
        for key, value in QUIET_ENV.items():
            os.environ.setdefault(key, value)


def _flush_c_stdio() -> None:
    """Flush C's stdio buffers, so text a library printf'ed while captured lands in the capture file."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).fflush(None)


@contextlib.contextmanager
def captured(step: str = "step", *, enabled: bool | None = None, tail: bool = True) -> Iterator[None]:
    """Capture everything written to fds 1/2, ``sys.stdout``/``sys.stderr``, ``warnings`` and logging during
    the block; drop it on success, print its tail to stderr (headed ``<step> output``) on an exception.

    ``enabled`` None means "unless :func:`verbose`". ``tail`` False drops the output on an exception too (for
    steps whose exception already says everything, such as a model file LiteRT refuses: bad input gets one
    line). Nested captures are merged into the outermost one.
    """
    global _depth
    if enabled is None:
        enabled = not verbose()
    if not enabled:
        yield
        return
    quiet_native_logs()
    with _LOCK:
        if _depth:  # already captured by an outer block
            _depth += 1
            try:
                yield
            finally:
                _depth -= 1
            return
        _depth = 1
        py_out, py_err = sys.stdout, sys.stderr
        for stream in (py_out, py_err):
            with contextlib.suppress(Exception):
                stream.flush()
        _flush_c_stdio()
        sink = tempfile.TemporaryFile()
        saved = []
        try:
            for fd in (1, 2):
                try:
                    saved.append((fd, os.dup(fd)))
                    os.dup2(sink.fileno(), fd)
                except OSError:  # no such fd (a daemon): nothing to capture there
                    pass
            text = io.StringIO()
            litert_log = logging.getLogger("litert_torch")
            old_level = litert_log.level
            try:
                with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text), \
                        warnings.catch_warnings():
                    warnings.simplefilter("always")
                    litert_log.setLevel(logging.ERROR)
                    yield
            except BaseException:
                _flush_c_stdio()
                _restore(saved)
                saved = []
                if tail:
                    _show_tail(step, sink, text.getvalue(), py_err)
                raise
            finally:
                litert_log.setLevel(old_level)
        finally:
            _flush_c_stdio()
            _restore(saved)
            sink.close()
            _depth = 0


def _restore(saved: list[tuple[int, int]]) -> None:
    for fd, copy in saved:
        with contextlib.suppress(OSError):
            os.dup2(copy, fd)
        with contextlib.suppress(OSError):
            os.close(copy)


def _show_tail(step: str, sink, python_text: str, err) -> None:
    """Print the last :data:`TAIL_LINES` lines captured during a failed step (native output first)."""
    try:
        sink.seek(0)
        native = sink.read().decode(errors="replace")
    except OSError:
        native = ""
    lines = [line for line in (native + python_text).splitlines() if line.strip()]
    if not lines:
        return
    tail = lines[-TAIL_LINES:]
    with contextlib.suppress(Exception):
        print(f"---- {step} output (last {len(tail)} of {len(lines)} lines; --verbose shows all) ----", file=err)
        print("\n".join(tail), file=err)
        print("----", file=err, flush=True)


__all__ = ["captured", "set_verbose", "verbose", "quiet_native_logs", "VERBOSE_ENV"]
