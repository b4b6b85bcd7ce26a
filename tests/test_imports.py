"""Every module of the installed packages imports: a broken import line fails here, not in a user's command."""
from __future__ import annotations

import importlib
import pkgutil

import pytest

PACKAGES = ("etf", "supernet", "android_bench", "latency", "search")


def _modules() -> list[str]:
    names = []
    for pkg in PACKAGES:
        root = importlib.import_module(pkg)
        names.append(pkg)
        names += [m.name for m in pkgutil.walk_packages(root.__path__, pkg + ".") if not m.name.endswith("__main__")]
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_module_imports(name: str) -> None:
    assert importlib.import_module(name).__name__ == name
