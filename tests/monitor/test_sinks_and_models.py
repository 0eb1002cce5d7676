"""A sink that hangs does not stop the stream (alerts dead-lettered with the reason, nothing lost in the
store); a reprocessing with another model writes its own namespace and alerts, leaving the old readable."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from alerts.sinks.webhook import WebhookSink
from monitor.bus import make_bus
from monitor.config import MonitorConfig
from monitor.replay import replay_period
from monitor.service import Monitor, Service
from tests.monitor.conftest import write_parcels
from tests.monitor.helpers import publish, write_slots


@pytest.fixture()
def season(synthetic_obs):
    obs, parcels = synthetic_obs
    keep = parcels[parcels.parcel_id.isin(["G2", "C1"])]
    return obs[obs.parcel_id.isin(keep.parcel_id)].reset_index(drop=True), keep.reset_index(drop=True)


class _Hang(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's hook name
        time.sleep(3.0)  # longer than the sink's timeout: the delivery times out
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_a_hanging_webhook_dead_letters_and_the_stream_goes_on(tmp_path: Path, synthetic_obs, model) -> None:
    obs, parcels = synthetic_obs
    # 45 days around G2's second cut (41 acquisitions, one mowing alert), not the whole season: what is
    # checked is each alert's dead letter and the stream going on past the hanging sink
    parcels = parcels[parcels.parcel_id.isin(["G2", "C1"])].reset_index(drop=True)
    obs = obs[obs.parcel_id.isin(parcels.parcel_id) & (obs.days >= obs.days.min() + 120)
              & (obs.days <= obs.days.min() + 165)].reset_index(drop=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hang)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    dead = tmp_path / "dead-letters.jsonl"
    sink = WebhookSink(f"http://127.0.0.1:{server.server_port}/alerts", "s3cret", dead, max_attempts=1,
                       timeout_s=0.5)
    events = write_slots(tmp_path / "series", obs)
    bus = make_bus("memory", path=tmp_path / "bus.sqlite")
    publish(bus, events)
    config = MonitorConfig(data_dir=tmp_path, series_dir=tmp_path / "series",
                           parcels=write_parcels(tmp_path / "parcels.csv", parcels))
    service = Service(Monitor(config, model=model, sinks=[sink]), bus)
    try:
        report = service.run_once()
        stored = service.monitor.store.query()
        last_error = service.monitor.health.last_error or ""
    finally:
        service.close()
        bus.close()
        server.shutdown()
    assert report.acquisitions == len(events) and stored
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert sorted(d["alert"]["alert_id"] for d in letters) == sorted(a.alert_id for a in stored)
    assert all("timeout" in d["error"] for d in letters)
    assert "WebhookSink" in last_error


def test_a_new_model_writes_its_own_namespace_and_alerts(tmp_path: Path, season, model) -> None:
    import sits
    from sits.checkpoint import save_checkpoint

    obs, parcels = season
    write_slots(tmp_path / "series", obs)
    parcels_csv = write_parcels(tmp_path / "parcels.csv", parcels)

    def replay(checkpoint: Path | None) -> tuple[Monitor, list]:
        config = MonitorConfig(data_dir=tmp_path, series_dir=tmp_path / "series", parcels=parcels_csv,
                               checkpoint=checkpoint)
        monitor = Monitor(config)
        replay_period(monitor, "2024-01-01", "2024-12-31")
        alerts = monitor.store.query(limit=100_000)
        monitor.close()
        return monitor, alerts

    old, old_alerts = replay(None)
    new_model = sits.load_model(device="cpu")
    with torch.no_grad():
        next(new_model.parameters()).add_(1e-3)  # another set of weights: another model version
    new_model.version = f"sha-{new_model.weights_digest()}"  # as `sitsmon train` names its weights
    path = save_checkpoint(new_model, tmp_path / "new.pt")
    new, all_alerts = replay(path)
    assert new.namespace != old.namespace
    assert {p.name for p in (tmp_path / "monitor").iterdir() if p.is_dir()} == {old.namespace, new.namespace}
    versions = {a.model_version for a in all_alerts}
    assert versions == {old.alert_model_version, new.alert_model_version}
    kept = {a.alert_id for a in all_alerts if a.model_version == old.alert_model_version}
    assert kept == {a.alert_id for a in old_alerts}  # the old alerts are still there, unchanged ids
