"""Alert sinks: bus topic (``KafkaAlertSink``), signed webhook (``WebhookSink``), files (CSV, GeoJSON).

``dispatch`` fans an alert out to several sinks: a failing sink is logged and reported, the others
still get the alert, and nothing raises (the alert is already in the store).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from alerts.types import Alert

logger = logging.getLogger(__name__)


class Sink(Protocol):
    def send(self, alert: Alert) -> bool: ...


def dispatch(alert: Alert, sinks: Iterable[Sink]) -> dict[str, str]:
    """Send to every sink; returns sink class name → "ok" | "dead-lettered" | error text."""
    out: dict[str, str] = {}
    for sink in sinks:
        name = type(sink).__name__
        try:
            out[name] = "ok" if sink.send(alert) else "dead-lettered"
        except Exception as e:  # one sink's failure must not lose the alert for the others
            logger.error("sink %s failed for alert %s: %s", name, alert.alert_id, e)
            out[name] = f"error: {e}"
    return out
