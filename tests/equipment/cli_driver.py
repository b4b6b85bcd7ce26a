"""Run one CLI module's ``main(argv)`` on many command lines in one process and report each outcome as JSON.

Why: importing torch costs seconds, so the bad-input sweep (tests/test_bad_input.py) runs all the cases of
one command in one process through this driver (plus one real ``python -m`` run per command).

    echo '{"module": "supernet.cli.eval", "cases": [["--ckpt", "x"], ...]}' | python -m tests.equipment.cli_driver

With ``"timeout": S`` in the job, a case still running after S seconds is stopped and reported as code
``"timeout"`` (used to survey old code that did real work on bad input). Prints ``[{"code": 2, "stderr": "...", "stdout": "...", "traceback": false}, ...]``: the exit code
(``main``'s return value or SystemExit's code), what the case wrote to sys.stdout / sys.stderr, and whether
an exception escaped ``main`` (its traceback is appended to ``stderr``, as Python would print it).
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import signal
import sys
import traceback


class CaseTimeout(BaseException):
    """A case ran longer than the job's ``timeout`` (it did real work instead of rejecting its input)."""


def _alarm(signum, frame):
    raise CaseTimeout


def run_case(main, argv: list[str], timeout: int = 0) -> dict:
    """One call of ``main(argv)`` with stdout/stderr captured; stopped after ``timeout`` s (0: no limit)."""
    out, err = io.StringIO(), io.StringIO()
    escaped = False
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            signal.signal(signal.SIGALRM, _alarm)
            signal.alarm(timeout)
            code = main(argv)
            signal.alarm(0)
        except CaseTimeout:
            code = "timeout"
            err.write(f"still running after {timeout} s\n")
        except SystemExit as exc:
            signal.alarm(0)
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - the point is to see anything that escapes
            signal.alarm(0)
            escaped = True
            code = 1
            err.write(traceback.format_exc())
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(), "traceback": escaped}


def main() -> int:
    job = json.load(sys.stdin)
    entry = importlib.import_module(job["module"]).main
    results = [run_case(entry, list(argv), int(job.get("timeout", 0))) for argv in job["cases"]]
    sys.stdout.write(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
