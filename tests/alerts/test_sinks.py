"""Sinks: webhook against a real local HTTP server (ok / 500 / hanging), bus topic, file exports."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from alerts.series import to_days
from alerts.sinks import dispatch
from alerts.sinks.files import alerts_frame, write_csv, write_geojson
from alerts.sinks.kafka import ALERTS_TOPIC, KafkaAlertSink
from alerts.sinks.webhook import SIGNATURE_HEADER, WebhookSink, verify_signature
from alerts.types import Alert, Event

SECRET = "s3cret"


def make_alert(pid: str = "P1", day: str = "2024-06-10") -> Alert:
    d = to_days(day)
    ev = Event(
        parcel_id=pid, event="mowing", date=d, window=(d - 2, d), confidence=0.8, evidence={"ndvi_drop": 0.3}
    )
    return Alert.from_event(ev, tile_id="33UXP", detected_at=datetime(2024, 6, 20, tzinfo=UTC))


class Receiver:
    """A real HTTP server on 127.0.0.1 whose behaviour the test sets: ok, 500, hang, 400."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.received: list[tuple[bytes, str]] = []
        self.hits = 0
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.hits += 1
                if receiver.mode == "hang":
                    receiver.release.wait(5.0)
                    return
                if receiver.mode == "500":
                    self.send_response(500)
                    self.end_headers()
                    return
                if receiver.mode == "400":
                    self.send_response(400)
                    self.end_headers()
                    return
                receiver.received.append((body, self.headers.get(SIGNATURE_HEADER, "")))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _sink(receiver: Receiver, tmp_path, **kw) -> WebhookSink:
    kw.setdefault("max_attempts", 3)
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("timeout_s", 0.5)
    return WebhookSink(receiver.url, SECRET, tmp_path / "dead.jsonl", **kw)


def test_webhook_delivers_signed_body(receiver, tmp_path):
    sink = _sink(receiver, tmp_path)
    a = make_alert()
    assert sink.send(a) is True
    ((body, sig),) = receiver.received
    assert verify_signature(SECRET, body, sig)
    assert not verify_signature("other", body, sig)
    assert Alert.model_validate_json(body) == a
    assert sink.dead_letters() == []
    sink.close()


@pytest.mark.parametrize("mode", ["500", "hang"])
def test_webhook_retries_then_dead_letters(receiver, tmp_path, mode):
    receiver.mode = mode
    sleeps: list[float] = []
    sink = _sink(receiver, tmp_path, sleep=sleeps.append)
    a = make_alert()
    assert sink.send(a) is False
    assert receiver.hits == 3
    assert sleeps == [0.01, 0.02]  # exponential backoff between the attempts
    (dead,) = sink.dead_letters()
    assert dead["alert"]["alert_id"] == a.alert_id and dead["attempts"] == 3
    assert ("HTTP 500" if mode == "500" else "timeout") in dead["error"]
    # the endpoint recovers: the dead letter is delivered and removed
    receiver.mode = "ok"
    receiver.release.set()
    assert sink.redeliver() == (1, 0)
    assert sink.dead_letters() == []
    assert Alert.model_validate_json(receiver.received[-1][0]).alert_id == a.alert_id
    sink.close()


def test_webhook_client_error_is_not_retried(receiver, tmp_path):
    receiver.mode = "400"
    sink = _sink(receiver, tmp_path)
    assert sink.send(make_alert()) is False
    assert receiver.hits == 1
    assert sink.dead_letters()[0]["error"] == "HTTP 400"
    sink.close()


def test_webhook_refuses_bad_config(tmp_path):
    with pytest.raises(ValueError, match="http"):
        WebhookSink("file:///etc/passwd", SECRET, tmp_path / "d")
    with pytest.raises(ValueError, match="secret"):
        WebhookSink("http://127.0.0.1:9/x", "", tmp_path / "d")


def test_dispatch_keeps_going_when_a_sink_fails(receiver, tmp_path):
    class Broken:
        def send(self, alert):
            raise RuntimeError("disk full")

    sink = _sink(receiver, tmp_path)
    out = dispatch(make_alert(), [Broken(), sink])
    assert out == {"Broken": "error: disk full", "WebhookSink": "ok"}
    assert len(receiver.received) == 1
    sink.close()


def test_bus_sink_in_memory():
    from monitor.bus import make_bus

    bus = make_bus("memory")
    sink = KafkaAlertSink(bus)
    alerts = [make_alert("P1"), make_alert("P2", "2024-07-01")]
    assert sink.send_many(alerts) == 2
    with bus.consumer([ALERTS_TOPIC], "test") as consumer:
        got = consumer.poll(timeout_s=1.0)
    assert sorted(m.key for m in got) == ["P1", "P2"]
    assert {Alert.model_validate(m.value).alert_id for m in got} == {a.alert_id for a in alerts}
    bus.close()
    with pytest.raises(TypeError):
        KafkaAlertSink(object())  # type: ignore[arg-type]


@pytest.mark.integration
def test_bus_sink_real_kafka(kafka_bootstrap):
    from monitor.bus import make_bus

    topic = f"sits.alerts.test{int(time.time() * 1000)}"
    bus = make_bus("kafka", kafka_bootstrap, "0.9")
    try:
        sink = KafkaAlertSink(bus, topic=topic)
        a = make_alert("P9")
        sink.send_many([a])
        got = []
        with bus.consumer([topic], "alerts-test") as consumer:
            deadline = time.monotonic() + 30
            while not got and time.monotonic() < deadline:
                got = consumer.poll(timeout_s=1.0)
        assert [m.key for m in got] == ["P9"]
        assert Alert.model_validate(got[0].value) == a
    finally:
        bus.close()


def test_file_exports(tmp_path):
    alerts = [make_alert("P1"), make_alert("P2", "2024-07-01")]
    assert write_csv(alerts, tmp_path / "a.csv") == 2
    df = alerts_frame(alerts)
    assert list(df.columns[:5]) == ["alert_id", "parcel_id", "tile_id", "event", "date"]
    assert json.loads(df.evidence.iloc[0])["ndvi_drop"] == 0.3
    geoms = {"P1": {"type": "Point", "coordinates": [19.2, 48.9]}}
    assert write_geojson(alerts, tmp_path / "a.geojson", geoms) == 2
    fc = json.loads((tmp_path / "a.geojson").read_text())
    assert fc["features"][0]["geometry"]["type"] == "Point"
    assert fc["features"][1]["geometry"] is None
    assert fc["features"][0]["properties"]["alert_id"] == alerts[0].alert_id
