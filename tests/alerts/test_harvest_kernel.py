"""The harvest kernel equals its Python reference on the generator's cloudy world, with the shipped
constants (every S2 path on: unconfirmed strong drops, regrowth, straw then a new crop across a
90-day gap) and with the former ones (40-day gaps, no "resown" rule)."""

from __future__ import annotations

import math
from datetime import date

import pandas as pd
import pytest

from alerts.detectors.batch import KERNELS, make_batch_detectors
from alerts.detectors.harvest import HarvestParams
from alerts.series import add_regional_reference, normalise_observations
from tests.alerts.test_batch_kernels import assert_same_events, assert_same_states, feed


@pytest.fixture(scope="module")
def cloudy_world():
    """Seed 0: a cloudy summer (long S2 gaps, harvests near the end of the archive)."""
    from ingest.synth import SynthConfig, simulate_parcel_series

    cfg = SynthConfig(seed=0, n_tiles=1, tile_size_px=512, parcels_per_tile=150, start=date(2024, 3, 1),
                      end=date(2024, 10, 31))
    parcels, obs, _ = simulate_parcel_series(cfg)
    parcels = pd.DataFrame(parcels[["parcel_id", "land_use"]]).astype({"parcel_id": str})
    return add_regional_reference(normalise_observations(obs)), parcels


@pytest.mark.parametrize("sensors", ["S2", "both"])
@pytest.mark.parametrize("params", [HarvestParams(), HarvestParams(unconfirmed_factor=1.5, regrowth_ndvi=0.05,
                                                                    min_drop_ndti=0.015, s2_max_gap_days=40.0,
                                                                    resown_ndvi=math.inf)])
def test_harvest_kernel_equals_reference_on_a_cloudy_world(cloudy_world, sensors, params):
    obs, parcels = cloudy_world
    if sensors == "S2":
        obs = obs[obs.sensor == "S2"]
    kernel = KERNELS["harvest"](params)
    reference = make_batch_detectors(["harvest"], kernel=False, params={"harvest": params})[0]
    k_events, k_states = feed(kernel, obs, parcels)
    r_events, r_states = feed(reference, obs, parcels)
    assert len(r_events) > 20
    unconfirmed = [e for e in r_events if e.evidence.get("confirmed_day") == e.window[1]
                   and e.evidence.get("harvest_kind") != "resown"]  # a new crop confirms on its own view
    if sensors == "S2" and params.resown_ndvi < math.inf:  # straw before a cloudy summer, a new crop after
        assert any(e.evidence.get("harvest_kind") == "resown" for e in r_events)
    if sensors == "S2":  # the strong-drop path fired: emitted on the drop's own view
        assert unconfirmed
    else:  # with S1 at hand, S2 drops wait for a confirming view (or the S1 step confirms)
        assert not unconfirmed
    assert_same_events(k_events, r_events)
    assert_same_states("harvest", kernel, k_states, r_states)
