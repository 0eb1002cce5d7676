"""The gap filler's boosted trees: the array walk against its plain loop and scikit-learn's own
prediction, folds by parcel, out-of-fold predictions that never saw their fold, features that never
see the views they are told to hide, and the trees against the smoother alone on real plots."""

from __future__ import annotations

import numpy as np
import pytest

from alerts import gapfill as gf
from alerts import gapfill_boost as gb
from alerts.evaluation import evaluate_gapfill
from tests.alerts.conftest import mowing_series


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    y = np.sin(X[:, 0]) + 0.5 * np.abs(X[:, 1]) + 0.1 * rng.normal(size=n)
    X[rng.random(n) < 0.15, 2] = np.nan  # missing values: each split learns where they go
    X[rng.random(n) < 0.05, 0] = np.nan
    return X, y


def test_tree_arrays_predict_as_scikit_learn_and_the_plain_walk():
    X, y = _data(3000, 0)
    est = gb._estimator(gb.BoostParams(max_trees=60), 60).fit(X, y)
    trees = gb.to_arrays(est)
    Xt, _ = _data(300, 1)
    assert len(trees.roots) == 60
    np.testing.assert_allclose(gb.predict(trees, Xt), est.predict(Xt), rtol=0, atol=1e-12)
    np.testing.assert_allclose(gb.predict(trees, Xt[:40]), gb.predict_reference(trees, Xt[:40]), rtol=0, atol=1e-12)
    assert np.isnan(Xt[:, 2]).any()  # the missing-value branches were walked


def test_folds_keep_each_group_on_one_side():
    groups = np.repeat(np.arange(20), 7)[np.random.default_rng(3).permutation(140)]
    fold = gb.fold_of(groups, 3, seed=0)
    for g in np.unique(groups):
        assert len(set(fold[groups == g])) == 1
    assert sorted(set(fold)) == [0, 1, 2]


def test_out_of_fold_predictions_come_from_trees_that_never_saw_the_fold():
    X, y = _data(2400, 2)
    groups = np.arange(len(y)) // 40
    p = gb.BoostParams(max_trees=50)
    trees, oof, info = gb.fit(X, y, groups, p)
    fold = gb.fold_of(groups, p.folds, p.seed)
    held = fold == 0
    alone = gb._estimator(p, info["trees"]).fit(X[~held], y[~held]).predict(X[held])
    np.testing.assert_allclose(oof[held], alone, rtol=0, atol=1e-12)
    in_sample = gb.predict(trees, X)
    assert np.mean(np.abs(in_sample - y)) < np.mean(np.abs(oof - y))  # the refit has seen every sample


def test_training_features_never_see_the_hidden_views():
    g = mowing_series("P", cuts=(150.0,), seed=4)
    clim = np.zeros((366, len(gf.S2_BANDS) + 1))
    p = gf.GapFillParams()
    v = gf._clear_s2(g)
    t = v["days"].to_numpy(float)
    i = len(t) // 2
    near = v.index[np.abs(t - t[i]) <= 20.0]
    changed = g.copy()
    changed.loc[near, ["B04", "B08", "B02", "B11"]] *= 0.5  # the view itself and its neighbours within 20 d

    def at_view(rows, hide_days):
        f, smooth, inside = gf.boost_training_features(clim, gf.boost_views(clim, p, rows), hide_days)
        return f[i : i + 1], smooth[i : i + 1], inside[i : i + 1]

    f0, s0, in0 = at_view(g, 20.0)
    f1, s1, in1 = at_view(changed, 20.0)
    assert in0[0] and in1[0]
    np.testing.assert_array_equal(f0, f1)
    np.testing.assert_array_equal(s0, s1)
    f2, _, _ = at_view(changed, 0.0)  # hiding the view alone: its neighbours count
    assert not np.array_equal(f0, f2)


@pytest.mark.slow
def test_trees_beat_the_smoother_alone_on_held_out_real_views(real_small):
    """Twelve real plots, 20 % of clear views hidden: the trees, fitted on the visible views only,
    lower the NDVI error of the smoother (the full run: `sitsmon eval gapfill`)."""
    obs, _, _ = real_small
    boosted = evaluate_gapfill(obs, mode="random", seed=0)
    smoother = evaluate_gapfill(obs, mode="random", seed=0, params=gf.GapFillParams(boost=False))
    assert "boosted-trees" in boosted["method"] and "boosted-trees" not in smoother["method"]
    assert boosted["scored_views"] == smoother["scored_views"] > 100
    assert boosted["ndvi_mae"] < smoother["ndvi_mae"]
    assert boosted["ndvi_mae"] < boosted["ndvi_mae_linear"]
