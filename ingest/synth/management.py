"""Farm management drawn per unit and year (ground truth), and the daily surface it produces.

Grassland is mown (1-4 cuts: the green cover falls to a third within the day, hay lies a few days, the
sward regrows over ~3 weeks), grazed (slow, partial, over weeks) or left unmanaged (never mown: litter
accumulates, the CAP "no activity" case). Arable crops follow their calendar and are harvested
(cereals July-August, rapeseed early July, maize September-October), then the stubble is tilled and
a catch crop or the next winter crop emerges. Some parcels and some undeclared cells become solar farms:
vegetation stripped, bare disturbed soil for 1-3 months, then panels over ~75 % of the ground.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from ingest.synth.config import SynthConfig
from ingest.synth.grid import TileGrid, rng_for
from ingest.synth.parcels import Layout
from ingest.synth.phenology import KINDS, Fractions, logistic

__all__ = ["Management", "draw_management", "fractions_at", "EVENT_TYPES"]

EVENT_TYPES = ("mowing", "grazing", "harvest", "solar_construction")
MAX_CUTS = 4  # per year
MAX_GRAZING = 2  # spells per year
PV_COVER = 0.75  # share of a finished solar farm's ground seen as panels from above

# vmin, vmax, sos, sos_sd, rs, eos, eos_sd, re, senescence depth, dry kept, harvest (lo, hi), stubble,
# autumn emergence (lo, hi) and its cover, spring seedbed days before sos, biomass per green cover (S1)
_CROPS = {
    "grassland": (0.32, 0.92, 92, 7, 9, 300, 8, 12, 0.5, 1.0, None, 0.0, None, 0.0, None, 0.62),
    "cereal": (0.32, 0.88, 96, 6, 9, 172, 5, 6, 1.0, 1.0, (190, 214), 0.30, (292, 312), 0.30, None, 1.0),
    "rapeseed": (0.42, 0.90, 80, 5, 8, 163, 4, 6, 1.0, 1.0, (181, 198), 0.22, (250, 262), 0.40, None, 1.15),
    "maize": (0.02, 0.90, 168, 6, 7, 250, 7, 8, 1.0, 1.0, (255, 300), 0.20, None, 0.0, 50, 1.45),
    "root": (0.03, 0.85, 160, 7, 7, 262, 7, 9, 1.0, 0.7, (262, 298), 0.06, None, 0.0, 45, 0.9),
    "fallow": (0.35, 0.65, 100, 8, 10, 280, 10, 12, 0.6, 1.0, None, 0.0, None, 0.0, None, 0.7),
    "forest": (0.30, 0.88, 112, 4, 6, 288, 5, 8, 0.9, 0.25, None, 0.0, None, 0.0, None, 1.15),
    "none": (0.0, 0.0, 100, 0, 10, 280, 0, 10, 0.0, 0.0, None, 0.0, None, 0.0, None, 0.0),
}
_KIND_CROP = {
    "margin": "grassland",
    "grassland": "grassland",
    "cereal": "cereal",
    "maize": "maize",
    "rapeseed": "rapeseed",
    "forest": "forest",
    "water": "none",
    "urban": "grassland",
    "meadow": "grassland",
}
_URBAN_FRACTION = {"margin": 0.25, "urban": 0.70}
_YEAR_FIELDS = (
    "vmin",
    "vmax",
    "sos",
    "rs",
    "eos",
    "re",
    "sen",
    "dry_keep",
    "harvest",
    "till",
    "stubble",
    "aut_day",
    "aut_amp",
    "till_spring",
    "litter",
    "flower_day",
)


@dataclass(frozen=True, slots=True)
class Management:
    """Everything drawn for the U units of one tile (unit 0: margin; 1..N: parcels; then background).

    Per unit-year arrays (U, Y) are in day of year; cuts, grazing and works are in days since
    ``start`` (NaN where none). ``events`` and ``solar_sites`` are the ground truth.
    """

    start: date
    years: tuple[int, ...]
    kind: np.ndarray  # (U,) int8, index into KINDS
    h_bio: np.ndarray  # (U,)
    urban_frac: np.ndarray  # (U,)
    soil_brightness: np.ndarray  # (U,)
    orbit_offset_db: np.ndarray  # (U, 2): ascending, descending
    year: dict  # field -> (U, Y) float32
    cuts: np.ndarray  # (U, K) day index
    cut_residual: np.ndarray  # (U, K)
    hay: np.ndarray  # (U, K)
    graze: np.ndarray  # (U, G, 3): start, end, intensity
    works: np.ndarray  # (U, 2): start, end
    declared_practice: np.ndarray  # (N,) object (None where not declared)
    events: pd.DataFrame  # parcel_id, event, date, end_date
    solar_sites: pd.DataFrame  # site_id, unit, parcel_id, tile_id, works_start, works_end

    def __post_init__(self) -> None:
        if self.kind.ndim != 1 or self.cuts.shape[0] != self.kind.shape[0]:
            raise ValueError(f"unit arrays disagree: kind {self.kind.shape}, cuts {self.cuts.shape}")

    @property
    def n_units(self) -> int:
        return int(self.kind.shape[0])


def _day_index(start: date, year: int, doy) -> np.ndarray:
    return (date(year, 1, 1) - start).days + np.asarray(doy, float) - 1.0


def draw_management(config: SynthConfig, tile: TileGrid, layout: Layout) -> Management:
    """Draw crop calendars, management and solar works for every unit of ``tile``."""
    rng = rng_for(config.seed, tile.index, "management")
    n = len(layout.parcels)
    kinds = ["margin", *layout.parcels["land_use"].tolist(), *layout.background["cover"].tolist()]
    kind = np.array([KINDS.index(k) for k in kinds], np.int8)
    n_units = len(kinds)
    years = tuple(range(config.start.year, config.end.year + 1))
    n_years = len(years)
    n_days = config.n_days

    # "other" parcels: half root crops (harvested), half fallow/permanent (no harvest).
    other_root = rng.random(n_units) < 0.5
    crop = [
        ("root" if other_root[u] else "fallow") if k == "other" else _KIND_CROP[k]
        for u, k in enumerate(kinds)
    ]
    # Grassland management class: 0 mown, 1 grazed only, 2 unmanaged.
    u_draw = rng.random(n_units)
    gclass = np.where(
        u_draw < config.mowing_share, 0, np.where(u_draw < config.mowing_share + config.grazing_share, 1, 2)
    )
    is_grass = kind == KINDS.index("grassland")
    is_meadow = kind == KINDS.index("meadow")
    catch = rng.random(n_units) < config.catch_crop_share

    year = {f: np.full((n_units, n_years), np.nan, np.float32) for f in _YEAR_FIELDS}
    cuts = np.full((n_units, n_years * MAX_CUTS), np.nan, np.float32)
    cut_res = np.ones_like(cuts)
    hay = np.zeros_like(cuts)
    graze = np.full((n_units, n_years * MAX_GRAZING, 3), np.nan, np.float32)
    crop_arr = np.array(crop)
    for yi, y in enumerate(years):
        for name in sorted(set(crop)):
            sel = np.flatnonzero(crop_arr == name)
            m = len(sel)
            (vmin, vmax, sos, sos_sd, rs, eos, eos_sd, re, sen, dry, harv, stub, aut, aut_amp, tsp, _) = (
                _CROPS[name]
            )
            year["vmin"][sel, yi] = np.clip(vmin + rng.normal(0, 0.04, m) * (vmin > 0), 0, 1)
            year["vmax"][sel, yi] = np.clip(vmax + rng.normal(0, 0.05, m) * (vmax > 0), 0, 0.98)
            year["sos"][sel, yi] = sos + rng.normal(0, sos_sd, m)
            year["rs"][sel, yi] = rs * rng.uniform(0.8, 1.25, m)
            year["eos"][sel, yi] = eos + rng.normal(0, eos_sd, m)
            year["re"][sel, yi] = re * rng.uniform(0.8, 1.25, m)
            year["sen"][sel, yi] = sen
            year["dry_keep"][sel, yi] = dry
            if harv is not None:
                h = rng.uniform(harv[0], harv[1], m)
                year["harvest"][sel, yi] = h
                year["till"][sel, yi] = h + rng.uniform(4, 30, m)
                year["stubble"][sel, yi] = stub * rng.uniform(0.7, 1.3, m)
            if aut is not None:
                year["aut_day"][sel, yi] = rng.uniform(aut[0], aut[1], m)
                year["aut_amp"][sel, yi] = aut_amp * rng.uniform(0.8, 1.2, m)
            if tsp is not None:
                year["till_spring"][sel, yi] = year["sos"][sel, yi] - tsp + rng.normal(0, 5, m)
            if name == "rapeseed":
                year["flower_day"][sel, yi] = year["sos"][sel, yi] + rng.uniform(36, 46, m)
        # Catch crops after an early cereal harvest replace the winter-crop emergence.
        cc = np.flatnonzero(catch & (crop_arr == "cereal"))
        year["aut_day"][cc, yi] = year["till"][cc, yi] + rng.uniform(20, 30, len(cc))
        year["aut_amp"][cc, yi] = rng.uniform(0.35, 0.55, len(cc))
        # Grassland: cuts and grazing spells (day index since start).
        for u in np.flatnonzero(is_grass & (gclass == 0)):
            k = rng.choice([1, 2, 3, 4], p=[0.15, 0.40, 0.35, 0.10])
            first = rng.uniform(160, 200) if k == 1 else rng.uniform(132, 162)
            days = [first]
            for _ in range(k - 1):
                nxt = days[-1] + rng.uniform(35, 55)
                if nxt > 285:
                    break
                days.append(nxt)
            days = np.round(days)
            slot = yi * MAX_CUTS
            cuts[u, slot : slot + len(days)] = _day_index(config.start, y, days)
            cut_res[u, slot : slot + len(days)] = rng.uniform(0.25, 0.5, len(days))
            hay[u, slot : slot + len(days)] = rng.uniform(0.2, 0.35, len(days))
            if rng.random() < config.aftermath_grazing_share and days[-1] < 250:
                s = days[-1] + rng.uniform(25, 40)
                graze[u, yi * MAX_GRAZING] = (
                    _day_index(config.start, y, round(s)),
                    _day_index(config.start, y, round(s + rng.uniform(20, 45))),
                    rng.uniform(0.25, 0.45),
                )
        for u in np.flatnonzero(is_grass & (gclass == 1)):
            s = rng.uniform(118, 160)
            e = s + rng.uniform(21, 56)
            graze[u, yi * MAX_GRAZING] = (
                _day_index(config.start, y, round(s)),
                _day_index(config.start, y, round(e)),
                rng.uniform(0.3, 0.55),
            )
            if rng.random() < 0.5:
                s2 = e + rng.uniform(20, 40)
                e2 = s2 + rng.uniform(21, 42)
                graze[u, yi * MAX_GRAZING + 1] = (
                    _day_index(config.start, y, round(s2)),
                    _day_index(config.start, y, round(e2)),
                    rng.uniform(0.3, 0.5),
                )
        unmanaged = np.flatnonzero((is_grass & (gclass == 2)) | is_meadow)
        year["litter"][unmanaged, yi] = rng.uniform(0.15, 0.3, len(unmanaged))

    # Solar works: some parcels (at least one per tile), and some undeclared cells.
    works = np.full((n_units, 2), np.nan, np.float32)
    sites = []
    n_solar = 0 if config.solar_parcel_share <= 0 else max(1, round(config.solar_parcel_share * n))
    areas = layout.parcels["area_ha"].to_numpy()
    land = layout.parcels["land_use"].to_numpy()
    pool = np.flatnonzero(np.isin(land, ["grassland", "cereal", "other"]) & (areas >= 1.0))
    if len(pool) < n_solar:
        pool = np.arange(n)
    solar_parcels = np.sort(rng.choice(pool, size=min(n_solar, len(pool)), replace=False))
    bg = layout.background
    bg_areas = bg["area_ha"].to_numpy()
    bg_pref = np.flatnonzero(bg["cover"].isin(["meadow", "urban"]).to_numpy() & (bg_areas >= 1.0))
    bg_fallback = np.flatnonzero((bg["cover"] == "forest").to_numpy() & (bg_areas >= 1.0))
    n_out = config.solar_sites_outside_per_tile
    out_pool = np.concatenate([rng.permutation(bg_pref), rng.permutation(bg_fallback)])[:n_out]
    site_units = [(int(p) + 1, layout.parcels["parcel_id"].iat[int(p)]) for p in solar_parcels]
    site_units += [(1 + n + int(b), None) for b in out_pool]
    for j, (unit, pid) in enumerate(site_units):
        dur = min(rng.uniform(30, 90), max(7.0, 0.45 * n_days))
        finished = j == 0 or rng.random() < 0.75
        if finished:
            lo, hi = 0.05 * n_days, max(0.05 * n_days + 1, n_days - dur - 0.1 * n_days)
        else:
            lo, hi = 0.5 * n_days, 0.9 * n_days
        ws = float(np.floor(rng.uniform(lo, hi)))
        we = float(np.round(ws + dur))
        works[unit] = (ws, we)
        sites.append(
            {
                "site_id": f"{tile.tile_id}-PV{j + 1:03d}",
                "unit": unit,
                "parcel_id": pid,
                "tile_id": tile.tile_id,
                "works_start": ws,
                "works_end": we,
            }
        )

    # Declared practice (grassland only; "other" fallow declares fallow).
    declared = np.full(n, None, dtype=object)
    pu = np.arange(1, n + 1)
    g = is_grass[pu]
    declared[g & (gclass[pu] == 0)] = "mowing"
    declared[g & (gclass[pu] == 1)] = "grazing"
    unm = np.flatnonzero(g & (gclass[pu] == 2))
    lie = rng.random(len(unm)) < config.declared_practice_error_share
    declared[unm] = np.where(lie, "mowing", "fallow")
    declared[(kind[pu] == KINDS.index("other")) & ~other_root[pu]] = "fallow"

    h_bio = np.array([_CROPS[c][15] for c in crop], np.float32)
    urban_frac = np.array([_URBAN_FRACTION.get(k, 0.0) for k in kinds], np.float32)
    soil_b = rng.uniform(0.8, 1.2, n_units).astype(np.float32)
    orbit_off = rng.normal(0, 1.0, (n_units, 2)).astype(np.float32) + np.array([0.3, -0.3], np.float32)
    mg = Management(
        start=config.start,
        years=years,
        kind=kind,
        h_bio=h_bio,
        urban_frac=urban_frac,
        soil_brightness=soil_b,
        orbit_offset_db=orbit_off,
        year=year,
        cuts=cuts,
        cut_residual=cut_res,
        hay=hay,
        graze=graze,
        works=works,
        declared_practice=declared,
        events=pd.DataFrame(),
        solar_sites=pd.DataFrame(
            sites, columns=["site_id", "unit", "parcel_id", "tile_id", "works_start", "works_end"]
        ),
    )
    object.__setattr__(mg, "events", _events(config, layout, mg))
    return mg


def _iso(start: date, day: float) -> str:
    return (start + timedelta(days=int(day))).isoformat()


def _events(config: SynthConfig, layout: Layout, mg: Management) -> pd.DataFrame:
    """Ground-truth events of the parcels whose date lies in the archive's date range."""
    n = len(layout.parcels)
    ids = layout.parcels["parcel_id"].to_numpy()
    last = config.n_days - 1
    rows = []
    for p in range(n):
        u = p + 1
        ws = mg.works[u, 0]
        stop = ws if not np.isnan(ws) else np.inf

        def ok(day: float, stop: float = stop) -> bool:
            return 0 <= day <= last and day < stop

        for d in mg.cuts[u]:
            if not np.isnan(d) and ok(d):
                rows.append((ids[p], "mowing", _iso(config.start, d), None))
        for s, e, _k in mg.graze[u]:
            if not np.isnan(s) and ok(s):
                end = min(e, stop - 1)
                rows.append(
                    (
                        ids[p],
                        "grazing",
                        _iso(config.start, s),
                        _iso(config.start, end) if end <= last else None,
                    )
                )
        for yi, y in enumerate(mg.years):
            h = mg.year["harvest"][u, yi]
            if not np.isnan(h):
                d = float(_day_index(config.start, y, round(float(h))))
                if ok(d):
                    rows.append((ids[p], "harvest", _iso(config.start, d), None))
        if not np.isnan(ws) and 0 <= ws <= last:
            we = mg.works[u, 1]
            rows.append(
                (
                    ids[p],
                    "solar_construction",
                    _iso(config.start, ws),
                    _iso(config.start, we) if we <= last else None,
                )
            )
    ev = pd.DataFrame(rows, columns=["parcel_id", "event", "date", "end_date"])
    return ev.sort_values(["parcel_id", "date", "event"], kind="stable").reset_index(drop=True)


