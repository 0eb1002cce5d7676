"""Acquisition events: what ingest tells the rest of the pipeline, through a protocol the wiring fills in."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from ingest.types import AcquisitionEvent

logger = logging.getLogger(__name__)

ACQUISITIONS_TOPIC = "sits.acquisitions"


class AcquisitionPublisher(Protocol):
    """Anything with ``publish(topic, key, value)``: the in-process bus, the Kafka bus (monitor/bus.py)."""

    def publish(self, topic: str, key: str, value: dict[str, Any]) -> Any: ...


class NullPublisher:
    """Publishes nothing (ingest without a monitor)."""

    def publish(self, topic: str, key: str, value: dict[str, Any]) -> None:
        logger.debug("not published (no bus): %s %s", topic, key)


class RecordingPublisher:
    """Keeps every message in a list (tests, dry runs)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str, dict[str, Any]]] = []

    def publish(self, topic: str, key: str, value: dict[str, Any]) -> None:
        self.messages.append((topic, key, value))


def publish_acquisition(publisher: AcquisitionPublisher, event: AcquisitionEvent) -> None:
    publisher.publish(ACQUISITIONS_TOPIC, event.tile_id, event.to_message())
