"""Run one CLI module's ``main(argv)`` on many command lines in one process and report each outcome as JSON.

Why: importing torch costs seconds, so the bad-input sweep (tests/test_bad_input.py) runs all the cases of
one command in one process through this driver (plus one real ``python -m`` run per command).

    echo '{"module": "supernet.cli.eval", "cases": [["--ckpt", "x"], ...]}' | python -m tests.equipment.cli_driver

Prints ``[{"code": 2, "stderr": "...", "stdout": "...", "traceback": false}, ...]``: the exit code
(``main``'s return value or SystemExit's code), what the case wrote to sys.stdout / sys.stderr, and whether
an exception escaped ``main`` (its traceback is appended to ``stderr``, as Python would print it).
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import sys
import traceback


def run_case(main, argv: list[str]) -> dict:
    """One call of ``main(argv)`` with stdout/stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    escaped = False
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - the point is to see anything that escapes
            escaped = True
            code = 1
            err.write(traceback.format_exc())
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(), "traceback": escaped}


def main() -> int:
    job = json.load(sys.stdin)
    entry = importlib.import_module(job["module"]).main
    results = [run_case(entry, list(argv)) for argv in job["cases"]]
    sys.stdout.write(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
