"""Keyset cursors of the alert queue: the sort key of a page's last alert, as an opaque URL-safe text.

The next page is then an index seek from that key (``AlertQuery.after``), as fast at page 2 000 as at
page 1, and stable while alerts arrive (an offset shifts by every alert inserted before it).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import date, datetime
from typing import Any

from alerts.store import SORT_KEYS, sort_key
from alerts.types import Alert

# how each sort column's value travels in a cursor (JSON has no dates)
_DECODE = {"event_date": date.fromisoformat, "detected_at": datetime.fromisoformat, "confidence": float,
           "alert_id": str}


class CursorError(ValueError):
    """A cursor that is not one this API made, or made for another sort."""


def encode_cursor(alert: Alert, sort: str) -> str:
    key = [v.isoformat() if isinstance(v, date) else v for v in sort_key(alert, sort)]
    raw = json.dumps([sort, key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, sort: str) -> tuple[Any, ...]:
    """The ``after`` key of ``text``; ``CursorError`` when malformed or made for another sort."""
    try:
        made_for, key = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        cols = SORT_KEYS[made_for]
        if len(key) != len(cols):
            raise ValueError("wrong length")
        values = tuple(_DECODE[col](v) for (col, _), v in zip(cols, key, strict=True))
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError) as e:
        raise CursorError("malformed cursor: pass the next_cursor of a previous page unchanged") from e
    if made_for != sort:
        raise CursorError(f"the cursor was made for sort {made_for!r}, not {sort!r}")
    return values
