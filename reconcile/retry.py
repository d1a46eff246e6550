"""When to retry a request, how long to wait, and how to stay under a request rate.

The decision is a pure function of (status, headers, attempt); the jitter and the sleeping are
separate, so each is testable without waiting. The loop itself is tenacity's
(:func:`call_with_retries`), driven by that decision and sleeping with an injected sleep.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TypeVar

import tenacity

from reconcile.errors import RunFailed

T = TypeVar("T")

TIMEOUT = None
"""The status to pass for a timeout or a lost connection: there was no answer."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry transient failures."""

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    retry_statuses: frozenset[int] = field(default=frozenset({429, 502, 503, 504}))


def retry_delay(
    policy: RetryPolicy, status: int | None, headers: Mapping[str, str], attempt: int
) -> float | None:
    """Return seconds to wait before attempt ``attempt + 1``, or ``None`` to give up.

    Args:
        policy: the limits.
        status: the HTTP status of the answer, or ``None`` for a timeout or lost connection.
        headers: the answer's headers (``Retry-After`` is honoured when sent).
        attempt: how many attempts have been made so far, from 1.
    """
    if attempt >= policy.max_attempts:
        return None
    if status is not None and status not in policy.retry_statuses:
        return None
    backoff = min(policy.max_delay, policy.base_delay * 2.0 ** (attempt - 1))
    advised = _retry_after(headers)
    if advised is not None:
        return min(policy.max_delay, max(advised, 0.0))
    return backoff


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return moment.timestamp() - time.time()


def jittered(delay: float, rng: random.Random | None = None) -> float:
    """Return ``delay`` spread over its upper half, so retrying clients do not move in step."""
    chooser = rng or random
    return delay / 2 + chooser.uniform(0, delay / 2)


def call_with_retries(
    attempt: Callable[[], T],
    delay: Callable[[T, int], float | None],
    wait: Callable[[T, float], float],
    *,
    sleep: Callable[[float], None],
    announce: Callable[[T, int, float], None],
) -> tuple[T, int]:
    """Call ``attempt`` until ``delay`` says stop; return its last result and the attempts made.

    tenacity runs the loop; every choice in it is ours. An exception from ``attempt`` or from
    ``sleep`` ends the loop at once and propagates unchanged.

    Args:
        attempt: makes one attempt and returns what came of it, failures included.
        delay: the pure decision: seconds to wait after that result of attempt ``n`` (from 1),
            or ``None`` to stop and return it.
        wait: turns the decided delay into the seconds actually slept (the jitter).
        sleep: how to wait (tests inject a fake; a deadline may refuse a wait by raising).
        announce: told the result, the attempt number and the wait before each sleep.
    """
    made = 0

    def counted() -> T:
        nonlocal made
        made += 1
        return attempt()

    def last(state: tenacity.RetryCallState) -> T:
        if state.outcome is None:  # never: tenacity asks only after an attempt
            raise RuntimeError("no attempt has been made yet")
        result: T = state.outcome.result()
        return result

    def retries(state: tenacity.RetryCallState) -> bool:
        if state.outcome is None or state.outcome.failed:
            return False
        return delay(last(state), state.attempt_number) is not None

    def waits(state: tenacity.RetryCallState) -> float:
        result = last(state)
        return wait(result, delay(result, state.attempt_number) or 0.0)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        announce(last(state), state.attempt_number, state.upcoming_sleep)

    def pause(seconds: float) -> None:
        sleep(float(seconds))  # tenacity hands over its own float subclass

    retrying = tenacity.Retrying(
        retry=retries, wait=waits, sleep=pause, before_sleep=before_sleep, reraise=True
    )
    return retrying(counted), made


class RateLimiter:
    """Allow at most ``limit`` acquisitions per ``period`` seconds, sleeping when over.

    Thread-safe. The clock and the sleep are injectable for tests.
    """

    def __init__(
        self,
        limit: int,
        period: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Start with an empty history of requests."""
        if limit < 1 or period <= 0:
            raise ValueError("a rate limit needs a limit of at least 1 and a positive period")
        self.limit = limit
        self.period = period
        self._clock = clock
        self._sleep = sleep
        self._sent: list[float] = []
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Wait until one more request fits in the rate, then count it."""
        while True:
            with self._lock:
                now = self._clock()
                horizon = now - self.period
                self._sent = [moment for moment in self._sent if moment > horizon]
                if len(self._sent) < self.limit:
                    self._sent.append(now)
                    return
                wait = self._sent[0] - horizon
            self._sleep(wait)


class DeadlineExceeded(RunFailed):
    """The run reached its overall deadline (``RECONCILE_RUN_TIMEOUT``); a rerun resumes."""


@dataclass(frozen=True)
class Deadline:
    """The moment a run must stop by, on an injectable monotonic clock.

    Clients check it before each request and each wait, so no loop or sleep outlives the run.
    """

    at: float
    limit: float
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    @classmethod
    def after(cls, seconds: float, clock: Callable[[], float] = time.monotonic) -> Deadline:
        """Return the deadline ``seconds`` from now on ``clock``."""
        return cls(at=clock() + seconds, limit=seconds, clock=clock)

    @classmethod
    def never(cls) -> Deadline:
        """Return a deadline that is never reached (for callers without a run)."""
        return cls(at=math.inf, limit=math.inf)

    def remaining(self) -> float:
        """Return the seconds left, never below zero."""
        return max(0.0, self.at - self.clock())

    def check(self, what: str) -> None:
        """Raise :class:`DeadlineExceeded` when the deadline has passed, naming ``what`` was next.

        Raises:
            DeadlineExceeded: the run is out of time.
        """
        if self.clock() >= self.at:
            raise DeadlineExceeded(self._message(what))

    def timeout(self, wanted: float) -> float:
        """Return a request timeout no longer than the time left (at least a millisecond)."""
        return max(0.001, min(wanted, self.remaining()))

    def sleeper(self, sleep: Callable[[float], None], what: str) -> Callable[[float], None]:
        """Return ``sleep`` that refuses any wait ending past the deadline.

        The returned function raises :class:`DeadlineExceeded` instead of sleeping beyond it.
        """

        def bounded(seconds: float) -> None:
            if self.clock() + max(0.0, seconds) >= self.at:
                raise DeadlineExceeded(self._message(what))
            sleep(seconds)

        return bounded

    def _message(self, what: str) -> str:
        return (
            f"the run reached its deadline of {_duration_text(self.limit)} "
            f"(RECONCILE_RUN_TIMEOUT) before {what}; a rerun resumes"
        )


def _duration_text(seconds: float) -> str:
    if math.isinf(seconds):
        return "never"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"
