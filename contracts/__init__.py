"""Data contracts every stage shares: units, sensors, bands, indices, land uses, value ranges and the
interchange table.

The lowest layer of the project: it imports no other package of sitsmon (import-linter keeps it so),
so ``ingest``, ``sits``, ``alerts``, ``monitor`` and ``dashboards`` can all speak the same vocabulary.
One small module per contract:

- :mod:`contracts.time`        time units (``time_s`` seconds since 1970, ``t_days`` days since 1970)
- :mod:`contracts.sensors`     the :class:`~contracts.sensors.Sensor` enum (``S2``, ``S1``)
- :mod:`contracts.bands`       S2 band names, S1 polarisations, the value columns of each sensor
- :mod:`contracts.indices`     NDVI (one function, scalars and arrays, one zero guard)
- :mod:`contracts.land_use`    the canonical land-use sets (grassland, arable, harvest watch)
- :mod:`contracts.ranges`      physically possible values per band and sensor, unit detection
- :mod:`contracts.interchange` the interchange table: reading, the one row rule, the duplicate policy
"""
