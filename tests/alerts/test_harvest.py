"""Harvest from S2 alone (green and dry harvests), S1 alone, and S2 dated by S1; synthetic truth."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest

from alerts.detectors import HarvestDetector
from alerts.detectors.harvest import HarvestParams
from alerts.detectors.state_io import state_from_dict, state_to_dict
from alerts.evaluation_synthetic import evaluate_synthetic
from alerts.series import iter_observations, normalise_observations, to_days
from tests.alerts.conftest import s1_row, s2_row


def crop_row(pid: str, day: float, ndvi: float, ndti: float) -> dict:
    """An S2 row with the given NDVI (B04/B08) and NDTI (B11/B12)."""
    row = s2_row(pid, day, ndvi)
    total = 0.4
    row["B11"], row["B12"] = total * (1 + ndti) / 2, total * (1 - ndti) / 2
    return row


def crop(kind: str, harvest: float, every: float = 10.0, s1: bool = False, seed: int = 0) -> pd.DataFrame:
    """A crop season (days since 2024-01-01): green (NDVI 0.8, NDTI 0.3); ``dry``: senescence from
    harvest − 35 to NDVI 0.3 / NDTI 0.15 (standing straw), then stubble (0.22 / 0.10) at the harvest;
    ``green``: cut green at the harvest; ``never``: senesces, never harvested."""
    rng = np.random.default_rng(seed)
    rows = []
    for day in np.arange(100.0, 300.0, every):
        if kind == "green":
            n, d = (0.8, 0.3) if day < harvest else (0.24, 0.10)
        else:
            f = float(np.clip((day - (harvest - 35)) / 25, 0, 1))
            n, d = 0.8 - 0.5 * f, 0.3 - 0.15 * f
            if kind == "dry" and day >= harvest:
                n, d = 0.22, 0.10
        rows.append(crop_row("C", float(day), n + rng.normal(0, 0.01), d + rng.normal(0, 0.003)))
    if s1:
        for i, day in enumerate(np.arange(101.0, 300.0, 3.0)):
            rows.append(s1_row("C", float(day), (-17.0 if day < harvest else -22.0) + rng.normal(0, 0.3),
                               orbit=73 if i % 2 else 124))
    return normalise_observations(pd.DataFrame(rows))


def _days(events) -> list[float]:
    return [e.date - to_days("2024-01-01") for e in events]


@pytest.mark.parametrize("kind", ["green", "dry"])
@pytest.mark.parametrize("confirm", [True, False])
def test_harvest_from_s2_alone(kind, confirm):
    """A strong drop is emitted on its own view by default; with ``unconfirmed_factor=inf`` the next
    view confirms it."""
    params = HarvestParams(unconfirmed_factor=math.inf) if confirm else HarvestParams()
    lu = "maize" if kind == "green" else "cereal"
    events = HarvestDetector(params).run("C", lu, iter_observations(crop(kind, 204.0)))
    assert len(events) == 1 and events[0].sensor == "S2"
    assert abs(_days(events)[0] - 204.0) <= 5.0  # the midpoint of a 10-day interval around it
    assert events[0].evidence["harvest_kind"] == kind
    if confirm:
        assert events[0].evidence["confirmed_day"] > events[0].window[1]  # confirmed by the next view
    else:
        assert events[0].evidence["confirmed_day"] == events[0].window[1]


def _views(*rows: tuple[float, float, float]) -> pd.DataFrame:
    return normalise_observations(pd.DataFrame([crop_row("C", d, n, t) for d, n, t in rows]))


STRAW = [(170.0, 0.30, 0.15), (175.0, 0.30, 0.15), (180.0, 0.30, 0.15)]


def test_a_new_crop_after_a_cloudy_spell_confirms_the_harvest():
    """Standing straw, stubble on day 185 (a drop too weak to stand alone), then the next clear view
    30 days later shows a catch crop: greener than the straw, so not the crop coming back."""
    catch = _views(*STRAW, (185.0, 0.25, 0.129), (215.0, 0.55, 0.19))
    events = HarvestDetector().run("C", "cereal", iter_observations(catch))
    assert len(events) == 1 and abs(_days(events)[0] - 182.5) < 0.01
    assert events[0].evidence["confirmed_day"] == to_days("2024-01-01") + 215.0


@pytest.mark.parametrize("back_after", [5.0, 30.0])
def test_a_weak_dip_that_comes_back_is_not_a_harvest(back_after):
    """The same weak dip followed by the straw again (5 or 30 days later), or by a green view only 5
    days later (too soon for a sown crop): no harvest."""
    straw_again = _views(*STRAW, (185.0, 0.25, 0.129), (185.0 + back_after, 0.30, 0.15))
    green_too_soon = _views(*STRAW, (185.0, 0.25, 0.129), (190.0, 0.55, 0.19))
    assert HarvestDetector().run("C", "cereal", iter_observations(straw_again)) == []
    assert HarvestDetector().run("C", "cereal", iter_observations(green_too_soon)) == []


def test_senescence_without_harvest_is_not_a_harvest():
    assert HarvestDetector().run("C", "cereal", iter_observations(crop("never", 204.0))) == []


def test_s2_harvest_dated_by_s1_inside_a_long_interval():
    df = crop("dry", 203.0, every=20.0, s1=True)
    s2_only = HarvestDetector().run("C", "cereal", iter_observations(df[df.sensor == "S2"]))
    both = HarvestDetector().run("C", "cereal", iter_observations(df))
    assert len(s2_only) == 1 and len(both) == 1
    assert abs(_days(both)[0] - 203.0) <= 3.0 < abs(_days(s2_only)[0] - 203.0)
    assert both[0].sensor in {"S1", "S2+S1"}


def test_harvest_state_round_trip_mid_season():
    df = crop("dry", 204.0, s1=True)
    det = HarvestDetector()
    state, events = det.init_state("C", "cereal"), []
    obs = list(iter_observations(df))
    for i, o in enumerate(obs):
        state, new = det.update(state, o)
        events.extend(new)
        if i == len(obs) // 2:
            state = state_from_dict(state_to_dict(state))
    assert events == det.run("C", "cereal", obs) and len(events) == 1


def test_harvest_f1_on_synthetic_truth_by_sensor():
    """The demo's archive config (seed 42, clear summer): S2 alone, S1 alone and both."""
    from ingest.synth import SynthConfig, simulate_parcel_series

    cfg = SynthConfig(seed=42, n_tiles=1, tile_size_px=512, parcels_per_tile=200, start=date(2024, 3, 1),
                      end=date(2024, 10, 31))
    parcels, obs, events = simulate_parcel_series(cfg)
    parcels = pd.DataFrame(parcels[["parcel_id", "land_use"]]).astype({"parcel_id": str})
    r = evaluate_synthetic("harvest", normalise_observations(obs), parcels, events, tolerance_days=12.0)
    assert r["reference_events"] > 50
    assert r["all_sensors"]["f1"] >= 0.9
    assert r["s2_only"]["f1"] >= 0.85
    assert r["s1_only"]["f1"] >= 0.85
