"""The work of an operator's parts, for maps whose time is a non-negative sum of them.

Another precision or device speeds an operator's parts up by different factors: int8 on this CPU made MBConv
blocks 1.0-3.3x faster by their widths, because the expansion, the depthwise and the projection convolutions (and
the maps they read and write) each gain their own factor. A block's new time is then close to ``a + sum w_j c_j``
over its parts' work ``c_j`` with non-negative weights, which neither its old time alone nor logs of its key carry
(latency/transfer.py fits it; latency/RESULTS.md, 2026-11-29 "noon"). Kept apart from latency/operators.py, whose
source is part of every converted file's cache key: these numbers change no converted file.
"""
from __future__ import annotations

import numpy as np

from latency.operators import MBConv, Operator


#: Channel tiles an MBConv's work is also counted at (:func:`tiled_terms`): XNNPACK's kernels work on whole
#: register tiles of channels (16 floats in an AVX-512 register on this CPU), so a 56-channel map costs about what
#: a 64-channel one does. The operator table's fit weighs the counts at each tile (and untiled) from the data.
TILES = (16, 32)


def _tiled(c: int, tile: int) -> int:
    return tile * -(-c // tile) if tile > 1 else c


def mbconv_terms(op: MBConv, tile: int = 1) -> dict[str, float]:
    """Multiply-adds of the expansion, depthwise and projection convs, and elements of the expanded map, the
    depthwise output and the block's input plus output; with ``tile`` > 1, every channel count rounded up to a
    multiple of it (the work a kernel that fills whole ``tile``-channel registers does)."""
    n_in, n_out = op.hw ** 2, op.out_hw() ** 2
    cin, cout, h = _tiled(op.cin, tile), _tiled(op.cout, tile), _tiled(op.hidden, tile)
    expanded = op.e != 1
    return {"expand_macs": float(cin * h * n_in if expanded else 0), "dw_macs": float(h * op.k ** 2 * n_out),
            "project_macs": float(h * cout * n_out), "expanded_elems": float(h * n_in if expanded else 0),
            "hidden_out_elems": float(h * n_out), "in_out_elems": float(cin * n_in + cout * n_out)}


def tiled_terms(op: MBConv, tiles: tuple[int, ...] = TILES) -> list[float]:
    """A constant 1, then :func:`mbconv_terms` untiled and at each of ``tiles``: the columns of
    :class:`latency.regressors.TiledCostModel`."""
    out = [1.0]
    for tile in (1, *tiles):
        out += list(mbconv_terms(op, tile).values())
    return out


def nnls_relative(design: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Non-negative coefficients minimising the relative squared error ``sum((design @ c / t - 1) ** 2)``: how a
    time that is a non-negative sum of work terms is fitted (the transfer's cost map, the MBConv model)."""
    from scipy.optimize import nnls

    return nnls(design / t[:, None], np.ones(len(t)))[0]


def cost_terms(op: Operator) -> dict[str, float]:
    """The work of ``op``'s parts by name; empty for kinds that do not name their parts (their maps stay lines)."""
    return mbconv_terms(op) if isinstance(op, MBConv) else {}


__all__ = ["TILES", "cost_terms", "mbconv_terms", "nnls_relative", "tiled_terms"]
