"""Traffic-light semantics: as-of and window rules, red only on evidence, not analysable, reason codes."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from alerts.expectation import EXPECTED, EXPECTED_STD
from alerts.lights_rules import RulesError, load_rules, rules_from_dict
from alerts.series import normalise_observations, to_days
from alerts.traffic_light import LIGHT_COLUMNS, Light, Reason, assess_frame
from alerts.types import Event
from tests.alerts.conftest import T0, s1_row, s2_row

PARCELS = pd.DataFrame({"parcel_id": ["G"], "land_use": ["grassland"]})


def ev(pid: str, kind: str, day: str, confidence: float = 0.95, known_days: float = 5.0) -> Event:
    """An event dated ``day`` whose window ends ``known_days`` later (the view that confirmed it)."""
    d = to_days(day)
    return Event(parcel_id=pid, event=kind, date=d, window=(d - 1, d + known_days), confidence=confidence)


def day_of(iso: str) -> float:
    return float((pd.Timestamp(iso, tz="UTC") - T0).days)


def season(pid: str = "G", ndvi: float = 0.8, s2_every: float = 8.0, gap: tuple[str, str] | None = None,
           dip: tuple[str, float] | None = None, s1: bool = True) -> pd.DataFrame:
    """A 2024 grassland season with flat NDVI (clear S2 every ``s2_every`` days, S1 every 6 days)."""
    rows = []
    for day in np.arange(day_of("2024-03-01"), day_of("2024-10-31"), s2_every):
        if gap and day_of(gap[0]) <= day <= day_of(gap[1]):
            continue
        v = ndvi
        if dip and abs(day - day_of(dip[0])) < s2_every * 1.5:
            v = dip[1]
        rows.append(s2_row(pid, float(day), v))
    if s1:
        rows += [s1_row(pid, float(d), -16.0) for d in np.arange(day_of("2024-03-02"), day_of("2024-10-31"), 6.0)]
    return normalise_observations(pd.DataFrame(rows))


def one(obs, events, as_of, parcels=PARCELS, **kw) -> pd.Series:
    return assess_frame(obs, parcels, events, campaign=2024, as_of=as_of, **kw).iloc[0]


def codes(row: pd.Series) -> set[str]:
    return set(row.reason_codes.split(",")) if row.reason_codes else set()


def test_events_after_as_of_never_count_at_several_dates():
    obs = season()
    mown = [ev("G", "mowing", "2024-07-20")]  # confirmed by a view on 2024-07-25
    early = one(obs, mown, date(2024, 6, 1))
    assert early.light == Light.ORANGE
    assert codes(early) == {Reason.BEFORE_DEADLINE, Reason.EVENTS_AFTER_AS_OF_IGNORED}
    dated_not_known = one(obs, mown, date(2024, 7, 22))  # after the cut, before its confirmation
    assert dated_not_known.light == Light.ORANGE and Reason.EVENTS_AFTER_AS_OF_IGNORED in codes(dated_not_known)
    known = one(obs, mown, date(2024, 7, 25))
    assert known.light == Light.GREEN and codes(known) == {Reason.ACTIVITY_DETECTED}
    assert "mowing 2024-07-20" in known.events and "2024-07-20" in known.reasons
    later = one(obs, mown, date(2024, 10, 15))
    assert later.light == Light.GREEN


def test_events_outside_the_window_never_count():
    obs = season()
    october = [ev("G", "mowing", "2024-10-01")]  # after the grassland window (04-15..09-30)
    row = one(obs, october, date(2024, 10, 20))
    assert row.light == Light.RED  # flat NDVI, well observed: the October cut does not make it green
    assert Reason.EVENTS_OUTSIDE_WINDOW_IGNORED in codes(row) and Reason.NO_ACTIVITY in codes(row)
    last_year = one(obs, [ev("G", "mowing", "2023-07-01")], date(2024, 10, 20))
    assert last_year.light == Light.RED and Reason.EVENTS_OUTSIDE_WINDOW_IGNORED not in codes(last_year)


def test_red_only_with_coverage_stated_in_the_reasons():
    red = one(season(), [], date(2024, 10, 1))
    assert red.light == Light.RED and codes(red) == {Reason.NO_ACTIVITY, Reason.COVERAGE_OK}
    assert "clear S2 views (longest gap 8 days)" in red.reasons and "S1 views" in red.reasons
    assert red.markers == "no_activity" and red.n_clear_s2 >= 6
    # a 40-day hole in S2 in the window: no detection proves nothing, however many S1 views there are
    holed = one(season(gap=("2024-06-01", "2024-07-10")), [], date(2024, 10, 1))
    assert holed.light == Light.ORANGE and Reason.S2_GAP_TOO_LONG in codes(holed)
    assert "not observed well enough" in holed.reasons
    sparse = one(season(s2_every=40.0), [], date(2024, 10, 1))
    assert sparse.light == Light.ORANGE and Reason.TOO_FEW_CLEAR_S2 in codes(sparse)


def test_an_unconfirmed_drop_or_a_weak_event_is_orange_not_red_nor_green():
    dipped = one(season(dip=("2024-06-20", 0.5)), [], date(2024, 10, 1))
    assert dipped.light == Light.ORANGE and Reason.POSSIBLE_ACTIVITY in codes(dipped)
    assert "NDVI fell by 0.30" in dipped.reasons
    weak = one(season(), [ev("G", "mowing", "2024-07-20", confidence=0.4)], date(2024, 10, 1))
    assert weak.light == Light.ORANGE and codes(weak) == {Reason.WEAK_ACTIVITY}
    assert "confidence 0.400" in weak.reasons


def test_encoder_residuals_enter_red_and_green():
    rules = rules_from_dict({"rules": [{
        "land_uses": ["grassland"], "events": ["mowing"], "window": ["04-15", "09-30"],
        "min_green_confidence": 0.9, "encoder_green_confidence": 0.5, "max_green_residual_z": -2.0,
        "min_red_residual_z": -3.0,
    }]})
    obs = season()
    obs[EXPECTED] = np.where(obs.sensor == "S2", 0.8, np.nan)
    obs[EXPECTED_STD] = np.where(obs.sensor == "S2", 0.05, np.nan)
    assert one(obs, [], date(2024, 10, 1), rules=rules).light == Light.RED
    surprised = obs.copy()  # the encoder expected 1.1 (z = -6) around 20 June: an unexplained departure
    near = (surprised.sensor == "S2") & ((surprised.days - to_days("2024-06-20")).abs() < 10)
    surprised.loc[near, EXPECTED] = 1.1
    row = one(surprised, [], date(2024, 10, 1), rules=rules)
    assert row.light == Light.ORANGE and Reason.ENCODER_DEPARTURE in codes(row)
    # a 0.6-confidence event is green when the encoder saw the departure, orange when it did not
    cut = ev("G", "mowing", "2024-06-18", confidence=0.6)
    assert one(surprised, [cut], date(2024, 10, 1), rules=rules).light == Light.GREEN
    assert one(obs, [cut], date(2024, 10, 1), rules=rules).light == Light.ORANGE
    assert one(obs.drop(columns=[EXPECTED, EXPECTED_STD]), [cut], date(2024, 10, 1), rules=rules).light == Light.ORANGE


def test_not_analysable_and_contradicting_events():
    parcels = pd.DataFrame({"parcel_id": ["G", "E", "S", "V"],
                            "land_use": ["grassland", "grassland", "grassland", "vineyard"]})
    obs = pd.concat([season("G"), season("S"), season("V")], ignore_index=True)
    obs["pixel_count"] = np.where(obs.parcel_id == "S", 2, 50)
    obs.loc[(obs.parcel_id == "S") & (obs.sensor == "S1"), "pixel_count"] = 0
    solar = [ev("G", "solar_construction", "2024-05-10")]
    lights = assess_frame(obs, parcels, solar, campaign=2024, as_of=date(2024, 10, 1)).set_index("parcel_id")
    assert list(lights.columns) == [c for c in LIGHT_COLUMNS if c != "parcel_id"]
    assert lights.loc["G", "light"] == Light.RED and lights.loc["G", "reason_codes"] == Reason.LAND_USE_CHANGE
    assert lights.loc["E", "light"] == Light.NOT_ANALYSABLE and lights.loc["E", "reason_codes"] == Reason.NO_SERIES
    assert lights.loc["S", "light"] == Light.NOT_ANALYSABLE
    assert set(lights.loc["S", "reason_codes"].split(",")) == {Reason.TOO_FEW_S2_PIXELS, Reason.NO_S1_PIXEL}
    assert lights.loc["V", "light"] == Light.ORANGE and lights.loc["V", "reason_codes"] == Reason.LAND_USE_NOT_COVERED
    # the solar works are not known before their window ends: as of 2024-05-12 nothing contradicts yet
    before = assess_frame(obs, parcels, solar, campaign=2024, as_of=date(2024, 5, 12)).set_index("parcel_id")
    assert before.loc["G", "light"] == Light.ORANGE


def test_rules_are_configuration(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(
        'default = "strict"\n'
        '[schemes.strict]\nname = "strict"\n'
        '[[schemes.strict.rules]]\nland_uses = ["grassland"]\nevents = ["mowing"]\n'
        'window = ["05-01", "07-31"]\ndeadline = "07-15"\nmin_clear_s2 = 3\n'
    )
    cfg = load_rules(path)
    rule = cfg.scheme().rule_for("Grassland")
    assert rule.deadline_date(2024) == date(2024, 7, 15) and rule.window_dates(2024)[1] == date(2024, 7, 31)
    obs = season()
    row = one(obs, [], date(2024, 7, 20), rules=cfg)
    assert row.scheme == "strict" and row.light == Light.RED and row.window_end == "2024-07-31"
    # a mowing on 2024-08-10 lies outside this scheme's window, inside the default one's
    aug = [ev("G", "mowing", "2024-08-10")]
    assert one(obs, aug, date(2024, 9, 1), rules=cfg).light == Light.RED
    assert one(obs, aug, date(2024, 9, 1)).light == Light.GREEN
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rules]]\nland_uses = ["grassland"]\nevents = ["mowing"]\nwindow = ["02-30", "07-31"]\n')
    with pytest.raises(RulesError, match=r"bad.toml: schemes.default.rules.0.window: .*MM-DD"):
        load_rules(bad)
    bad.write_text("rules = [")
    with pytest.raises(RulesError, match="bad.toml: not valid TOML"):
        load_rules(bad)
    with pytest.raises(RulesError, match="not found"):
        load_rules(tmp_path / "missing.toml")
    with pytest.raises(RulesError, match="named by two rules"):
        rules_from_dict({"rules": [{"land_uses": ["a"], "events": ["mowing"], "window": ["04-01", "05-01"]}] * 2})
    with pytest.raises(RulesError, match="unknown traffic-light scheme 'x'"):
        load_rules().scheme("x")
    with pytest.raises(RulesError, match="max_red_dorp: Extra inputs are not permitted"):
        rules_from_dict({"rules": [{"land_uses": ["a"], "events": ["mowing"], "window": ["04-01", "05-01"],
                                    "max_red_dorp": 0.1}]})


def _grass_rule(**kw) -> dict:
    return {"name": "g", "rules": [{"land_uses": ["grassland"], "events": ["mowing"], "window": ["04-15", "09-30"],
                                    "min_clear_s2": 6, "max_s2_gap_days": 20.0, "max_s2_gap_with_s1_days": 20.0,
                                    "max_red_drop": 0.06, **kw}]}


def test_coverage_is_counted_in_the_coverage_window_only():
    # cloudy from 10 April to 20 May: the season's core (05-25..08-31) is densely observed, the event window not
    obs = season(s2_every=5.0, gap=("2024-04-10", "2024-05-20"))
    whole = one(obs, [], date(2024, 10, 15), rules=rules_from_dict(_grass_rule()))
    assert whole.light == Light.ORANGE and Reason.S2_GAP_TOO_LONG in codes(whole)
    core = one(obs, [], date(2024, 10, 15), rules=rules_from_dict(_grass_rule(coverage_window=["05-25", "08-31"])))
    assert core.light == Light.RED and codes(core) == {Reason.NO_ACTIVITY, Reason.COVERAGE_OK}
    assert "between 2024-05-25 and 2024-08-31" in core.reasons and core.max_s2_gap_days <= 5.0
    with pytest.raises(RulesError, match="coverage_window"):
        rules_from_dict(_grass_rule(coverage_window=["08-31", "05-25"]), "r.toml")


def test_a_drop_after_a_cloudy_spell_longer_than_the_envelope_still_counts():
    # flat 0.8, no clear view for 40 days (25 Jun .. 3 Aug), then two views at 0.5: a cut hidden in the
    # gap; the envelope of the last 25 days is empty there, so the drop is measured from the view before
    obs = season(s2_every=5.0, gap=("2024-06-26", "2024-07-30"), dip=("2024-08-05", 0.5))
    rule = _grass_rule(max_s2_gap_days=45.0, max_s2_gap_with_s1_days=45.0)
    row = one(obs, [], date(2024, 10, 15), rules=rules_from_dict(rule))
    assert row.max_s2_gap_days == 40.0
    assert row.light == Light.ORANGE and Reason.POSSIBLE_ACTIVITY in codes(row) and row.max_ndvi_drop > 0.25


def test_mowing_required_scheme_does_not_count_grazing():
    obs = season(s2_every=5.0)
    grazed = [ev("G", "grazing", "2024-07-01")]
    assert one(obs, grazed, date(2024, 10, 15)).light == Light.GREEN  # default: mowing or grazing
    row = one(obs, grazed, date(2024, 10, 15), rules=load_rules(), scheme="mowing-required")
    assert row.light == Light.RED and row.scheme == "mowing-required"  # flat, well observed, no mowing
    assert "between 2024-05-01 and 2024-09-15" in row.reasons  # its coverage window
    mown = [ev("G", "mowing", "2024-07-01")]
    assert one(obs, mown, date(2024, 10, 15), rules=load_rules(), scheme="mowing-required").light == Light.GREEN
    # the calibrated scheme (alerts.confidence) weighs the event with the series: a mowing needs its drop
    cut = season(s2_every=5.0, dip=("2024-07-05", 0.4))
    assert one(cut, mown, date(2024, 10, 15), rules=load_rules(), scheme="mowing-calibrated").light == Light.GREEN
    flat = one(obs, mown, date(2024, 10, 15), rules=load_rules(), scheme="mowing-calibrated")
    assert flat.light == Light.RED and "judged unlikely" in flat.reasons
