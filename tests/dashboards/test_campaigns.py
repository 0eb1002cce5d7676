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
    parcel = f"/api/parcels/{quote(pid, safe='')}"
    mine = next(row for row in lights["data"] if row["parcel_id"] == pid)
    of_2024 = client.get(parcel, params={"campaign": 2024}, headers=auth(site, "viewer")).json()["properties"]
    assert (of_2024["light"], of_2024["campaign"]) == (mine["light"], "2024")
    assert client.get(parcel, params={"campaign": 2020}, headers=auth(site, "viewer")).json()["properties"]["light"] is None


def _stored_alerts(site):
    from alerts.store import open_store

    with open_store(site.config.alerts_url) as store:
        return store.query(limit=1000)


def _ids(answer: dict) -> set[str]:
    return {a["alert_id"] for a in answer["data"]}


def test_the_alerts_of_a_campaign(client, site):
    """``/api/alerts?campaign=`` keeps the alerts whose event date lies in the campaign (by default the
    calendar year), narrowed further by date_from / date_to."""
    every = _stored_alerts(site)
    years = {a.event_date.year for a in every}
    for year in (*sorted(years), min(years) - 1):
        got = client.get("/api/alerts", params={"campaign": year, "page_size": 500}, headers=auth(site, "admin"))
        assert got.status_code == 200 and _ids(got.json()) == {a.alert_id for a in every if a.event_date.year == year}
    year = max(years)
    mid = sorted(a.event_date for a in every)[len(every) // 2]
    got = client.get("/api/alerts", params={"campaign": year, "date_from": mid.isoformat(), "page_size": 500},
                     headers=auth(site, "admin")).json()
    assert _ids(got) == {a.alert_id for a in every if a.event_date.year == year and a.event_date >= mid}
    assert got["count"] == len(_ids(got))
    outside = client.get("/api/alerts", params={"campaign": year, "date_to": f"{year - 1}-12-31"},
                         headers=auth(site, "admin")).json()
    assert outside["count"] == 0 and outside["data"] == []
    assert client.get("/api/alerts", params={"campaign": 1800}, headers=auth(site, "admin")).status_code == 422


def test_a_configured_calendar_decides_a_campaigns_alerts_and_the_series_alerts(site):
    """With ``[[campaigns.windows]]`` a campaign's alerts are those of its window, in the alerts list and
    in a parcel's series (which says its window); a campaign outside the windows is a 422."""
    from dataclasses import replace
    from datetime import timedelta

    from fastapi.testclient import TestClient

    from dashboards import create_app

    every = _stored_alerts(site)
    dates: dict[str, set] = {}
    for a in every:
        dates.setdefault(a.parcel_id, set()).add(a.event_date)
    pid = next(p for p, d in dates.items() if len(d) >= 2)  # a parcel whose alerts the split separates
    split = max(dates[pid])
    year = split.year
    windows = ((year, f"{year - 1}-09-01", (split - timedelta(days=1)).isoformat()),
               (year + 1, split.isoformat(), f"{year + 1}-08-31"))
    app = create_app(replace(site.config, campaign_windows=windows), with_model=False)
    with TestClient(app) as c:
        for campaign, keep in ((year, lambda d: d < split), (year + 1, lambda d: d >= split)):
            got = c.get("/api/alerts", params={"campaign": campaign, "page_size": 500}, headers=auth(site, "admin"))
            assert _ids(got.json()) == {a.alert_id for a in every if keep(a.event_date)}
        refused = c.get("/api/alerts", params={"campaign": year - 1}, headers=auth(site, "admin"))
        assert refused.status_code == 422 and "not configured" in refused.json()["detail"]
        url = f"/api/parcels/{quote(pid, safe='')}/series"
        params = {"fill": "false", "expected": "false"}
        series = c.get(url, params=params, headers=auth(site, "viewer")).json()  # its rows are of `year`
        assert series["campaign"] == year and series["campaign_window"] == list(windows[0][1:])
        assert {a["alert_id"] for a in series["alerts"]} == {
            a.alert_id for a in every if a.parcel_id == pid and a.event_date < split}
        history = c.get(url, params={**params, "all_campaigns": "true"}, headers=auth(site, "viewer")).json()
        assert "campaign_window" not in history
        assert {a["alert_id"] for a in history["alerts"]} == {a.alert_id for a in every if a.parcel_id == pid}


def test_the_served_config_carries_the_campaign_windows(tmp_path):
    """`sitsmon serve` hands [[campaigns.windows]] to the dashboard, through the JSON its workers read."""
    import json
    from datetime import date

    import pytest

    from contracts.campaigns import CampaignError
    from dashboards.config import DashboardConfig
    from dashboards.main import config_to_env
    from sitsmon.commands.serve import dashboard_config
    from sitsmon.settings import Settings

    settings = Settings(campaigns={"windows": [{"campaign": 2026, "start": "2025-10-01", "end": "2026-09-30"}]})
    config = dashboard_config(settings, tmp_path)
    assert config.calendar().window(2026) == (date(2025, 10, 1), date(2026, 9, 30))
    spec = json.loads(config_to_env(config, with_model=False))["config"]
    assert DashboardConfig(**spec).calendar() == config.calendar()
    assert dashboard_config(Settings(), tmp_path).calendar().window(2026) == (date(2026, 1, 1), date(2026, 12, 31))
    with pytest.raises(CampaignError, match="overlap"):
        DashboardConfig.from_data_dir(tmp_path, campaign_windows=((2025, "2024-10-01", "2025-09-30"),
                                                                  (2026, "2025-09-01", "2026-08-31")))
