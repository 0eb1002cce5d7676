"""Dead letters: a record the monitor cannot use goes to a side topic with the reason, and the
stream goes on (the caller commits past it)."""

from __future__ import annotations

import json
from typing import Any

from monitor.bus.base import Bus, BusError, Message

__all__ = ["DEAD_LETTER_SCHEMA", "DEFAULT_DEAD_LETTER_TOPIC", "dead_letter"]

DEFAULT_DEAD_LETTER_TOPIC = "sits.acquisitions.dlq"
DEAD_LETTER_SCHEMA = "sitsmon.dead_letter/1"


def dead_letter(
    bus: Bus,
    message: Message,
    reason: str,
    topic: str = DEFAULT_DEAD_LETTER_TOPIC,
    *,
    flush: bool = True,
) -> dict[str, Any]:
    """Publish ``message`` to ``topic`` under its original key, with its raw value and ``reason``.

    The value is ``{schema, reason, error, source: {topic, partition, offset}, key, value}``:
    ``value`` is the original value as text (what was on the bus, undecodable bytes
    backslash-escaped), ``error`` the decoding error if there was one. Flushes by default, so that
    the dead letter is durable before the caller commits past the original. Returns the value sent.
    """
    if not isinstance(message, Message):
        raise BusError(f"dead_letter takes a bus Message, got {type(message).__name__}")
    if not isinstance(reason, str) or not reason.strip():
        raise BusError(f"dead letter of {message.where}: the reason must be a non-empty string")
    raw = message.raw_value
    if raw is None:
        raw = json.dumps(message.value, separators=(",", ":"), ensure_ascii=False)
    value = {
        "schema": DEAD_LETTER_SCHEMA,
        "reason": reason,
        "error": message.error,
        "source": {"topic": message.topic, "partition": message.partition, "offset": message.offset},
        "key": message.key,
        "value": raw,
    }
    bus.publish(topic, message.key, value)
    if flush:
        bus.flush()
    return value
