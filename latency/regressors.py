"""Fitted regressors kept as plain numbers (JSON-able, evaluated with numpy): what a saved predictor is made of.

:class:`TreeEnsemble` and :class:`LinearModel` are scikit-learn fits read into arrays; :class:`TiledCostModel` is
the MBConv model (its parts' work at several channel tilings, then trees on what that misses). Nothing here is
pickled, so a predictor file survives library upgrades (nn-Meter's issue #131).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from etf.common import EtfError
from latency.costs import TILES, nnls_relative, tiled_terms
from latency.operators import MBConv, log_features


class TreeEnsemble:
    """A fitted gradient-boosting regressor as plain arrays, evaluated with numpy (no scikit-learn object).

    scikit-learn predicts ``init + sum_t learning_rate * tree_t(x)`` with ``x`` cast to float32 and each tree
    walked by ``x[feature] <= threshold`` (left) until ``children_left == -1``; the trees are added in order,
    one after another. :meth:`predict` does the same float operations in the same order, so it equals
    ``GradientBoostingRegressor.predict`` (bit for bit on x86-64; tests allow 1e-12).
    """

    def __init__(self, init: float, learning_rate: float, n_features: int,
                 trees: Sequence[dict[str, Sequence[float]]]):
        self.init = float(init)
        self.n_features = int(n_features)
        self.learning_rate = float(learning_rate)
        self.trees = [{k: list(t[k]) for k in _TREE_ARRAYS} for t in trees]
        for t in self.trees:  # a damaged file must fail here, not index out of bounds while predicting
            m = len(t["value"])
            if any(len(t[k]) != m for k in _TREE_ARRAYS) or m == 0:
                raise ValueError("tree arrays of different lengths")
            kids = np.asarray(t["children_left"] + t["children_right"], dtype=np.int64)
            if ((kids < -1) | (kids >= m) | (kids == 0)).any():
                raise ValueError("tree child index out of range")
            if max(t["feature"]) >= self.n_features:
                raise ValueError("tree feature index out of range")
        # all trees in flat arrays (children as flat indices, -1 at leaves): walked at once, level by level
        sizes = [len(t["value"]) for t in self.trees]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp) if sizes else np.zeros(0, np.intp)
        self._roots = offsets
        cat = (lambda k, dt: np.concatenate([np.asarray(t[k], dtype=dt) for t in self.trees])
               if self.trees else np.zeros(0, dt))
        left, right = cat("children_left", np.intp), cat("children_right", np.intp)
        shift = np.repeat(offsets, sizes)
        self._left = np.where(left == -1, -1, left + shift)
        self._right = np.where(right == -1, -1, right + shift)
        self._feature = np.maximum(cat("feature", np.intp), 0)  # leaves hold -2
        self._threshold = cat("threshold", np.float64)
        self._value = cat("value", np.float64)

    @classmethod
    def from_sklearn(cls, model: Any, x: np.ndarray) -> "TreeEnsemble":
        """Read a fitted ``GradientBoostingRegressor`` (``x``: its training features, to read the init value)."""
        init = np.asarray(model._raw_predict_init(np.asarray(x, dtype=np.float32)), dtype=np.float64)
        if init.shape[1] != 1 or np.ptp(init) != 0.0:
            raise EtfError("the gradient-boosting init estimator is not a constant: cannot store it as data")
        trees = []
        for est in model.estimators_[:, 0]:
            t = est.tree_
            if t.value.shape[1:] != (1, 1):
                raise EtfError("a latency regression tree has more than one output")
            trees.append({"children_left": t.children_left.tolist(), "children_right": t.children_right.tolist(),
                          "feature": t.feature.tolist(), "threshold": t.threshold.tolist(),
                          "value": t.value[:, 0, 0].tolist()})
        return cls(float(init[0, 0]), float(model.learning_rate), int(model.n_features_in_), trees)

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32).astype(np.float64)  # scikit-learn compares float32 features
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got shape {x.shape}")
        n, t = x.shape[0], len(self.trees)
        if t == 0:
            return np.full(n, self.init)
        flat = x.ravel()
        base = (np.arange(n, dtype=np.intp) * x.shape[1])[:, None]
        node = np.broadcast_to(self._roots, (n, t)).copy()
        while True:
            left = self._left[node]
            inner = left != -1
            if not inner.any():
                break
            go_left = flat[base + self._feature[node]] <= self._threshold[node]
            node = np.where(inner, np.where(go_left, left, self._right[node]), node)
        steps = self.learning_rate * self._value[node]
        # sequential sum in tree order, like scikit-learn's `out += scale * value` (cumsum is not pairwise)
        return np.cumsum(np.concatenate([np.full((n, 1), self.init), steps], axis=1), axis=1)[:, -1]

    def state(self) -> dict[str, Any]:
        return {"init": self.init, "learning_rate": self.learning_rate, "n_features": self.n_features,
                "trees": self.trees}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "TreeEnsemble":
        return cls(state["init"], state["learning_rate"], state["n_features"], state["trees"])


_TREE_ARRAYS = ("children_left", "children_right", "feature", "threshold", "value")


class LinearModel:
    """A fitted ``LinearRegression`` as its coefficients: ``x @ coef + intercept`` (as scikit-learn computes it)."""

    def __init__(self, coef: Sequence[float], intercept: float):
        self.coef = [float(c) for c in coef]
        self.intercept = float(intercept)
        self._coef = np.asarray(self.coef, dtype=np.float64)

    @classmethod
    def from_sklearn(cls, model: Any) -> "LinearModel":
        return cls(np.ravel(model.coef_).tolist(), float(model.intercept_))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) @ self._coef + self.intercept

    def state(self) -> dict[str, Any]:
        return {"coef": self.coef, "intercept": self.intercept}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "LinearModel":
        return cls(state["coef"], state["intercept"])


#: A stage position (input side, stride) gets its own cost weights from this many measured blocks on; a position
#: with fewer (or none) uses the weights fitted on every block.
MIN_ROWS_PER_POSITION = 8


def _position(op: MBConv) -> str:
    return f"{op.hw},{op.s}"


def residual_features(op: MBConv) -> list[float]:
    """What the trees on a :class:`TiledCostModel`'s residual see: the block's log features and whether its
    input, output and expanded widths fill whole registers (multiples of the first tile)."""
    tile = TILES[0]
    return log_features(op) + [float(c % tile == 0) for c in (op.cin, op.cout, op.hidden)]


class TiledCostModel:
    """MBConv latency as a non-negative sum of its parts' work counted untiled and at each channel tile
    (:func:`latency.costs.tiled_terms`), one set of weights per stage position, times ``exp`` of gradient-boosted
    trees on what that sum misses.

    Why: a table measures MBConv blocks at the corners of the width ranges, and most corner widths here (24, 56,
    72, 88, 136) are odd multiples of 8, while most blocks a network uses have interior widths, half of them
    multiples of 16. Trees on the keys alone carried the corners' cost per channel inward: blocks with input and
    output widths that are multiples of 16 came out 7.8% too slow (median, tF), and the regressor missed the
    blocks it had not measured by 8.2% on average. Counting the work at whole 16- and 32-channel registers lets
    the fit see where a width's cost jumps; measured against every MBConv block 50 held-out subnets of two tables
    used (latency/RESULTS.md, 2026-11-29 stop 26), the mean error fell to 4.6% and 4.3%.
    """

    def __init__(self, scale: Sequence[float], weights: dict[str, Sequence[float]], common: Sequence[float],
                 floor: float, residual: TreeEnsemble, tiles: Sequence[int] = TILES):
        self.tiles = tuple(int(t) for t in tiles)
        if self.tiles != TILES:
            raise EtfError(f"this MBConv model counts work at tiles {self.tiles}, this etf at {TILES}: refit it")
        self.scale = np.asarray(scale, dtype=np.float64)
        self.weights = {str(k): np.asarray(v, dtype=np.float64) for k, v in weights.items()}
        self.common = np.asarray(common, dtype=np.float64)
        if any(len(w) != len(self.scale) for w in (*self.weights.values(), self.common)):
            raise ValueError("cost weights of different lengths")
        self.floor = float(floor)
        self.residual = residual
        #: the scikit-learn object behind ``residual`` after a fresh fit (never saved, None after loading)
        self.residual_estimator = None

    @classmethod
    def fit(cls, ops: Sequence[MBConv], ms: Sequence[float], seed: int = 0) -> "TiledCostModel":
        """Fit on measured blocks ``ops`` and their latencies (ms)."""
        from sklearn.ensemble import GradientBoostingRegressor

        y = np.asarray(ms, dtype=np.float64)
        unit = float(np.median(y))  # fitted in units of the median block: a table scaled by c gives c x the model
        cost = np.array([tiled_terms(o) for o in ops])
        scale = cost.max(axis=0)
        scale[scale == 0] = 1.0
        cost = cost / scale
        common = unit * nnls_relative(cost, y / unit)
        weights = {}
        for pos in sorted({_position(o) for o in ops}):
            rows = np.array([_position(o) == pos for o in ops])
            if rows.sum() >= MIN_ROWS_PER_POSITION:
                weights[pos] = unit * nnls_relative(cost[rows], y[rows] / unit)
        self = cls(scale, weights, common, 0.05 * float(y.min()), TreeEnsemble(0.0, 0.0, 1, []))
        x = np.array([residual_features(o) for o in ops])
        est = GradientBoostingRegressor(n_estimators=200, max_depth=2, learning_rate=0.05, subsample=0.9,
                                        random_state=seed).fit(x, np.log(y / self.base(ops)))
        self.residual = TreeEnsemble.from_sklearn(est, x)
        self.residual_estimator = est
        return self

    def base(self, ops: Sequence[MBConv]) -> np.ndarray:
        """The cost sum alone (ms), never below 5% of the fastest measured block."""
        out = np.array([(np.asarray(tiled_terms(o, self.tiles)) / self.scale)
                        @ self.weights.get(_position(o), self.common) for o in ops])
        return np.maximum(out, self.floor)

    def predict(self, ops: Sequence[MBConv]) -> np.ndarray:
        """Latency (ms) of each block."""
        if not len(ops):
            return np.zeros(0)
        return self.base(ops) * np.exp(self.residual.predict(np.array([residual_features(o) for o in ops])))

    def state(self) -> dict[str, Any]:
        return {"tiles": list(self.tiles), "scale": self.scale.tolist(), "common": self.common.tolist(),
                "weights": {k: v.tolist() for k, v in self.weights.items()}, "floor": self.floor,
                "residual": self.residual.state()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "TiledCostModel":
        if not math.isfinite(float(state["floor"])):
            raise ValueError("the MBConv model's floor is not a number")
        return cls(state["scale"], state["weights"], state["common"], state["floor"],
                   TreeEnsemble.from_state(state["residual"]), state["tiles"])
