"""The monitor's traffic lights: per (parcel, campaign), from the series store and the stored alerts.

Each campaign is judged from its own rows and its own parcel layer (so "not analysable" uses that
year's pixel counts), as of its last observation, at most the campaign's last day. A tile's latest
campaign is recomputed every time, an older one when the file has no lights of it yet; the file
(``traffic-lights.csv``, shared by the workers of a group, replaced atomically) keeps the other
campaigns' rows.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import pandas as pd

from alerts.series import to_days
from alerts.types import Alert, Event


def event_from_alert(alert: Alert) -> Event:
    """The detector event behind a stored alert (what the traffic light reads)."""
    def days(d) -> float:
        return to_days(pd.Timestamp(d))

    lo, hi, date = days(alert.window_start), days(alert.window_end), days(alert.event_date)
    return Event(alert.parcel_id, alert.type, min(max(date, lo), hi), (lo, hi), float(alert.confidence),
                 dict(alert.evidence), str(alert.evidence.get("sensor", "S2")))


def update_lights(monitor, tiles: Iterable[str]) -> pd.DataFrame | None:
    """Recompute the traffic lights of ``tiles`` from the series store and the stored alerts, per
    (parcel, campaign): each campaign from its own rows and its own parcel layer, as of its last
    observation (at most the campaign's last day). A tile's latest campaign is recomputed, and every
    campaign of its series without lights yet; the file keeps the other campaigns' lights."""
    from alerts.series import normalise_observations
    from alerts.store import AlertQuery
    from alerts.traffic_light import assess_frame
    from ingest.series import read_series

    path = monitor.config.lights_path
    old = pd.read_csv(path, dtype={"parcel_id": str}) if path.exists() else None
    if old is not None and "tile_id" in old.columns and "campaign" in old.columns:
        have = set(zip(old["tile_id"].astype(str), pd.to_numeric(old["campaign"], errors="coerce"), strict=True))
    else:
        have = set()
    frames = []
    for tile_id in sorted(set(tiles)):
        table = read_series(monitor.config.series_dir, tile_id, calendar=monitor.config.calendar)
        if table.num_rows == 0:
            continue
        obs_all = normalise_observations(table.to_pandas(), source=f"series {tile_id}")
        campaigns = sorted(int(c) for c in obs_all["campaign"].dropna().unique())
        todo = [c for c in campaigns if c == campaigns[-1] or (tile_id, c) not in have]
        alerts = monitor.store.query(AlertQuery(tile_id=tile_id, limit=100_000))
        events = [event_from_alert(a) for a in alerts if a.model_version == monitor.alert_model_version]
        for campaign in todo:
            obs = obs_all[obs_all["campaign"] == campaign]
            end = monitor.config.calendar.window(campaign)[1]
            as_of = min(obs["time"].max().date(), end)
            lights = assess_frame(obs, monitor.parcels_of(tile_id, campaign), events, campaign=campaign, as_of=as_of)
            lights.insert(1, "tile_id", tile_id)
            frames.append(lights)
    if not frames:
        return None
    fresh = pd.concat(frames, ignore_index=True)
    if old is not None and "tile_id" in old.columns:
        done = set(zip(fresh["tile_id"].astype(str), fresh["campaign"].astype(int), strict=True))
        if "campaign" in old.columns:
            key = zip(old["tile_id"].astype(str), pd.to_numeric(old["campaign"], errors="coerce"), strict=True)
            old = old[[k not in done for k in key]]
        else:  # a file of before campaigns: its tiles' lights are replaced
            old = old[~old["tile_id"].astype(str).isin(set(fresh["tile_id"]))]
        fresh = pd.concat([old, fresh], ignore_index=True)
    fresh = fresh.sort_values(["tile_id", "campaign", "parcel_id"], kind="stable", ignore_index=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # workers of one group share the file
    fresh.to_csv(tmp, index=False)
    tmp.replace(path)
    return fresh
