"""A loopback ADB device for tests and demos: a real adbd-side protocol server plus a benchmark_model stand-in.

``AdbPeer(root).start()`` listens on 127.0.0.1; ``write_benchmark_model_stub(path)`` writes an executable that
behaves like TFLite's ``benchmark_model`` (see :mod:`tests.equipment.benchmark_model`), to be named as a device's
``benchmark_model`` in the devices TOML.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from tests.equipment.adb_peer.server import AdbPeer

__all__ = ["AdbPeer", "write_benchmark_model_stub"]


def write_benchmark_model_stub(path: str | Path) -> Path:
    """Write a ``benchmark_model``-compatible shell script that runs this repo's runner with this Python."""
    path = Path(path)
    repo_root = Path(__file__).resolve().parents[3]  # tests/equipment/adb_peer/__init__.py -> the repo
    path.write_text(
        "#!/bin/sh\n"
        "# Stand-in for TFLite's benchmark_model: same flags and output, timing by the LiteRT interpreter.\n"
        f"PYTHONPATH={shlex.quote(str(repo_root))} exec {shlex.quote(sys.executable)} "
        "-m tests.equipment.benchmark_model \"$@\"\n"
    )
    path.chmod(0o755)
    return path
