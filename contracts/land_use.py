"""Canonical land-use sets (declared ``land_use`` of a parcel, lower case).

Before these sets the detectors and the traffic light each kept a copy and they disagreed on
``"other"``: the harvest detector watched ``other`` parcels, the traffic light did not require a
harvest on them. Both were right for their own job, so both sets are kept here under names that say
the job: ``other`` is an undeclared use (in the synthetic archive half root crops that are
harvested, half fallow that never is), so a harvest can be *detected* there
(:data:`HARVEST_WATCH`), but one cannot be *required* there (:data:`ARABLE`, what the traffic light
demands a harvest of). The traffic light's reading is the right one for compliance.
"""

from __future__ import annotations

GRASSLAND: frozenset[str] = frozenset(
    {"grassland", "meadow", "pasture", "permanent_grassland", "temporary_grassland"}
)
"""Grassland uses: mowing or grazing must be shown by the campaign's deadline."""

ARABLE: frozenset[str] = frozenset({"cereal", "maize", "rapeseed", "arable", "wheat", "barley", "sunflower"})
"""Declared arable crops: a harvest is required by their deadline."""

OTHER = "other"
"""An undeclared use: may be a harvested crop or fallow."""

HARVEST_WATCH: frozenset[str] = ARABLE | {OTHER}
"""Where the harvest detector looks: every arable crop, and ``other`` (a harvest may happen there)."""


def normalise_land_use(value: object) -> str:
    """``" Grassland "`` → ``"grassland"``: how every set above is matched."""
    return str(value).strip().lower()


def is_grassland(value: object) -> bool:
    return normalise_land_use(value) in GRASSLAND


def is_arable(value: object) -> bool:
    return normalise_land_use(value) in ARABLE
