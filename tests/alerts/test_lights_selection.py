"""The inner precision tests of the calibrated light's threshold selection (``precision_test``):
the point estimate (shipped), the lower Wilson bound, and every training campaign."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq

from alerts.confidence_cv import SELECTIONS, lights_of, precision_test, thresholds, wilson_lower


def _wilson_lower_by_root(k: int, n: int, z: float) -> float:
    """The Wilson interval's lower end as the root of its defining equation
    (p̂ − p)² = z² p (1 − p) / n below p̂, found numerically."""
    ph = k / n
    if ph == 0.0:
        return 0.0
    # below p̂ = 1 the equation also holds at p = 1 itself: search just under it
    return brentq(lambda p: (ph - p) ** 2 - z * z * p * (1 - p) / n, 0.0, min(ph, 1.0 - 1e-12), xtol=1e-14)


@pytest.mark.parametrize(("k", "n", "z"), [(9, 10, 1.0), (74, 83, 1.0), (74, 83, 1.645), (10, 10, 1.2816), (1, 3, 2.0)])
def test_wilson_lower_is_the_root_of_the_score_equation(k, n, z):
    assert wilson_lower(k, n, z) == pytest.approx(_wilson_lower_by_root(k, n, z), abs=1e-9)
    assert wilson_lower(k, n, 0.0) == pytest.approx(k / n)
    assert wilson_lower(0, 0, 1.0) == 0.0


def _data(seed: int, n: int = 400):
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    return (p, rng.random(n) < p, rng.random(n) < 0.6, rng.random(n) < 0.9, np.ones(n, bool),
            rng.integers(2021, 2024, n))


def _plain(p, active, has_event, covered, after, ok):
    """The selection written out: every green cut point (the most greens passing ``ok``), then
    every red cut point among the rest, with ``ok(indices, right)`` on plain Python lists."""
    cuts = sorted(set(p.tolist()))
    mids = [cuts[0] - 1e-6] + [0.5 * (a + b) for a, b in zip(cuts, cuts[1:], strict=False)] + [cuts[-1] + 1e-6]
    n = len(p)
    best_g, green_p = 0, 1.0 + 1e-9
    for t in reversed(mids):
        idx = [i for i in range(n) if has_event[i] and p[i] >= t]
        if len(idx) > best_g and ok(idx, [bool(active[i]) for i in idx]):
            best_g, green_p = len(idx), t
    best_r = 0
    for t in mids:
        idx = [i for i in range(n) if after[i] and covered[i] and p[i] <= t and not (has_event[i] and p[i] >= green_p)]
        if len(idx) > best_r and ok(idx, [not active[i] for i in idx]):
            best_r = len(idx)
    return best_g, best_r


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_selection_matches_its_plain_reference(seed):
    p, active, has_event, covered, after, years = _data(seed)
    target = 0.9

    def point(idx, right):
        return sum(right) / len(right) >= target

    def wilson(idx, right):
        return _wilson_lower_by_root(sum(right), len(right), 1.0) >= target - 1e-12

    def every_year(idx, right):
        if not point(idx, right):
            return False
        for y in set(years[idx].tolist()):
            mine = [r for i, r in zip(idx, right, strict=True) if years[i] == y]
            if sum(mine) / len(mine) < target:
                return False
        return True

    for selection, ok in (("point", point), ("wilson", wilson), ("worst_year", every_year)):
        holds = precision_test(target, selection, years, wilson_z=1.0)
        red_p, green_p, decided = thresholds(p, active, has_event, covered, after, target, holds)
        lights = lights_of(p, has_event, covered, after, red_p, green_p)
        n_green, n_red = _plain(p, active, has_event, covered, after, ok)
        assert (int((lights == 2).sum()), int((lights == 0).sum())) == (n_green, n_red), selection
        assert decided == n_green + n_red


def test_the_stricter_tests_never_decide_more_and_reduce_to_the_point_estimate():
    p, active, has_event, covered, after, years = _data(5)
    plain = thresholds(p, active, has_event, covered, after, 0.9)
    assert thresholds(p, active, has_event, covered, after, 0.9, precision_test(0.9, "point")) == plain
    # z = 0: the Wilson bound is the point estimate; one campaign: "every year" is "pooled"
    assert thresholds(p, active, has_event, covered, after, 0.9, precision_test(0.9, "wilson", wilson_z=0.0)) == plain
    one_year = np.full(len(p), 2022)
    assert thresholds(p, active, has_event, covered, after, 0.9, precision_test(0.9, "worst_year", one_year)) == plain
    for sel in ("wilson", "worst_year"):
        assert thresholds(p, active, has_event, covered, after, 0.9, precision_test(0.9, sel, years))[2] <= plain[2]
    assert set(SELECTIONS) == {"point", "wilson", "worst_year"}
    with pytest.raises(ValueError, match="campaign"):
        precision_test(0.9, "worst_year")
    with pytest.raises(ValueError, match="unknown selection"):
        precision_test(0.9, "median")
