from __future__ import annotations

import logging

import pandas as pd
import pytest

from alerts.errors import SeriesError, UnknownParcelError
from alerts.series import (
    add_regional_reference,
    check_known_parcels,
    normalise_observations,
    read_observations,
)
from tests.alerts.conftest import s1_row, s2_row


def test_duplicate_rows_keep_the_last_and_are_logged(caplog):
    rows = [s2_row("A", 1.0, 0.5), s2_row("A", 1.0, 0.7), s2_row("A", 2.0, 0.6)]
    with caplog.at_level(logging.WARNING, logger="alerts.series"):
        df = normalise_observations(pd.DataFrame(rows))
    assert len(df) == 2
    assert "1 duplicate" in caplog.text
    ndvi = (df.B08 - df.B04) / (df.B08 + df.B04)
    assert ndvi.iloc[0] == pytest.approx(0.7)


def test_rows_are_sorted_and_days_computed():
    df = normalise_observations(pd.DataFrame([s2_row("A", 5.0, 0.5), s1_row("A", 2.0, -15.0)]))
    assert list(df.sensor) == ["S1", "S2"]
    assert df.days.diff().iloc[1] == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.drop(columns=["sensor"]), "missing column"),
        (lambda d: d.assign(time="yesterday"), "unparseable time"),
        (lambda d: d.assign(sensor="L8"), "sensor must be S2 or S1"),
    ],
)
def test_malformed_tables_are_refused(change, message):
    df = pd.DataFrame([s2_row("A", 1.0, 0.5)])
    with pytest.raises(SeriesError, match=message):
        normalise_observations(change(df))


def test_files_and_parcels(tmp_path):
    with pytest.raises(SeriesError, match="file not found"):
        read_observations(tmp_path / "missing.csv")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(SeriesError, match="cannot read"):
        read_observations(tmp_path / "bad.parquet")
    df = normalise_observations(pd.DataFrame([s2_row("A", 1.0, 0.5)]))
    with pytest.raises(UnknownParcelError, match="'A'"):
        check_known_parcels(df, pd.DataFrame({"parcel_id": ["B"], "land_use": ["grassland"]}))


def test_regional_reference_needs_enough_parcels():
    rows = [s1_row(f"P{i}", 1.0, -15.0 - i) for i in range(5)] + [s1_row("P0", 4.0, -15.0)]
    df = add_regional_reference(normalise_observations(pd.DataFrame(rows)))
    first = df[df.days == df.days.min()]
    assert first.VH_ref.tolist() == pytest.approx([-17.0] * 5)
    assert df[df.days == df.days.max()].VH_ref.isna().all()
