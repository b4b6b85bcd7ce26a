"""Memoize torch.export's scan of CompositeImplicitAutograd ops: ~17% of an operator's conversion time.

Every ``run_decompositions`` (litert-torch runs 3-4 per conversion) calls
``torch._export.utils._collect_all_valid_cia_ops``, which walks every registered op namespace (~5800 op
overloads) to find the preservable CompositeImplicitAutograd ops. torch does not cache it because a custom-op
library may register more ops later; here the result is kept only while the dispatcher's CIA registrations and
op namespaces are unchanged (both are part of the memo key), so a newly registered op is a miss, never a stale
set. Measured (``benchmarks/bench_convert_cost.py``, 24 table operators converted in pairs, with and
without, two runs): byte-identical ``.tflite`` files, 43.4 s -> 35.4 s and 40.7 s -> 35.9 s in all (median
ratios 0.83 and 0.87). The install is idempotent and a no-op on a torch without these internals.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

#: Modules that imported ``_collect_all_valid_cia_ops`` by name (their reference is replaced too).
_USERS = ("torch._export.utils", "torch.export.exported_program", "torch.export.decomp_utils")
_NAME = "_collect_all_valid_cia_ops"
_installed = False


def _registration_key() -> tuple:
    """What the scan's result depends on: the op namespaces and the dispatcher's CIA registrations."""
    import torch

    return (tuple(torch.ops._dir),
            tuple(torch._C._dispatch_get_registrations_for_dispatch_key("CompositeImplicitAutograd")))


def _memoized(scan: Callable[[], set]) -> Callable[[], set]:
    memo: dict[tuple, frozenset] = {}

    def collect_all_valid_cia_ops() -> set[Any]:
        key = _registration_key()
        if key not in memo:
            memo.clear()
            memo[key] = frozenset(scan())
        return set(memo[key])  # a fresh set: callers own what torch's function returns

    collect_all_valid_cia_ops.__wrapped__ = scan  # type: ignore[attr-defined]
    return collect_all_valid_cia_ops


def memoize_cia_scan() -> bool:
    """Install the memo in this process (once); False when this torch lacks the function or its internals."""
    global _installed
    if _installed:
        return True
    try:
        modules = [importlib.import_module(name) for name in _USERS]
        scan = getattr(modules[0], _NAME)
        _registration_key()  # the internals the key reads exist
    except (ImportError, AttributeError, RuntimeError, TypeError):
        return False
    memo = _memoized(scan)
    for module in modules:
        if getattr(module, _NAME, None) is scan:
            setattr(module, _NAME, memo)
    _installed = True
    return True
