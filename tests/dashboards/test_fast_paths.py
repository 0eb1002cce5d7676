"""The dashboard's fast paths give what the plain ones give, on the demo's data: the chart's series
(``SeriesReader.series``, built column-wise) equals a reference built cell by cell from the same rows,
with and without gap fill and expectation; a chip read straight from Zarr is the same PNG as one read
through the cube's xarray/dask Dataset."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from contracts.indices import ndvi as ndvi_of
from dashboards.series import S2_BANDS, SeriesReader
from tests.dashboards.conftest import ODD_ID


def _round(v, digits: int = 4):
    """What the old row builder wrote for one cell: numpy's rounding of the float64 value, None if not finite."""
    x = np.float64(v) if v is not None else np.nan
    return float(np.round(x, digits)) if math.isfinite(x) else None


def _iso(t) -> str:
    ts = pd.Timestamp(t)
    return (ts.tz_convert("UTC") if ts.tzinfo else ts.tz_localize("UTC")).isoformat()


def reference(obs: pd.DataFrame, filled: dict) -> tuple[list[dict], list[dict]]:
    """S2 and S1 rows, one cell at a time (numpy scalars of the columns' own dtypes)."""
    from alerts.expectation import EXPECTED, EXPECTED_STD

    col = {c: obs[c].to_numpy() for c in obs.columns}
    s2, s1 = [], []
    for i in range(len(obs)):
        t = _iso(obs["time"].iloc[i])
        if col["sensor"][i] == "S2":
            hit = filled.get(t)
            ndvi = ndvi_of(np.asarray([col["B04"][i]]), np.asarray([col["B08"][i]]))[0]
            s2.append({"time": t, "filled": hit is not None, "filled_ndvi": _round(hit[0]) if hit else None,
                       "filled_ndvi_std": _round(hit[1]) if hit else None,
                       "clear": bool(np.float64(col["clear"][i]) >= 0.5),
                       "clear_fraction": _round(col["clear_fraction"][i]) if "clear_fraction" in col else None,
                       "ndvi": _round(ndvi), "bands": {b: _round(col[b][i]) for b in S2_BANDS},
                       "expected_ndvi": _round(col[EXPECTED][i]) if EXPECTED in col else None,
                       "expected_ndvi_std": _round(col[EXPECTED_STD][i]) if EXPECTED_STD in col else None})
        elif col["sensor"][i] == "S1":
            db = {p: 10 * math.log10(float(col[p][i])) if float(col[p][i]) > 0 else None for p in ("VV", "VH")}
            orbit = np.float64(col["orbit"][i])
            ps = col["pass"][i] if "pass" in col else ""
            s1.append({"time": t, "vv_db": _round(db["VV"], 3), "vh_db": _round(db["VH"], 3),
                       "orbit": int(orbit) if math.isfinite(orbit) else None,
                       "pass": "" if ps is None or ps != ps else str(ps)})
    return s2, s1


@pytest.mark.parametrize("fill,expected", [(False, False), (True, True)])
def test_series_answer_equals_a_cell_by_cell_reference(site, fill, expected):
    from alerts.expectation import add_model_expectations

    reader = SeriesReader(site.config.series_dir, with_model=expected)
    ids = [pid for pid in site.parcel_ids if pid != ODD_ID]
    checked = any_filled = 0
    for pid in ids[:6]:
        got = reader.series(site.tile, pid, ids, fill=fill, expected=expected)
        obs = reader.observations(site.tile, pid, normalise=fill or expected)
        if not isinstance(obs, pd.DataFrame):
            obs = obs.to_pandas()
        filled = reader._filled(site.tile, reader._tile_stamp(site.tile), obs, ids) if fill else {}
        if expected and reader.model() is not None:
            obs = add_model_expectations(obs, reader.model())
        s2, s1 = reference(obs, filled)
        assert got["s2"] == s2 and got["s1"] == s1, pid
        checked += bool(s2) and bool(s1)
        any_filled += sum(p["filled"] for p in s2)
    assert checked  # the parcels had views of both sensors
    assert bool(any_filled) is fill  # the gap-filled branch was exercised (and only when asked)


def test_chip_read_from_zarr_equals_the_xarray_read(site, monkeypatch):
    import geopandas as gpd

    from dashboards import chips as chips_mod

    layer = gpd.read_parquet(site.config.parcels_path).set_index("parcel_id").to_crs(4326)
    fast = chips_mod.Chips(site.config.cubes_dir)
    dates = {s: fast.dates(site.tile, s) for s in ("S2", "S1")}
    cases = [(pid, kind, day) for pid in site.parcel_ids[:3] for kind, sensor in
             (("true_color", "S2"), ("ndvi", "S2"), ("vv", "S1")) for day in (dates[sensor][0], dates[sensor][-1])]
    got = [fast.render(site.tile, layer.loc[pid, "geometry"], pd.Timestamp(day).date(), kind) for pid, kind, day in cases]

    def through_xarray(self, name, ti, *index):  # the Dataset's own (dask) read of the same window
        return np.asarray(self.ds[name][(ti, *index)].values)

    monkeypatch.setattr(chips_mod._Steps, "window", through_xarray)
    monkeypatch.setattr(chips_mod._Steps, "__init__", lambda self, path, sensor, ds: setattr(self, "ds", ds))
    plain = chips_mod.Chips(site.config.cubes_dir)
    want = [plain.render(site.tile, layer.loc[pid, "geometry"], pd.Timestamp(day).date(), kind) for pid, kind, day in cases]
    assert got == want and len(set(got)) > 1
