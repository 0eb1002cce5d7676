"""The monitor across a campaign boundary, and lights per (parcel, campaign).

Parcel A is redrawn for 2026, B keeps its outline, C is new. Streamed over both campaigns, A's 2026
state must be the state of a monitor that never saw 2025 (another run, on the 2026 rows alone),
while B carries its 2025 history on. The lights file holds one light per parcel and campaign; a
campaign's light is judged on that campaign's rows only (rows of another campaign's outline on the
same days would change it), through ``assess_frame`` and through ``sitsmon detect --lights``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from alerts.series import normalise_observations
from alerts.traffic_light import assess_frame
from ingest.parcel_campaign import import_campaign_layer
from monitor.config import MonitorConfig
from monitor.service import Monitor, parse_event
from tests.alerts.conftest import mowing_series
from tests.monitor.helpers import TILE, write_slots

X0, Y0 = 500000.0, 5300000.0
LAYERS = {
    2025: {"A": shapely.box(X0, Y0, X0 + 100, Y0 + 100), "B": shapely.box(X0 + 300, Y0, X0 + 400, Y0 + 100)},
    2026: {"A": shapely.box(X0 + 40, Y0 + 40, X0 + 200, Y0 + 160), "B": shapely.box(X0 + 300, Y0, X0 + 400, Y0 + 100),
           "C": shapely.box(X0 + 600, Y0, X0 + 700, Y0 + 100)},
}
SHIFT = {2025: 366, 2026: 731}  # days from the 2024 series of the fixtures


def _season(year: int, pids, seed: int) -> pd.DataFrame:
    frames = [mowing_series(p, cuts=(150.0,) if year == 2025 else (170.0,), seed=seed + i) for i, p in enumerate(pids)]
    obs = pd.concat(frames, ignore_index=True)
    obs = obs[(obs.days - obs.days.min() >= 80) & (obs.days - obs.days.min() <= 150)]  # May to July: enough here
    obs = obs.assign(time=obs.time + pd.Timedelta(days=SHIFT[year]), campaign=year).drop(columns="days")
    return normalise_observations(obs)


def _import_layers(root: Path, years) -> None:
    for year in years:
        gdf = gpd.GeoDataFrame({"parcel_id": list(LAYERS[year]), "land_use": ["grassland"] * len(LAYERS[year])},
                               geometry=list(LAYERS[year].values()), crs="EPSG:32633")
        gdf.to_parquet(root / f"lpis-{year}.parquet")
        import_campaign_layer(root / f"lpis-{year}.parquet", year, root / "parcels")


def _run(root: Path, obs: pd.DataFrame, years, model) -> Monitor:
    root.mkdir(parents=True)
    _import_layers(root, years)
    monitor = Monitor(MonitorConfig(data_dir=root, series_dir=root / "series", detectors=("mowing",)), model=model)
    for value in write_slots(root / "series", obs):
        monitor.fold(parse_event(value, root / "series"))
    return monitor


def _row(monitor: Monitor, pid: str) -> dict[str, np.ndarray]:
    """Parcel ``pid``'s encoder tensors and mowing-detector arrays in the monitor's tile state."""
    state = monitor.tiles[TILE].state
    i = int(state.parcel_ids.get_loc(pid))
    out = {f"enc{k}": t[i].detach().cpu().numpy() for k, t in enumerate(state.encoder.tensors())}
    det = monitor.detectors[0]
    dump = det.dump(state.detectors[det.event_type])
    rank = int(np.cumsum(np.asarray(dump["handled"], bool))[i]) - 1
    out.update({f"det_{k}": np.asarray(v)[rank] for k, v in dump.items()
                if k not in ("state_version", "parcel_id", "land_use", "handled")})
    return out


@pytest.fixture(scope="module")
def seasons():
    return _season(2025, ["A", "B"], seed=1), _season(2026, ["A", "B", "C"], seed=11)


def test_a_redrawn_parcel_starts_afresh_and_an_unchanged_one_carries_on(tmp_path, seasons, model):
    y25, y26 = seasons
    both = _run(tmp_path / "both", pd.concat([y25, y26], ignore_index=True), (2025, 2026), model)
    fresh = _run(tmp_path / "only-2026", y26, (2026,), model)
    try:
        state = both.tiles[TILE].state
        assert state.campaign == 2026 and list(state.parcel_ids) == ["A", "B", "C"]
        count = dict(zip(state.parcel_ids, state.encoder.count.cpu().numpy().ravel().tolist(), strict=True))
        assert count["A"] == (y26.parcel_id == "A").sum()  # nothing of its 2025 outline folded in
        assert count["B"] == (y25.parcel_id == "B").sum() + (y26.parcel_id == "B").sum()  # its history goes on
        a_both, a_fresh = _row(both, "A"), _row(fresh, "A")
        assert a_both.keys() == a_fresh.keys()
        for name in a_both:
            np.testing.assert_allclose(a_both[name], a_fresh[name], rtol=1e-5, atol=1e-6, err_msg=name)
        b_both, b_fresh = _row(both, "B"), _row(fresh, "B")
        assert not np.allclose(b_both["enc0"], b_fresh["enc0"])  # B's 2025 views are in its state
        # the state keeps its campaign through a save and a load
        both.save_all()
        reloaded = both.tiles[TILE].store.load(both.versions, both.detectors)
        assert reloaded.campaign == 2026

        lights = both.update_lights([TILE])
        assert set(zip(lights.parcel_id, lights.campaign, strict=True)) == {
            ("A", 2025), ("B", 2025), ("A", 2026), ("B", 2026), ("C", 2026)}
        on_file = pd.read_csv(tmp_path / "both" / "traffic-lights.csv", dtype={"parcel_id": str})
        assert len(on_file) == 5 and set(on_file.campaign) == {2025, 2026}
        again = both.update_lights([TILE])  # the latest campaign recomputed, 2025 kept: still one row each
        assert len(again) == 5
    finally:
        both.close()
        fresh.close()


def _other_outline(year_rows: pd.DataFrame, campaign: int) -> pd.DataFrame:
    """The parcel's rows as reduced with another campaign's outline: every view, a day later."""
    return year_rows.assign(time=year_rows["time"] + pd.Timedelta(days=1), campaign=campaign).drop(columns="days")


def test_a_campaigns_light_uses_only_its_own_rows(tmp_path):
    """Sparse 2025 rows of a grassland (S2 every 25 days: too long a gap for a red) beside dense rows of
    the 2026 outline over the same months (what ``ingest --campaign 2026`` on 2025 acquisitions writes):
    the 2025 light is judged on the 2025 rows alone."""
    season = mowing_series("A", cuts=(), seed=3)
    season = normalise_observations(season.assign(time=season.time + pd.Timedelta(days=366)).drop(columns="days"))
    s2 = season[season.sensor == "S2"]
    own = normalise_observations(pd.concat([s2.iloc[::5], season[season.sensor == "S1"]]).drop(columns="days"))
    tagged = normalise_observations(pd.concat([own.drop(columns="days").assign(campaign=2025),
                                               _other_outline(season, 2026)], ignore_index=True))
    parcels = pd.DataFrame({"parcel_id": ["A"], "land_use": ["grassland"]})
    as_of = date(2025, 10, 15)
    alone = assess_frame(own, parcels, [], campaign=2025, as_of=as_of)
    keyed = assess_frame(tagged, parcels, [], campaign=2025, as_of=as_of)
    mixed = assess_frame(tagged.drop(columns="campaign"), parcels, [], campaign=2025, as_of=as_of)
    assert (keyed.light[0], keyed.reason_codes[0]) == (alone.light[0], alone.reason_codes[0])
    assert (mixed.light[0], mixed.reason_codes[0]) != (alone.light[0], alone.reason_codes[0])  # the test can fail

    from sitsmon.cli import main

    tagged.drop(columns="days").to_csv(tmp_path / "obs.csv", index=False)
    parcels.to_csv(tmp_path / "parcels.csv", index=False)
    assert main(["detect", "--observations", str(tmp_path / "obs.csv"), "--parcels", str(tmp_path / "parcels.csv"),
                 "--out", str(tmp_path / "events.csv"), "--detectors", "mowing", "--lights",
                 str(tmp_path / "lights.csv"), "--campaign", "2025", "--as-of", "2025-10-15"]) == 0
    written = pd.read_csv(tmp_path / "lights.csv", dtype={"parcel_id": str}, keep_default_na=False)
    assert list(written.campaign) == [2025] and written.light[0] == alone.light[0]
    assert main(["detect", "--observations", str(tmp_path / "obs.csv"), "--parcels", str(tmp_path / "parcels.csv"),
                 "--out", str(tmp_path / "events2.csv"), "--lights", str(tmp_path / "lights2.csv"),
                 "--campaign", "2024"]) == 1
