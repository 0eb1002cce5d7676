"""A parcel's series for the chart: S2 bands and NDVI, S1 VV/VH in dB, the encoder's expectation,
and gap-filled NDVI with its uncertainty at the cloudy S2 views (``alerts.gapfill``, fitted once per
tile and series-file stamp by one process and stored next to the series, ``dashboards.gapfill_store``;
``filled`` marks them).

The expectation is computed for the one parcel on the fly (``alerts.expectation``: the same
per-acquisition steps the monitor makes) and cached per parcel and series-file stamp; the model is
loaded once, on the first request that needs it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from contracts.indices import ndvi as ndvi_of
from dashboards.errors import NotFoundError

logger = logging.getLogger(__name__)

FIT_PARCELS = 200
FILL_WAIT_S = 20.0  # how long a series request waits for the tile's gap-filler fit


class FitPending(Exception):
    """The tile's gap filler is being fitted; the series is answered without filled values."""
S2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")


def _num(v: Any, digits: int = 4) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return round(x, digits) if math.isfinite(x) else None


def _col(values: Any, digits: int = 4) -> list[float | None]:
    """A numeric column (or 2-D block, as a list of row lists) as rounded floats with None for
    NaN/inf (JSON-safe), converted in one pass: an object array's ``tolist`` instead of a Python
    test per value."""
    a = np.round(np.asarray(values, dtype=np.float64), digits)
    out = a.astype(object)
    out[~np.isfinite(a)] = None
    return out.tolist()


def _iso(times: np.ndarray) -> list[str]:
    # the same text as Timestamp.isoformat() for whole-second UTC times ("2024-05-04T09:40:19+00:00")
    return np.strings.add(np.datetime_as_string(times.astype("datetime64[s]"), unit="s"), "+00:00").tolist()


