"""sitsmon: streaming monitor for Sentinel-1/Sentinel-2 image time series.

This package is the composition root: the command line, the settings and the wiring that plugs
the pipeline stages (``ingest``, ``sits``, ``monitor``, ``alerts``, ``dashboards``) together.
"""

__version__ = "0.1.0"
