"""A parcel's series for the chart: S2 bands and NDVI, S1 VV/VH in dB, the encoder's expectation,
and gap-filled NDVI with its uncertainty at the cloudy S2 views (``alerts.gapfill``, fitted once per
tile on the tile's whole series and cached with the series-file stamp; ``filled`` marks them).

The expectation is computed for the one parcel on the fly (``alerts.expectation``: the same
per-acquisition steps the monitor makes) and cached per parcel and series-file stamp; the model is
loaded once, on the first request that needs it.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dashboards.errors import NotFoundError

logger = logging.getLogger(__name__)

S2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")


def _num(v: Any, digits: int = 4) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return round(x, digits) if math.isfinite(x) else None


def _db(v: Any) -> float | None:
    x = _num(v, 8)
    return None if x is None or x <= 0 else round(10.0 * math.log10(x), 3)


class SeriesReader:
    def __init__(self, series_dir: Path, with_model: bool = True, cache_size: int = 256) -> None:
        self.series_dir = series_dir
        self.with_model = with_model
        self._model: Any = None
        self._model_error: str | None = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple, dict] = OrderedDict()
        self._gapfill: dict[str, tuple[tuple, Any]] = {}
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

    def observations(self, tile_id: str, parcel_id: str) -> pd.DataFrame:
        from alerts.series import normalise_observations
        from ingest.series import read_series

        table = read_series(self.series_dir, tile_id=tile_id, parcel_id=parcel_id) if (
            self.series_dir / tile_id).is_dir() else None
        if table is None or table.num_rows == 0:
            raise NotFoundError(f"no series for parcel {parcel_id!r} on tile {tile_id!r}")
        return normalise_observations(table.to_pandas(), source=f"series of {parcel_id}")

    def gapfill_model(self, tile_id: str, stamp: tuple) -> Any:
        """The tile's gap-fill model (None when it cannot be fitted, e.g. too few clear views)."""
        with self._lock:
            hit = self._gapfill.get(tile_id)
            if hit is not None and hit[0] == stamp:
                return hit[1]
        from alerts import gapfill
        from alerts.series import normalise_observations
        from ingest.series import read_series

        try:
            obs = normalise_observations(read_series(self.series_dir, tile_id=tile_id).to_pandas())
            model = gapfill.fit(obs)
        except Exception as e:  # noqa: BLE001 - without a fit the chart shows the views only
            logger.warning("gap-fill model for tile %s unavailable: %s", tile_id, e)
            model = None
        with self._lock:
            self._gapfill[tile_id] = (stamp, model)
        return model

    def series(self, tile_id: str, parcel_id: str) -> dict[str, Any]:
        key = (tile_id, parcel_id, self._tile_stamp(tile_id))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        out = self._build(tile_id, parcel_id, key[2])
        with self._lock:
            self._cache[key] = out
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return out

    def _filled(self, tile_id: str, stamp: tuple, obs: pd.DataFrame) -> dict[str, tuple[float, float]]:
        """``time iso → (ndvi, std)`` at the parcel's cloudy S2 views that the gap filler covers."""
        from alerts import gapfill

        cloudy = obs[(obs["sensor"] == "S2") & ~(obs["clear"] >= 0.5)]
        model = self.gapfill_model(tile_id, stamp) if len(cloudy) else None
        if model is None:
            return {}
        try:
            res = gapfill.fill(model, obs, cloudy[["parcel_id", "time"]])
        except Exception as e:  # noqa: BLE001
            logger.warning("gap fill failed for %s: %s", obs["parcel_id"].iloc[0], e)
            return {}
        ok = res[res["status"] == "ok"]
        times = cloudy["time"].to_numpy()[res["status"].to_numpy() == "ok"]
        return {pd.Timestamp(t).isoformat(): (float(n), float(u))
                for t, n, u in zip(times, ok["NDVI"], ok["uncertainty"], strict=True)}

    def _build(self, tile_id: str, parcel_id: str, stamp: tuple = ()) -> dict[str, Any]:
        from alerts.expectation import EXPECTED, EXPECTED_STD, add_model_expectations

        obs = self.observations(tile_id, parcel_id)
        filled = self._filled(tile_id, stamp, obs)
        model = self.model()
        version = None
        if model is not None:
            try:
                obs = add_model_expectations(obs, model)
                version = getattr(model, "version", None)
            except Exception as e:  # noqa: BLE001 - a model failure must not hide the observations
                logger.warning("expectation failed for %s: %s", parcel_id, e)
        s2 = obs[obs["sensor"] == "S2"]
        s1 = obs[obs["sensor"] == "S1"]
        s2_rows = []
        for _, r in s2.iterrows():
            red, nir = float(r["B04"]), float(r["B08"])
            ndvi = (nir - red) / (nir + red) if math.isfinite(red) and math.isfinite(nir) and nir + red > 0 else math.nan
            t_iso = r["time"].isoformat()
            fill = filled.get(t_iso)
            s2_rows.append({
                "time": t_iso,
                "filled": fill is not None,
                "filled_ndvi": _num(fill[0]) if fill else None,
                "filled_ndvi_std": _num(fill[1]) if fill else None,
                "clear": bool(r["clear"] >= 0.5) if math.isfinite(float(r["clear"])) else False,
                "clear_fraction": _num(r.get("clear_fraction")),
                "ndvi": _num(ndvi),
                "bands": {b: _num(r[b]) for b in S2_BANDS},
                "expected_ndvi": _num(r.get(EXPECTED)) if EXPECTED in r.index else None,
                "expected_ndvi_std": _num(r.get(EXPECTED_STD)) if EXPECTED_STD in r.index else None,
            })
        s1_rows = [{
            "time": r["time"].isoformat(),
            "vv_db": _db(r["VV"]),
            "vh_db": _db(r["VH"]),
            "orbit": int(r["orbit"]) if np.isfinite(r["orbit"]) else None,
            "pass": str(r.get("pass", "") or ""),
        } for _, r in s1.iterrows()]
        return {"parcel_id": parcel_id, "tile_id": tile_id, "model_version": version,
                "model_error": self._model_error, "s2": s2_rows, "s1": s1_rows}
