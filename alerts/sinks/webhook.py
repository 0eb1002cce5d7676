"""Webhook sink: POST the alert JSON, HMAC-SHA256 signed, retried with backoff, dead-lettered.

The body is the alert JSON (UTF-8). Header ``X-Sitsmon-Signature: sha256=<hex>`` is
HMAC-SHA256(secret, body); receivers recompute it over the raw body (``verify_signature``).
A 2xx answer is success; timeouts, connection errors, 5xx and 429 are retried up to
``max_attempts`` times with exponential backoff; other 4xx are not retried. After the last failure
the alert is appended to the dead-letter file (JSON lines: alert, url, error, attempts, when), so
nothing is lost; ``redeliver`` retries the dead letters later.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from alerts.types import Alert

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Sitsmon-Signature"


def sign(secret: bytes | str, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes | str, body: bytes, header: str) -> bool:
    return hmac.compare_digest(sign(secret, body), header or "")


class WebhookSink:
    def __init__(
        self,
        url: str,
        secret: str | bytes,
        dead_letter: str | Path,
        *,
        max_attempts: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        timeout_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be http(s), got {url!r}")
        if not secret:
            raise ValueError("webhook secret must not be empty")
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.url = url
        self.secret = secret
        self.dead_letter = Path(dead_letter)
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self._sleep = sleep
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s))

    def _attempt(self, body: bytes) -> tuple[bool, bool, str]:
        """(ok, retryable, reason)."""
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self.secret, body)}
        try:
            r = self._client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException as e:
            return False, True, f"timeout after {self.timeout_s:g} s ({type(e).__name__})"
        except httpx.HTTPError as e:
            return False, True, f"{type(e).__name__}: {e}"
        if 200 <= r.status_code < 300:
            return True, False, ""
        retry = r.status_code >= 500 or r.status_code in (408, 429)
        return False, retry, f"HTTP {r.status_code}"

    def send(self, alert: Alert) -> bool:
        """Deliver one alert; False when it went to the dead letter (never raises for delivery)."""
        body = alert.to_json().encode()
        reason = ""
        attempts = 0
        for attempt in range(1, self.max_attempts + 1):
            attempts = attempt
            ok, retry, reason = self._attempt(body)
            if ok:
                return True
            logger.warning(
                "webhook attempt %d/%d for %s failed: %s", attempt, self.max_attempts, alert.alert_id, reason
            )
            if not retry or attempt == self.max_attempts:
                break
            self._sleep(min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)))
        self._dead_letter(alert, reason, attempts)
        return False

    def _dead_letter(self, alert: Alert, reason: str, attempts: int) -> None:
        record = {
            "alert": json.loads(alert.to_json()),
            "url": self.url,
            "error": reason,
            "attempts": attempts,
            "when": datetime.now(UTC).isoformat(),
        }
        with self._lock:
            self.dead_letter.parent.mkdir(parents=True, exist_ok=True)
            with self.dead_letter.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        logger.error("alert %s dead-lettered to %s: %s", alert.alert_id, self.dead_letter, reason)

    def dead_letters(self) -> list[dict]:
        if not self.dead_letter.is_file():
            return []
        return [json.loads(line) for line in self.dead_letter.read_text().splitlines() if line.strip()]

    def redeliver(self) -> tuple[int, int]:
        """Retry every dead letter; the ones that fail again stay. Returns (delivered, remaining)."""
        with self._lock:
            records = self.dead_letters()
            self.dead_letter.unlink(missing_ok=True)
        delivered = 0
        for rec in records:
            if self.send(Alert.model_validate(rec["alert"])):
                delivered += 1
        return delivered, len(records) - delivered

    def close(self) -> None:
        self._client.close()