class SeriesReader:
    def __init__(self, series_dir: Path, with_model: bool = True, cache_size: int = 256) -> None:
        self.series_dir = series_dir
        self.with_model = with_model
        self._model: Any = None
        self._model_error: str | None = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple, dict] = OrderedDict()
        self._gapfill: dict[str, tuple[tuple, Any]] = {}
        self._fits: dict[str, tuple[tuple, threading.Event]] = {}  # the fit under way per tile
        self._cache_size = cache_size

    def _tile_stamp(self, tile_id: str) -> tuple:
        d = self.series_dir / tile_id
        try:
            return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in d.rglob("*.parquet")))[-64:]
        except OSError:
            return ()

    def model(self) -> Any:
        with self._lock:
            if self._model is None and self._model_error is None and self.with_model:
                try:
                    import sits

                    self._model = sits.load_model(device="cpu")
                except Exception as e:  # noqa: BLE001 - the chart still works without the model
                    self._model_error = f"{type(e).__name__}: {e}"
                    logger.warning("encoder model unavailable: %s", self._model_error)
            return self._model

    def observations(self, tile_id: str, parcel_id: str, normalise: bool = True,
                     campaign: int | None = None) -> pd.DataFrame | pa.Table:
        """The parcel's rows of the series store of one campaign (None: its latest), sorted by time;
        ``normalise``: validated into the interchange DataFrame the gap filler and the encoder read
        (costs ~40 ms on a five-year series); else the store's own rows as a pyarrow table (typed and
        unique per slot already, which is all the chart needs)."""
        from alerts.series import normalise_observations

        table, _, _ = self.campaign_rows(tile_id, parcel_id, campaign)
        if not normalise:
            return table
        return normalise_observations(table.to_pandas(), source=f"series of {parcel_id}")

    def campaign_rows(self, tile_id: str, parcel_id: str,
                      campaign: int | str | None) -> tuple[pa.Table, int | str, list[int]]:
        """The parcel's rows of ``campaign`` (None: the latest it has; :data:`ALL_CAMPAIGNS`: every
        campaign's, each row keeping its ``campaign``), that campaign, and all its campaigns: a parcel id
        reused by another campaign with a new outline is another series, never mixed in unasked."""
        from ingest.series import campaigns_in, read_series

        table = read_series(self.series_dir, tile_id=tile_id, parcel_id=parcel_id) if (
            self.series_dir / tile_id).is_dir() else None
        if table is None or table.num_rows == 0:
            raise NotFoundError(f"no series for parcel {parcel_id!r} on tile {tile_id!r}")
        campaigns = campaigns_in(table)
        if campaign == ALL_CAMPAIGNS:
            return table, ALL_CAMPAIGNS, campaigns
        chosen = campaign if campaign is not None else (campaigns[-1] if campaigns else None)
        if chosen not in campaigns:
            raise NotFoundError(f"no series for parcel {parcel_id!r} in campaign {campaign} "
                                f"(its campaigns: {', '.join(map(str, campaigns)) or 'none'})")
        table = table.filter(pa.compute.equal(table["campaign"], pa.scalar(chosen, pa.int16())))
        return table, int(chosen), campaigns

    def gapfill_model(self, tile_id: str, stamp: tuple, sample_ids: list[str], wait_s: float | None = None) -> Any:
        """The tile's gap-fill model for the series stamp, fitted on a sample of the tile's parcels
        (``sample_ids``, at most FIT_PARCELS; a fit on every parcel of a large tile would take
        minutes) by one process and stored (``dashboards.gapfill_store``); None when it cannot be
        fitted, e.g. too few clear views. The fit runs in a thread of its own: a request waits for it
        at most ``wait_s`` (default :data:`FILL_WAIT_S`), then :class:`FitPending` (the fit goes on,
        and later requests get its model) — a fit takes ~30 s of CPU on a five-year tile, longer
        than a client waits."""
        with self._lock:
            hit = self._gapfill.get(tile_id)
            if hit is not None and hit[0] == stamp:
                return hit[1]
            job = self._fits.get(tile_id)
            if job is None or job[0] != stamp:
                job = (stamp, threading.Event())
                self._fits[tile_id] = job
                threading.Thread(target=self._fit, args=(tile_id, stamp, list(sample_ids), job[1]),
                                 name=f"gapfill-{tile_id}", daemon=True).start()
        if not job[1].wait(FILL_WAIT_S if wait_s is None else wait_s):
            raise FitPending(f"the gap filler of tile {tile_id} is being fitted")
        with self._lock:
            hit = self._gapfill.get(tile_id)
        return hit[1] if hit is not None and hit[0] == stamp else None

    def _fit(self, tile_id: str, stamp: tuple, sample_ids: list[str], done: threading.Event) -> None:
        from alerts import gapfill
        from alerts.series import normalise_observations
        from dashboards.gapfill_store import load_or_fit
        from ingest.series import read_series

        step = max(1, len(sample_ids) // FIT_PARCELS)
        chosen = sample_ids[::step][:FIT_PARCELS]

        def fit() -> Any:
            try:
                table = read_series(self.series_dir, tile_id=tile_id, parcel_id=chosen)
                return gapfill.fit(normalise_observations(table.to_pandas()))
            except Exception as e:  # noqa: BLE001 - without a fit the chart shows the views only
                logger.warning("gap-fill model for tile %s unavailable: %s", tile_id, e)
                return None

        spec = {"sample": hashlib.sha256("\n".join(chosen).encode()).hexdigest(),
                "params": dataclasses.asdict(gapfill.GapFillParams())}
        try:
            # fitted by one process, stored next to the series, loaded by every other worker
            model = load_or_fit(self.series_dir / tile_id, stamp, spec, fit)
        except Exception as e:  # noqa: BLE001 - e.g. the lock file's dir vanished: no fill, no crash
            logger.warning("gap-fill model for tile %s unavailable: %s", tile_id, e)
            model = None
        with self._lock:
            self._gapfill[tile_id] = (stamp, model)
        done.set()

    def series(self, tile_id: str, parcel_id: str, sample_ids: list[str] | None = None, *,
               fill: bool = True, expected: bool = True, campaign: int | str | None = None) -> dict[str, Any]:
        """The chart's series of one parcel in one campaign (None: its latest; the answer's ``campaign``
        says which, ``campaigns`` lists the others); ``sample_ids``: parcels of the tile to fit the gap
        filler on; ``fill``/``expected``: add gap-filled values / the encoder's expectation (each costs time)."""
        key = (tile_id, parcel_id, fill, expected, campaign, self._tile_stamp(tile_id))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        out = self._build(tile_id, parcel_id, key[-1], sample_ids or [parcel_id], fill, expected, campaign)
        if out["fill_pending"]:  # asked again once the fit is done, it gets its filled values
            return out
        with self._lock:
            self._cache[key] = out
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return out

    def _filled(self, tile_id: str, stamp: tuple, obs: pd.DataFrame, sample_ids: list[str]) -> dict[str, tuple[float, float]]:
        """``time iso → (ndvi, std)`` at the parcel's cloudy S2 views that the gap filler covers."""
        from alerts import gapfill

        cloudy = obs[(obs["sensor"] == "S2") & ~(obs["clear"] >= 0.5)]
        model = self.gapfill_model(tile_id, stamp, sample_ids) if len(cloudy) else None  # may raise FitPending
        if model is None:
            return {}
        try:
            res = gapfill.fill(model, obs, cloudy[["parcel_id", "time"]])
        except Exception as e:  # noqa: BLE001
            logger.warning("gap fill failed for %s: %s", obs["parcel_id"].iloc[0], e)
            return {}
        ok = res[res["status"] == "ok"]
        times = np.asarray(_iso(_utc64(cloudy["time"])), dtype=object)[res["status"].to_numpy() == "ok"]
        return {t: (float(n), float(u)) for t, n, u in zip(times, ok["NDVI"], ok["uncertainty"], strict=True)}

    def _build(self, tile_id: str, parcel_id: str, stamp: tuple, sample_ids: list[str], fill: bool,
               expected: bool, campaign: int | str | None = None) -> dict[str, Any]:
        from alerts.expectation import EXPECTED, EXPECTED_STD, add_model_expectations
        from alerts.series import normalise_observations

        table, campaign, campaigns = self.campaign_rows(tile_id, parcel_id, campaign)
        obs = normalise_observations(table.to_pandas(), source=f"series of {parcel_id}") if fill or expected else table
        pending = False
        try:
            filled = self._filled(tile_id, stamp, obs, sample_ids) if fill else {}
        except FitPending:
            filled, pending = {}, True
        model = self.model() if expected else None
        version = None
        if model is not None:
            try:
                obs = add_model_expectations(obs, model)
                version = getattr(model, "version", None)
            except Exception as e:  # noqa: BLE001 - a model failure must not hide the observations
                logger.warning("expectation failed for %s: %s", parcel_id, e)
        cols = _columns(obs)
        sensor = cols["sensor"]
        s2, s1 = sensor == "S2", sensor == "S1"
        # columnar: one numpy pass per column, then plain lists zipped into rows (iterrows costs
        # ~0.3 ms a row, indexing per cell ~10 µs)
        n2 = int(s2.sum())
        s2_times = _iso(cols["time"][s2])
        ndvi = _col(ndvi_of(cols["B04"][s2], cols["B08"][s2]))
        clear = (np.asarray(cols["clear"][s2], np.float64) >= 0.5).tolist()
        bands = _col(np.stack([np.asarray(cols[b][s2]) for b in S2_BANDS], axis=1)) if n2 else []
        none = [None] * n2
        cf = _col(cols["clear_fraction"][s2]) if "clear_fraction" in cols else none
        exp = _col(cols[EXPECTED][s2]) if EXPECTED in cols else none
        exp_std = _col(cols[EXPECTED_STD][s2]) if EXPECTED_STD in cols else none
        if filled:
            hits = [filled.get(t) for t in s2_times]
            fill_flag = [h is not None for h in hits]
            fill_ndvi = [_num(h[0]) if h else None for h in hits]
            fill_std = [_num(h[1]) if h else None for h in hits]
        else:
            fill_flag, fill_ndvi, fill_std = [False] * n2, none, none
        s2_rows = [{"time": t, "filled": fl, "filled_ndvi": fv, "filled_ndvi_std": fs, "clear": c,
                    "clear_fraction": f, "ndvi": v, "bands": dict(zip(S2_BANDS, b, strict=True)),
                    "expected_ndvi": e, "expected_ndvi_std": es}
                   for t, fl, fv, fs, c, f, v, b, e, es in zip(s2_times, fill_flag, fill_ndvi, fill_std, clear, cf, ndvi,
                                                             bands, exp, exp_std, strict=True)]
        vv, vh = (_col(_db(cols[p][s1]), 3) for p in ("VV", "VH"))
        orbit = np.asarray(cols["orbit"][s1], np.float64)
        orbits = np.where(np.isfinite(orbit), orbit, 0).astype(np.int64).astype(object)
        orbits[~np.isfinite(orbit)] = None
        orbits = orbits.tolist()
        passes = ["" if p is None or p != p else str(p) for p in cols["pass"][s1].tolist()] if "pass" in cols else (
            [""] * len(orbits))
        s1_rows = [{"time": t, "vv_db": a, "vh_db": b, "orbit": o, "pass": ps}
                   for t, a, b, o, ps in zip(_iso(cols["time"][s1]), vv, vh, orbits, passes, strict=True)]
        if campaign == ALL_CAMPAIGNS:  # the rows of several outlines: each says which campaign's it is
            for rows, mask in ((s2_rows, s2), (s1_rows, s1)):
                for row, c in zip(rows, np.asarray(cols["campaign"][mask]).tolist(), strict=True):
                    row["campaign"] = None if c is None or c != c else int(c)
        return {"parcel_id": parcel_id, "tile_id": tile_id, "campaign": campaign, "campaigns": campaigns,
                "model_version": version, "fill_pending": pending,
                "model_error": self._model_error, "s2": s2_rows, "s1": s1_rows}


ALL_CAMPAIGNS = "all"  # ``campaign=`` of SeriesReader.series: the rows of every campaign, tagged


def _columns(obs: Any) -> dict[str, np.ndarray]:
    """The columns of a pyarrow table (the store's rows) or a DataFrame (normalised) as numpy arrays;
    times as UTC ``datetime64``."""
    if isinstance(obs, pd.DataFrame):
        out = {c: obs[c].to_numpy() for c in obs.columns if c != "time"}
        out["time"] = _utc64(obs["time"])
        return out
    out = {name: obs.column(name).to_numpy(zero_copy_only=False) for name in obs.column_names if name != "time"}
    out["time"] = obs.column("time").cast(pa.timestamp("s")).to_numpy(zero_copy_only=False)
    return out


def _utc64(times: pd.Series) -> np.ndarray:
    idx = pd.DatetimeIndex(times)
    return (idx.tz_convert("UTC").tz_localize(None) if idx.tz is not None else idx).to_numpy()


def _db(linear: np.ndarray) -> np.ndarray:
    v = np.asarray(linear, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 10 * np.log10(np.where(v > 0, v, np.nan))
