"""Faults the fake Stripe injects: error statuses (429, 5xx), slow answers, spoiled bodies.

A test queues them; each request takes the next one before doing any work. A slow answer long
enough is a timeout to the client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from reconcile.fakes.stripe.errors import StripeApiError

GARBLED = {
    "html": b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
    "truncated": b'{"object": "list", "data": [{"id": "pi_',
    "array": b'[{"id": "pi_1", "object": "payment_intent"}]',
    "non_utf8": b'{"object": "list", "data": [], "url": "\xff\xfe"}',
}
"""Spoiled bodies :meth:`FaultInjection.garble_next` answers with."""


@dataclass
class Fault:
    """An error status the next ``remaining`` requests are answered with."""

    status: int
    headers: dict[str, str]
    remaining: int


@dataclass(frozen=True)
class Garble:
    """A spoiled body (a key of :data:`GARBLED`) one request is answered with, and its status."""

    kind: str
    status: int


class FaultInjection:
    """The fault side of the fake: what tests queue, and what each request takes from the queue."""

    def __init__(self) -> None:
        """Queue nothing yet."""
        self._fault_lock = threading.Lock()
        self._faults: list[Fault] = []
        self._delays: list[float] = []
        self._garbles: list[Garble] = []

    def fail_next(
        self, status: int, count: int = 1, headers: Mapping[str, str] | None = None
    ) -> None:
        """Answer the next ``count`` requests with ``status`` (and ``headers``) before any work."""
        with self._fault_lock:
            self._faults.append(Fault(status, dict(headers or {}), count))

    def clear_faults(self) -> None:
        """Drop every fault and delay not yet used."""
        with self._fault_lock:
            self._faults.clear()
            self._delays.clear()

    def delay_next(self, seconds: float, count: int = 1) -> None:
        """Wait ``seconds`` before answering each of the next ``count`` requests."""
        with self._fault_lock:
            self._delays.extend([seconds] * count)

    def garble_next(self, kind: str = "html", count: int = 1, status: int = 200) -> None:
        """Answer the next ``count`` requests with ``status`` and a spoiled body, doing no work.

        ``kind`` is ``html`` (a proxy's error page), ``truncated`` (a list cut in half),
        ``array`` (a JSON array where an object belongs) or ``non_utf8`` (bytes that are not
        UTF-8).
        """
        if kind not in GARBLED:
            raise ValueError(f"unknown garble {kind!r}; one of {', '.join(GARBLED)}")
        with self._fault_lock:
            self._garbles.extend([Garble(kind, status)] * count)

    def _pause(self) -> None:
        """Wait as long as the next queued delay says, if any."""
        with self._fault_lock:
            delay = self._delays.pop(0) if self._delays else 0.0
        if delay > 0:
            time.sleep(delay)

    def _take_garble(self) -> Garble | None:
        with self._fault_lock:
            return self._garbles.pop(0) if self._garbles else None

    def _take_fault(self) -> Fault | None:
        with self._fault_lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.pop(0)
            return fault


def fault_error(fault: Fault) -> StripeApiError:
    """Return the error Stripe answers with that status: a rate limit, or an API error."""
    if fault.status == 429:
        return StripeApiError(
            429,
            "Too many requests hit the API too quickly.",
            headers=fault.headers,
            code="rate_limit",
        )
    return StripeApiError(
        fault.status, "An unknown error occurred.", error_type="api_error", headers=fault.headers
    )
