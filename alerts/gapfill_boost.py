"""A boosted tree ensemble for the gap filler's residual, fitted by scikit-learn, kept as plain arrays.

The gap filler's smoother (climatology + the parcel's prior + linear interpolation of the anomaly)
cannot tell a cut from a noisy neighbour, a saturated canopy from a bare one, or how far to trust a
view next to a long gap; a gradient-boosted tree ensemble on the neighbourhood of each query
(``alerts.gapfill.boost_features``) learns that correction from the dataset's own clear views,
each predicted with itself and its neighbours hidden (self-supervised: no labels beyond the views).

Why arrays and not the fitted estimator: a tile's fit is stored next to its series
(``dashboards.gapfill_store``) without pickle, and read by every server worker. After the fit, the
trees' nodes are copied into one table (:class:`TreeArrays`) and predicted by :func:`predict`, a
vectorised walk of all trees at once; :func:`predict_reference` is the plain per-sample loop it is
tested against, and both are tested against scikit-learn's own ``predict``.

The one constant that matters most, the number of trees, is chosen inside the fit by cross-validation
*by parcel* (views of one parcel are never on both sides of a fold), and the same folds give the
out-of-fold errors that calibrate the filler's bands; the other settings are scikit-learn's usual
ones for a few ten thousand samples, fixed in :class:`BoostParams`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

# columns of TreeArrays.nodes
FEATURE, THRESHOLD, MISSING_LEFT, LEFT, RIGHT, VALUE, IS_LEAF = range(7)


@dataclass(frozen=True, slots=True)
class BoostParams:
    learning_rate: float = 0.1
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 40
    max_trees: int = 600  # out-of-fold MAE on the dev set still falls slowly there (0.0540 at 400, 0.0526 at 1500)
    folds: int = 3  # by parcel: choose the number of trees, and the out-of-fold errors for the bands
    seed: int = 0


@dataclass(frozen=True, slots=True)
class TreeArrays:
    """``nodes``: (n_nodes, 7) float64 (feature, threshold, missing goes left, left, right, value,
    is leaf), child indices relative to each tree's root; ``roots``: (n_trees,) int64 offsets of each
    tree's first node; ``baseline``: the ensemble's constant. Prediction = baseline + Σ leaf values."""

    nodes: np.ndarray
    roots: np.ndarray
    baseline: float


STEP = 10  # the number of trees is chosen in steps of this many


def _estimator(p: BoostParams, trees: int):
    from sklearn.ensemble import HistGradientBoostingRegressor

    # absolute error: the filler is scored by MAE, and NDVI errors are heavy-tailed (a median, not a mean)
    return HistGradientBoostingRegressor(
        loss="absolute_error", learning_rate=p.learning_rate, max_iter=trees, max_leaf_nodes=p.max_leaf_nodes,
        min_samples_leaf=p.min_samples_leaf, early_stopping=False, random_state=p.seed,
    )


def fold_of(groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each sample's fold, drawn by group (a parcel's samples are never on both sides)."""
    names, inverse = np.unique(groups, return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(names))
    return (np.argsort(order) % folds)[inverse]


def fit(X: np.ndarray, y: np.ndarray, groups: np.ndarray, p: BoostParams | None = None
        ) -> tuple[TreeArrays, np.ndarray, dict]:
    """(trees fitted on every sample, out-of-fold predictions, info). The number of trees is the one
    (in steps of ``STEP``) with the lowest out-of-fold mean absolute error over ``p.folds`` folds by
    group; the out-of-fold predictions are those of that many trees, each fitted without its fold."""
    p = p or BoostParams()
    fold = fold_of(groups, p.folds, p.seed)
    steps = np.arange(STEP, p.max_trees + 1, STEP)
    staged = np.full((len(steps), len(y)), np.nan)
    # one thread: on two cores a second one gained nothing (12.0 s vs 12.4 s for the dev set's fit),
    # and a server worker fitting a tile's model must leave the other core to its answers
    with threadpool_limits(limits=1):
        for k in range(p.folds):
            held = fold == k
            est = _estimator(p, p.max_trees).fit(X[~held], y[~held])
            for i, pred in enumerate(est.staged_predict(X[held])):
                if (i + 1) % STEP == 0:
                    staged[(i + 1) // STEP - 1, held] = pred
        curve = np.nanmean(np.abs(staged - y[None, :]), axis=1)
        best = int(np.nanargmin(curve))
        trees = int(steps[best])
        final = _estimator(p, trees).fit(X, y)
    info = {"trees": trees, "oof_mae_every_10_trees": [round(float(c), 5) for c in curve]}
    return to_arrays(final), staged[best], info


def to_arrays(est) -> TreeArrays:
    """The fitted estimator's trees as one node table (scikit-learn's TreePredictor.nodes fields)."""
    tables, roots, offset = [], [], 0
    for (tree,) in est._predictors:  # one tree per iteration for a regressor
        n = tree.nodes
        if n["is_categorical"].any():
            raise ValueError("categorical splits are not supported by TreeArrays")
        tables.append(np.c_[n["feature_idx"], n["num_threshold"], n["missing_go_to_left"], n["left"], n["right"],
                            n["value"], n["is_leaf"]].astype(np.float64))
        roots.append(offset)
        offset += len(n)
    nodes = np.concatenate(tables) if tables else np.zeros((0, 7))
    return TreeArrays(nodes, np.asarray(roots, np.int64), float(np.ravel(est._baseline_prediction)[0]))


def predict(trees: TreeArrays, X: np.ndarray) -> np.ndarray:
    """Baseline + the sum of every tree's leaf value for each row of ``X`` (NaN goes where the fit sent
    missing values). All trees are walked together, one level per step."""
    X = np.asarray(X, dtype=np.float64)
    out = np.full(len(X), trees.baseline)
    if len(trees.roots) == 0 or len(X) == 0:
        return out
    nd = trees.nodes
    rows = np.repeat(np.arange(len(X)), len(trees.roots))
    at = np.tile(trees.roots, len(X))  # absolute node index per (row, tree)
    root = at.copy()
    inner = nd[at, IS_LEAF] == 0
    while inner.any():
        i = np.flatnonzero(inner)
        node = nd[at[i]]
        x = X[rows[i], node[:, FEATURE].astype(np.int64)]
        left = np.where(np.isnan(x), node[:, MISSING_LEFT] == 1, x <= node[:, THRESHOLD])
        at[i] = root[i] + np.where(left, node[:, LEFT], node[:, RIGHT]).astype(np.int64)
        inner[i] = nd[at[i], IS_LEAF] == 0
    np.add.at(out, rows, nd[at, VALUE])
    return out


def predict_reference(trees: TreeArrays, X: np.ndarray) -> np.ndarray:
    """The same, one row and one tree at a time: the plain rule :func:`predict` is tested against."""
    out = []
    for x in np.asarray(X, dtype=np.float64):
        total = trees.baseline
        for r in trees.roots:
            k = int(r)
            while trees.nodes[k, IS_LEAF] == 0:
                f, thr, miss_left, left, right = trees.nodes[k, :5]
                v = x[int(f)]
                go_left = bool(miss_left) if np.isnan(v) else v <= thr
                k = int(r) + int(left if go_left else right)
            total += trees.nodes[k, VALUE]
        out.append(total)
    return np.asarray(out)