def fractions_at(mg: Management, t: np.ndarray, units: np.ndarray | None = None) -> Fractions:
    """Cover fractions of ``units`` (default all) at days ``t`` (days since start, (T,) int): arrays (U, T)."""
    units = np.arange(mg.n_units) if units is None else np.asarray(units)
    t = np.asarray(t)
    fr = Fractions((len(units), len(t)))
    dates = np.datetime64(mg.start.isoformat(), "D") + t.astype("timedelta64[D]")
    years_of_t = dates.astype("datetime64[Y]").astype(int) + 1970
    doy_of_t = (dates - dates.astype("datetime64[Y]")).astype(int) + 1
    fg, fds, fdl, ffl, rough = fr.fg, fr.fds, fr.fdl, fr.ffl, fr.rough_db
    for yi, y in enumerate(mg.years):
        cols = np.flatnonzero(years_of_t == y)
        if len(cols) == 0:
            continue
        d = doy_of_t[cols][None, :].astype(np.float32)

        def p(name: str, yi: int = yi) -> np.ndarray:
            return mg.year[name][units, yi][:, None]

        vmin, vmax = p("vmin"), p("vmax")
        rise = logistic((d - p("sos")) / p("rs"))
        fall = logistic((d - p("eos")) / p("re"))
        cover = vmin + (vmax - vmin) * rise
        g = cover * (1 - p("sen") * fall)
        sd = cover * p("sen") * fall * p("dry_keep")
        fl = np.nan_to_num(0.35 * np.exp(-0.5 * ((d - p("flower_day")) / 7.0) ** 2))
        g = g - 0.7 * fl
        lit = np.nan_to_num(p("litter")) * logistic((d - 200.0) / 15.0)
        sd = sd + lit
        g = g - 0.8 * lit
        harvested = d >= p("harvest")
        tilled = d >= p("till")
        g = np.where(harvested, 0.03, g)
        sd = np.where(harvested, 0.0, sd)
        ly = np.where(harvested, np.where(tilled, 0.05, p("stubble")), 0.0)
        r = np.where(tilled, 2.5 * np.exp(-(d - p("till")) / 40.0), 0.0)
        r = r + np.where(d >= p("till_spring"), 1.5 * np.exp(-(d - p("till_spring")) / 30.0), 0.0)
        g = g + np.nan_to_num(p("aut_amp")) * np.nan_to_num(logistic((d - p("aut_day")) / 7.0))
        fg[:, cols] = g
        fds[:, cols] = sd
        fdl[:, cols] = ly
        ffl[:, cols] = fl
        rough[:, cols] = np.nan_to_num(r)
    tt = t[None, :].astype(np.float32)
    # Mowing: green cover falls to the residual at once; hay lies a few days; regrowth over ~3 weeks.
    for k in range(mg.cuts.shape[1]):
        dk = mg.cuts[units, k][:, None]
        if np.isnan(dk).all():
            continue
        after = tt >= dk
        rec = logistic((tt - dk - 10.0) / 3.0)
        res = mg.cut_residual[units, k][:, None]
        fg *= np.where(after, res + (1 - res) * rec, 1.0)
        fds *= np.where(after, res + (1 - res) * rec, 1.0)
        fdl += np.where(after, mg.hay[units, k][:, None] * np.exp(-np.maximum(tt - dk, 0) / 2.5), 0.0)
    # Grazing: a slow partial loss spread over the spell, then recovery.
    for gslot in range(mg.graze.shape[1]):
        s, e, k = (mg.graze[units, gslot, j][:, None] for j in range(3))
        if np.isnan(s).all():
            continue
        during = (tt >= s) & (tt < e)
        after = tt >= e
        f = np.where(
            during,
            1 - k * (tt - s) / np.maximum(e - s, 1),
            np.where(after, 1 - k * np.exp(-np.maximum(tt - e, 0) / 8.0), 1.0),
        )
        f = np.nan_to_num(f, nan=1.0)
        fg *= f
        fds *= f
    kind = mg.kind[units]
    urb = mg.urban_frac[units][:, None]
    for a in (fg, fds, fdl, ffl):
        a *= 1.0 - urb
    fr.furb[:] = urb
    water = kind == KINDS.index("water")
    fr.fwat[water] = 1.0
    fr.shade[kind == KINDS.index("forest")] = 0.8
    rough[kind == KINDS.index("forest")] += 3.0
    # Solar works: vegetation stripped within days, bare disturbed soil, panels over the last 40 %.
    ws = mg.works[units, 0][:, None]
    we = mg.works[units, 1][:, None]
    site = ~np.isnan(ws[:, 0])
    if site.any():
        sl = np.flatnonzero(site)
        ws_, we_ = ws[sl], we[sl]
        ramp = np.clip((tt - ws_) / 5.0, 0, 1)
        pv = PV_COVER * np.clip((tt - (ws_ + 0.6 * (we_ - ws_))) / (0.4 * (we_ - ws_)), 0, 1)
        done = tt >= we_
        keep = 1.0 - ramp
        # Grass between the rows, half shaded by the panels.
        regrow = np.where(done, 0.6 * (1 - PV_COVER) * (1 - np.exp(-np.maximum(tt - we_, 0) / 20.0)), 0.0)
        for a in (fg, fds, fdl, ffl, fr.furb):
            a[sl] = np.where(done, 0.0, a[sl] * keep)
        fg[sl] += regrow
        fr.fpv[sl] = pv
        fr.fwk[sl] = np.where(done, (1 - PV_COVER) - regrow, ramp * (1 - pv))
        rough[sl] = np.where((tt >= ws_) & ~done, 3.0, np.where(done, 0.0, rough[sl]))
    fr.normalise()
    hb = mg.h_bio[units][:, None]
    fr.biomass[:] = hb * fr.fg + 0.6 * hb * fr.fds + 0.05 * fr.fdl
    fr.biomass[fr.fpv > 0] *= 0.5
    return fr
