"""sitsmon pipeline stage: alerts — detectors, gap filling, the alert model, stores, sinks, evaluation.

May import ``sits`` only. Public API (what ``monitor`` and ``dashboards`` use)::

    from alerts.series import ParcelAcquisition, read_observations, read_parcels, add_regional_reference
    from alerts.detectors import MowingDetector, HarvestDetector, SolarDetector, run_detectors
    det = MowingDetector()
    state = det.init_state(parcel_id, land_use)        # UnsupportedLandUseError if not handled
    state, events = det.update(state, ParcelAcquisition(...))  # one acquisition; immutable states (checkpoints)
    #   duplicates skipped, out-of-order -> SeriesError (rewind), NaN/cloudy -> state unchanged
    #   HarvestDetector wants ParcelAcquisition.vh_ref = regional median VH (dB) of the same acquisition
    from alerts.detectors.state_io import state_to_dict, state_from_dict, states_to_zarr, states_from_zarr
    from alerts.detectors.batch import AcquisitionInputs, make_batch_detectors  # a tile per acquisition (kernels)
    from alerts.detectors import detect_solar_pixels   # (time, band, y, x) cube + transform -> events with polygons
    from alerts.types import Alert, Event, Status       # Alert.from_event(event, tile_id=..., region=...)
    from alerts.store import open_store, AlertQuery     # "path.sqlite" | "postgresql://..."
    store.upsert(alert); store.set_status(id, "confirmed", who, note); store.query(parcel_id=..., status=...)
    from alerts.sinks.kafka import KafkaAlertSink       # any publisher with publish(topic, key, value)
    from alerts.sinks.webhook import WebhookSink        # HMAC-SHA256 signed, retries, dead-letter file
    from alerts.sinks.files import write_csv, write_geojson
    from alerts import gapfill                          # gapfill.fit(obs) -> model; gapfill.fill(model, obs, queries)
    from alerts.traffic_light import assess_frame, Light, Reason  # assess_frame(obs, parcels, events, campaign=, as_of=, rules=)
    from alerts.lights_rules import load_rules              # rules per scheme and land use (TOML), docs/traffic-light.md
"""
