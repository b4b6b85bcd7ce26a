"""The work of an operator's parts, for maps whose time is a non-negative sum of them.

Another precision or device speeds an operator's parts up by different factors: int8 on this CPU made MBConv
blocks 1.0-3.3x faster by their widths, because the expansion, the depthwise and the projection convolutions (and
the maps they read and write) each gain their own factor. A block's new time is then close to ``a + sum w_j c_j``
over its parts' work ``c_j`` with non-negative weights, which neither its old time alone nor logs of its key carry
(latency/transfer.py fits it; latency/RESULTS.md, 2026-11-29 "noon"). Kept apart from latency/operators.py, whose
source is part of every converted file's cache key: these numbers change no converted file.
"""
from __future__ import annotations

from latency.operators import MBConv, Operator


def mbconv_terms(op: MBConv) -> dict[str, float]:
    """Multiply-adds of the expansion, depthwise and projection convs, and elements of the expanded map, the
    depthwise output and the block's input plus output."""
    n_in, n_out, h = op.hw ** 2, op.out_hw() ** 2, op.hidden
    expanded = op.e != 1
    return {"expand_macs": float(op.cin * h * n_in if expanded else 0), "dw_macs": float(h * op.k ** 2 * n_out),
            "project_macs": float(h * op.cout * n_out), "expanded_elems": float(h * n_in if expanded else 0),
            "hidden_out_elems": float(h * n_out), "in_out_elems": float(op.cin * n_in + op.cout * n_out)}


def cost_terms(op: Operator) -> dict[str, float]:
    """The work of ``op``'s parts by name; empty for kinds that do not name their parts (their maps stay lines)."""
    return mbconv_terms(op) if isinstance(op, MBConv) else {}


__all__ = ["cost_terms", "mbconv_terms"]
