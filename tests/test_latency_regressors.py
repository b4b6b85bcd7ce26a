"""The MBConv model: work counted at whole channel registers carries corner measurements to interior widths."""
from __future__ import annotations

import numpy as np
import pytest

from etf.common import EtfError
from latency.costs import mbconv_terms, tiled_terms
from latency.operators import MBConv, log_features
from latency.predictor import KindModel
from latency.regressors import TiledCostModel

WIDTHS = (56, 64, 72, 80, 88, 96, 104, 112, 120, 128, 136)


def _device_ms(op: MBConv) -> float:
    """A device whose kernels fill 16-channel registers: time follows the 16-padded work, plus a fixed cost."""
    t = mbconv_terms(op, 16)
    return 0.02 + 2e-8 * (t["expand_macs"] + t["project_macs"]) + 1e-7 * t["dw_macs"] + 3e-8 * t["in_out_elems"]


def _blocks(cins, couts) -> list[MBConv]:
    return [MBConv(ci, co, k, e, 2, 64, False) for ci in cins for co in couts for k in (3, 5) for e in (2, 3, 4, 5)]


def test_tiled_terms_round_channels_up_to_whole_registers():
    op = MBConv(56, 136, 3, 4, 1, 32, False)
    plain, tiled = mbconv_terms(op), mbconv_terms(op, 16)
    assert plain["project_macs"] == 224 * 136 * 32 * 32
    assert tiled["project_macs"] == 224 * 144 * 32 * 32  # 136 -> 144; 224 is already a multiple of 16
    assert tiled["in_out_elems"] == (64 + 144) * 32 * 32
    assert len(tiled_terms(op)) == 1 + 3 * len(plain)  # a constant, untiled, at 16 and at 32


def test_corner_measurements_carry_to_interior_widths():
    corners = _blocks((56, 136), (56, 136)) + _blocks((64, 128), (72, 120))  # mostly odd multiples of 8
    interior = [op for op in _blocks(WIDTHS, WIDTHS) if op not in set(corners)]
    truth = np.array([_device_ms(o) for o in interior])
    ms = [_device_ms(o) for o in corners]
    tiled = TiledCostModel.fit(corners, ms)
    err_tiled = np.abs(tiled.predict(interior) / truth - 1)
    # what MBConv blocks got before: trees on the keys' log features (revision 6)
    from sklearn.ensemble import GradientBoostingRegressor

    gb = GradientBoostingRegressor(n_estimators=400, max_depth=3, learning_rate=0.05, subsample=0.9, random_state=0)
    gb.fit([log_features(o) for o in corners], np.log(ms))
    err_trees = np.abs(np.exp(gb.predict([log_features(o) for o in interior])) / truth - 1)
    assert np.percentile(err_tiled, 90) < 0.01
    assert np.median(err_trees) > 2 * np.median(err_tiled)

def test_kind_model_uses_it_for_mbconv_and_round_trips_exactly():
    corners = _blocks((56, 136), (56, 136))
    ms = [_device_ms(o) for o in corners]
    m = KindModel("mbconv", [o.key for o in corners], ms)
    assert m.mode == "tiled-costs"
    interior = _blocks((80, 96), (104, 112))
    again = KindModel.from_state(m.state())
    np.testing.assert_array_equal(again.predict_ops(interior), m.predict_ops(interior))
    assert m.predict_ops(corners[:3]).tolist() == ms[:3]  # measured blocks are looked up, not modelled


def test_a_model_saved_with_other_tiles_is_refused():
    corners = _blocks((56, 136), (56, 136))
    state = TiledCostModel.fit(corners, [_device_ms(o) for o in corners]).state()
    state["tiles"] = [8]
    with pytest.raises(EtfError, match="refit"):
        TiledCostModel.from_state(state)
