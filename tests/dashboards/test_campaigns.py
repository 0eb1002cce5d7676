"""The dashboard's series and lights answers per campaign: a parcel id reused by two campaigns (two
outlines) shows one campaign's series at a time, the latest by default, and says which."""

from __future__ import annotations

from urllib.parse import quote

import pandas as pd

from alerts.series import normalise_observations
from dashboards.parcels import Parcels
from dashboards.series import ALL_CAMPAIGNS, SeriesReader
from tests.alerts.conftest import mowing_series
from tests.dashboards.conftest import auth
from tests.monitor.helpers import TILE, write_slots


def _two_campaigns() -> pd.DataFrame:
    frames = []
    for year, shift in ((2025, 366), (2026, 731)):
        s = mowing_series("A", cuts=(), seed=year)
        frames.append(s.assign(time=s.time + pd.Timedelta(days=shift), campaign=year).drop(columns="days"))
    return normalise_observations(pd.concat(frames, ignore_index=True))


def test_a_parcels_series_is_one_campaigns_the_latest_by_default(tmp_path):
    write_slots(tmp_path / "series", _two_campaigns())
    reader = SeriesReader(tmp_path / "series", with_model=False)
    latest = reader.series(TILE, "A", fill=False, expected=False)
    assert (latest["campaign"], latest["campaigns"]) == (2026, [2025, 2026])
    assert {p["time"][:4] for p in latest["s2"] + latest["s1"]} == {"2026"}
    older = reader.series(TILE, "A", fill=False, expected=False, campaign=2025)
    assert older["campaign"] == 2025 and {p["time"][:4] for p in older["s2"] + older["s1"]} == {"2025"}
    history = reader.series(TILE, "A", fill=False, expected=False, campaign=ALL_CAMPAIGNS)
    assert history["campaign"] == "all" and len(history["s2"]) == len(latest["s2"]) + len(older["s2"])
    for row in history["s2"] + history["s1"]:  # each row says whose outline it was reduced with
        assert row["campaign"] == int(row["time"][:4])
    normalised = reader.series(TILE, "A", fill=True, expected=False, campaign=ALL_CAMPAIGNS)  # the filler's path
    assert [r["campaign"] for r in normalised["s2"]] == [r["campaign"] for r in history["s2"]]
    import pytest

    from dashboards.errors import NotFoundError

    with pytest.raises(NotFoundError, match=r"campaign 2024 \(its campaigns: 2025, 2026\)"):
        reader.series(TILE, "A", fill=False, expected=False, campaign=2024)


def test_lights_per_parcel_and_campaign(tmp_path):
    pd.DataFrame({"parcel_id": ["A", "A", "B"], "tile_id": [TILE] * 3, "campaign": [2026, 2025, 2025],
                  "light": ["green", "red", "orange"], "reasons": ["", "", ""], "reason_codes": ["", "", ""]}
                 ).to_csv(tmp_path / "lights.csv", index=False)
    parcels = Parcels(None, tmp_path / "lights.csv")
    latest = parcels.lights()
    assert latest.loc["A", "light"] == "green" and str(latest.loc["A", "campaign"]) == "2026"
    assert latest.loc["B", "light"] == "orange"  # B's latest campaign is 2025
    assert parcels.lights(2025).loc["A", "light"] == "red"
    assert list(parcels.lights(2026).index) == ["A"] and parcels.campaigns() == [2025, 2026]


def test_the_routes_take_a_campaign(client, site):
    from alerts.store import open_store

    with open_store(site.config.alerts_url) as store:
        pid = store.query(limit=1, type="mowing")[0].parcel_id  # a parcel with a series
    url = f"/api/parcels/{quote(pid, safe='')}/series"
    r = client.get(url, params={"fill": "false", "expected": "false"}, headers=auth(site, "viewer"))
    assert r.status_code == 200 and r.json()["campaign"] == 2024 and r.json()["campaigns"] == [2024]
    assert client.get(url, params={"campaign": 2019}, headers=auth(site, "viewer")).status_code == 404
    every = client.get(url, params={"fill": "false", "expected": "false", "all_campaigns": "true"},
                       headers=auth(site, "viewer")).json()
    assert every["campaign"] == "all" and len(every["s2"]) == len(r.json()["s2"])  # one campaign here
    assert {row["campaign"] for row in every["s2"]} == {2024}
    assert client.get(url, params={"campaign": "x"}, headers=auth(site, "viewer")).status_code == 422
    lights = client.get("/api/lights", params={"campaign": 2024}, headers=auth(site, "viewer")).json()
    assert lights["campaign"] == 2024 and lights["campaigns"] == [2024] and lights["count"] > 0
    assert all(row["campaign"] == "2024" for row in lights["data"])
    none = client.get("/api/lights", params={"campaign": 2020}, headers=auth(site, "viewer")).json()
    assert none["count"] == 0
