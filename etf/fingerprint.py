"""Fingerprints for cache keys: of files, folders, Python source and installed package versions.

Why: a cache key that leaves out something that shapes the cached result gives stale hits (a converted
operator from last week's converter, a search accuracy computed with another batch size). Each cache builds
its key from these helpers, so "what changed" is detected the same way everywhere:

- :func:`file_digest`: the bytes of one file (a checkpoint's identity, not its name or mtime);
- :func:`tree_fingerprint`: every file's relative path, size and mtime under a folder (a dataset; cheap);
- :func:`source_digest`: the source files of Python modules, found without importing them;
- :func:`package_versions`: installed distribution versions (converter, runtime, torch).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Iterable


def file_digest(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def tree_fingerprint(folder: str | os.PathLike[str]) -> str:
    """SHA-256 of every file's (relative path, size, mtime in ns) under ``folder``, in sorted order: changes
    when a file is added, removed, rewritten or touched, without reading the files."""
    root = Path(folder)
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            try:
                st = p.stat()
            except OSError:
                continue
            h.update(f"{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def module_file(module: str) -> Path:
    """The source file of ``module`` (``latency.operators``), located without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(module)
    return Path(spec.origin)


@lru_cache(maxsize=None)
def source_digest(modules: tuple[str, ...]) -> str:
    """SHA-256 of the named modules' source bytes (in the given order, names included)."""
    h = hashlib.sha256()
    for name in modules:
        h.update(name.encode() + b"\0" + module_file(name).read_bytes())
    return h.hexdigest()


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """``{distribution: version}``; ``"absent"`` for one that is not installed."""
    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


__all__ = ["file_digest", "tree_fingerprint", "module_file", "source_digest", "package_versions"]
