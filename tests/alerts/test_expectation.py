"""The encoder's expectation attached to alerts: causal, meaningful on real mowings, in the evidence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import sits
from alerts.detectors import MowingDetector
from alerts.expectation import EXPECTED, EXPECTED_STD, add_model_expectations, annotate_events
from alerts.series import to_days
from tests.alerts.conftest import REAL


@pytest.fixture(scope="module")
def model():
    return sits.load_model()


@pytest.fixture(scope="module")
def real_slice(real_small) -> pd.DataFrame:
    return real_small[0]


@pytest.fixture(scope="module")
def expected(real_slice: pd.DataFrame, model) -> pd.DataFrame:
    return add_model_expectations(real_slice, model)


def _ndvi(df: pd.DataFrame) -> pd.Series:
    return (df["B08"] - df["B04"]) / (df["B08"] + df["B04"])


def test_expectations_for_s2_rows_only(expected: pd.DataFrame) -> None:
    s2 = expected["sensor"] == "S2"
    assert expected.loc[s2, EXPECTED].notna().all()
    assert expected.loc[s2, EXPECTED_STD].gt(0).all()
    assert expected.loc[~s2, EXPECTED].isna().all()


def test_expectation_is_causal(real_slice: pd.DataFrame, expected: pd.DataFrame, model) -> None:
    """Changing the second half of a parcel's series leaves the expectations of its first half alone."""
    pid = real_slice["parcel_id"].iloc[0]
    rows = real_slice.index[real_slice["parcel_id"] == pid]
    cut = real_slice.loc[rows, "days"].median()
    later = rows[real_slice.loc[rows, "days"] > cut]
    changed = real_slice.copy()
    changed.loc[later, ["B04", "B08", "VV", "VH"]] *= 0.5
    again = add_model_expectations(changed, model)
    earlier = rows[real_slice.loc[rows, "days"] <= cut]
    np.testing.assert_allclose(again.loc[earlier, EXPECTED], expected.loc[earlier, EXPECTED], rtol=0, atol=1e-6)
    assert not np.allclose(again.loc[later, EXPECTED].dropna(), expected.loc[later, EXPECTED].dropna())


def test_residual_after_reference_mowing_is_strongly_negative(expected: pd.DataFrame) -> None:
    """After a field-recorded mowing the observed NDVI lies far below what the model expected."""
    clear = expected[(expected["sensor"] == "S2") & (expected["clear"] >= 0.5)].copy()
    clear["z"] = (_ndvi(clear) - clear[EXPECTED]) / clear[EXPECTED_STD]
    events = pd.read_csv(REAL / "events.csv")
    events = events[events["parcel_id"].isin(clear["parcel_id"].unique())]
    after = []
    for pid, date in zip(events["parcel_id"], events["date"], strict=True):
        day = to_days(date)
        views = clear[(clear["parcel_id"] == pid) & (clear["days"] >= day) & (clear["days"] <= day + 15)]
        if len(views):
            after.append(views["z"].iloc[0])
    after = np.asarray(after)
    assert len(after) >= 8
    # A mowing is a large negative surprise for the model, an ordinary clear view is not. (On all
    # 116 plots: median z -2.5 after a mowing, 66 % below -2, against 3 % of all clear views.)
    assert np.median(after) < -1.0
    assert abs(clear["z"].median()) < 0.5
    assert (after < -2).mean() > 5 * (clear["z"] < -2).mean()


def test_events_carry_the_model_evidence(real_small, expected: pd.DataFrame, model) -> None:
    events, _ = MowingDetector().run_frame(expected, real_small[1])
    assert events
    annotated = annotate_events(events, expected, model.version)
    assert [e.key() for e in annotated] == [e.key() for e in events]
    with_model = [e for e in annotated if "model" in e.evidence]
    assert with_model
    for event in with_model:
        m = event.evidence["model"]
        assert m["version"] == model.version
        assert m["residual_z"] == pytest.approx(
            (m["observed_ndvi"] - m["expected_ndvi"]) / max(m["expected_ndvi_std"], 1e-3), abs=0.02)
        assert to_days(m["date"]) >= event.date
