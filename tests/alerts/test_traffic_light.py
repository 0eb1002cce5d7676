from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from alerts.series import to_days
from alerts.traffic_light import Light, TrafficLightRules, assess, assess_frame
from alerts.types import Event


def ev(pid: str, kind: str, day: str) -> Event:
    d = to_days(day)
    return Event(parcel_id=pid, event=kind, date=d, window=(d - 1, d), confidence=0.9)


def test_grassland_lights():
    mown = assess(
        "G",
        "grassland",
        2024,
        [ev("G", "mowing", "2024-06-10")],
        as_of=date(2024, 6, 20),
        n_clear_s2=10,
        n_s1=20,
    )
    assert mown.light is Light.GREEN and "2024-06-10" in mown.reasons[0]
    early = assess("G", "grassland", 2024, [], as_of=date(2024, 6, 20), n_clear_s2=10, n_s1=20)
    assert early.light is Light.ORANGE and "deadline 2024-08-31" in early.reasons[0]
    late = assess(
        "G",
        "grassland",
        2024,
        [ev("G", "mowing", "2023-06-10")],
        as_of=date(2024, 9, 1),
        n_clear_s2=10,
        n_s1=20,
    )
    assert late.light is Light.RED and late.markers == ("no_activity",)
    blind = assess("G", "grassland", 2024, [], as_of=date(2024, 9, 1), n_clear_s2=2, n_s1=3)
    assert blind.light is Light.ORANGE and "not enough" in blind.reasons[0]


def test_crop_and_solar_and_unknown_land_use():
    rules = TrafficLightRules(harvest_deadlines={"cereal": (9, 1)})
    harvested = assess(
        "C",
        "cereal",
        2024,
        [ev("C", "harvest", "2024-07-20")],
        as_of=date(2024, 9, 5),
        n_clear_s2=3,
        n_s1=40,
        rules=rules,
    )
    assert harvested.light is Light.GREEN
    never = assess("C", "cereal", 2024, [], as_of=date(2024, 9, 5), n_clear_s2=3, n_s1=40, rules=rules)
    assert never.light is Light.RED and "never harvested by 2024-09-01" in never.reasons[0]
    solar = assess(
        "C",
        "cereal",
        2024,
        [ev("C", "harvest", "2024-07-20"), ev("C", "solar_construction", "2024-08-01")],
        as_of=date(2024, 9, 5),
        n_clear_s2=3,
        n_s1=40,
    )
    assert solar.light is Light.RED and "solar farm" in solar.reasons[0]
    other = assess("O", "vineyard", 2024, [], as_of=date(2024, 9, 5), n_clear_s2=30, n_s1=40)
    assert other.light is Light.ORANGE and "not covered" in other.reasons[0]
    with pytest.raises(ValueError, match="invalid month/day"):
        TrafficLightRules(grassland_deadline=(2, 30))


def test_assess_frame_counts_data_per_parcel():
    obs = pd.DataFrame(
        {
            "parcel_id": ["G"] * 8 + ["H"],
            "time": pd.to_datetime(
                [f"2024-0{m}-10" for m in range(3, 9)] + ["2024-08-20", "2024-10-01", "2024-05-01"], utc=True
            ),
            "sensor": ["S2"] * 9,
            "clear": [1] * 9,
        }
    )
    parcels = pd.DataFrame({"parcel_id": ["G", "H"], "land_use": ["grassland", "grassland"]})
    lights = assess_frame(obs, parcels, [], campaign=2024, as_of=date(2024, 9, 1))
    assert list(lights.light) == ["red", "orange"]
    assert lights.markers.iloc[0] == "no_activity"
