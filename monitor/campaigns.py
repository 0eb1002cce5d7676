"""A tile's state across a campaign boundary: carried where the parcel is the same, new where it was redrawn.

Declared parcels change every campaign (ids, outlines, land use), and the series of a parcel id are
keyed by (campaign, parcel) (``ingest.series`` column ``campaign``). When the first acquisition of a
new campaign reaches a tile, :func:`rebase` rebuilds the tile's state on that campaign's parcel list:

- a parcel declared in both campaigns with the same land use and the same outline
  (``ingest.campaign_layers.unchanged_parcels``: moved by at most 2 % of its area) keeps its encoder
  state and its detectors' states: it is the same field, and the encoder's winter history is what
  its spring forecasts (the expectation behind each alert's evidence) are made of;
- a parcel redrawn, declared with another use, or new starts from an empty state: a 2025 state folded
  from another outline's pixels (or another crop's detector) must not judge the 2026 parcel;
- a parcel no longer declared is dropped; watch-area pixels are not parcels and are always carried.

Why a reset where redrawn rather than states keyed by (campaign, parcel) for everyone: keying would
restart every parcel each campaign (most parcels do not change between years, and a restarted
encoder forecasts poorly for its first months), and would grow the state by a year of parcels each
campaign. The state records its campaign (``TileState.campaign``); the rebase is a step of the fold
sequence, taken before the first acquisition of the new campaign, so a rewind, a replay and the live
stream all fold the same sequence and end in the same state.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from contracts.campaigns import CampaignCalendar
from monitor.inputs import SlotKey
from monitor.step import TileState, new_tile_state

logger = logging.getLogger(__name__)

_HEADER = ("state_version", "parcel_id", "land_use", "handled")


def campaign_of_rows(rows: pd.DataFrame, key: SlotKey, calendar: CampaignCalendar) -> int:
    """The campaign of one acquisition's rows: the one ingest recorded, else (a store written before
    campaigns were recorded) the campaign of its date."""
    if "campaign" in rows.columns:
        known = pd.to_numeric(rows["campaign"], errors="coerce").dropna()
        if len(known):
            return int(known.iloc[0])
    return calendar.campaign_of(key.time_s)


def rebase(state: TileState, parcels: pd.DataFrame, carried: set[str], campaign: int, model,
           detectors) -> TileState:
    """``state`` moved onto ``parcels`` (``parcel_id, land_use`` in the new state's row order, watch-area
    pixels included): rows of ``carried`` ids (and watch-area pixels) keep their encoder and detector
    states, every other row starts empty. The fold history (``folded``), the recent expectations of
    carried rows and the watch areas' states go along."""
    from monitor.step import WATCH_AREA
    from sits import EncoderState

    fresh = new_tile_state(state.tile_id, parcels, model, detectors)
    old_at = state.parcel_ids.get_indexer(fresh.parcel_ids)
    same_use = np.zeros(fresh.n, dtype=bool)
    found = old_at >= 0
    same_use[found] = state.land_uses[old_at[found]] == fresh.land_uses[found]
    keep = found & same_use & (fresh.parcel_ids.isin(list(carried)) | (fresh.land_uses == WATCH_AREA))
    j = np.flatnonzero(keep)
    i = old_at[j]
    if len(j):
        fresh.encoder = EncoderState.map_tensors(lambda new, old: _put_rows(new, old, j, i), fresh.encoder,
                                                 state.encoder)
        for det in detectors:
            fresh.detectors[det.event_type] = _carry_detector(det, state.detectors[det.event_type],
                                                              fresh.detectors[det.event_type], i, j)
    kept_ids = set(fresh.parcel_ids[j])
    fresh.folded = dict(state.folded)
    fresh.recent = [f[f["parcel_id"].isin(kept_ids)] for f in state.recent]
    fresh.area_sites = list(state.area_sites)
    fresh.watch = dict(state.watch)
    fresh.campaign = int(campaign)
    n_parcels = int((fresh.land_uses != WATCH_AREA).sum())
    logger.info("tile %s: campaign %s -> %s: %d of %d parcels carried, %d started afresh (new, redrawn or "
                "declared with another use)", state.tile_id, state.campaign, campaign,
                int((keep & (fresh.land_uses != WATCH_AREA)).sum()), n_parcels,
                n_parcels - int((keep & (fresh.land_uses != WATCH_AREA)).sum()))
    return fresh


def _put_rows(new, old, j: np.ndarray, i: np.ndarray):
    import torch

    out = new.clone()
    out[torch.from_numpy(j).to(out.device)] = old[torch.from_numpy(i).to(old.device)].to(out.device, out.dtype)
    return out


def _carry_detector(det, old_states: Any, new_states: Any, i: np.ndarray, j: np.ndarray) -> Any:
    """``new_states`` with rows ``j`` taken from rows ``i`` of ``old_states``, through the detector's own
    dump/load (its arrays are over every parcel of the tile or over the parcels it handles)."""
    a_old, a_new = det.dump(old_states), det.dump(new_states)
    h_old = np.asarray(a_old["handled"], dtype=bool)
    h_new = np.asarray(a_new["handled"], dtype=bool)
    n_old, n_new, m_old, m_new = len(h_old), len(h_new), int(h_old.sum()), int(h_new.sum())
    both = h_old[i] & h_new[j]  # equal where the land use is (a carried row's is)
    hi = (np.cumsum(h_old) - 1)[i[both]]
    hj = (np.cumsum(h_new) - 1)[j[both]]
    out = {}
    for name, arr in a_new.items():
        dst = np.asarray(arr)  # a dump's arrays are its own copies: written in place
        src = np.asarray(a_old.get(name)) if name in a_old else None
        if name in _HEADER or src is None or dst.ndim == 0 or src.ndim == 0 or src.shape[1:] != dst.shape[1:]:
            out[name] = dst
            continue
        if dst.shape[0] == m_new and src.shape[0] == m_old:  # over the handled parcels
            dst[hj] = src[hi]
        elif dst.shape[0] == n_new and src.shape[0] == n_old:  # over every parcel
            dst[j] = src[i]
        out[name] = dst
    return det.load(out)
