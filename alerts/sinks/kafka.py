"""Publish alerts on the bus topic ``sits.alerts`` (key: parcel_id, value: the alert JSON).

``alerts`` does not import ``monitor``: the publisher is any object with
``publish(topic, key, value)`` (``monitor.bus.Bus`` provides it; the wiring plugs it in).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from alerts.errors import SinkError
from alerts.types import Alert

logger = logging.getLogger(__name__)

ALERTS_TOPIC = "sits.alerts"


@runtime_checkable
class Publisher(Protocol):
    def publish(self, topic: str, key: str, value: dict[str, Any]) -> None: ...


class KafkaAlertSink:
    """Sends each alert to ``topic`` through a ``Publisher``; a failure raises ``SinkError``."""

    def __init__(self, publisher: Publisher, topic: str = ALERTS_TOPIC) -> None:
        if not isinstance(publisher, Publisher):
            raise TypeError("publisher must have publish(topic, key, value)")
        self.publisher = publisher
        self.topic = topic

    def send(self, alert: Alert) -> bool:
        try:
            self.publisher.publish(self.topic, alert.parcel_id, json.loads(alert.to_json()))
        except Exception as e:
            raise SinkError(f"publishing alert {alert.alert_id} to {self.topic} failed: {e}") from e
        return True

    def send_many(self, alerts: Iterable[Alert]) -> int:
        n = 0
        for a in alerts:
            self.send(a)
            n += 1
        flush = getattr(self.publisher, "flush", None)
        if callable(flush):
            flush()
        return n
