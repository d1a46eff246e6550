from __future__ import annotations

import random

from reconcile.retry import TIMEOUT, RateLimiter, RetryPolicy, jittered, retry_delay

POLICY = RetryPolicy(max_attempts=4, base_delay=1.0, max_delay=10.0)


def test_transient_statuses_and_timeouts_back_off_exponentially() -> None:
    assert retry_delay(POLICY, 503, {}, 1) == 1.0
    assert retry_delay(POLICY, 502, {}, 2) == 2.0
    assert retry_delay(POLICY, TIMEOUT, {}, 3) == 4.0
    assert retry_delay(POLICY, 429, {}, 4) is None


def test_fatal_statuses_are_not_retried() -> None:
    for status in (400, 401, 403, 404, 409, 500):
        assert retry_delay(POLICY, status, {}, 1) is None


def test_retry_after_is_honoured_and_capped() -> None:
    assert retry_delay(POLICY, 429, {"Retry-After": "3"}, 1) == 3.0
    assert retry_delay(POLICY, 429, {"retry-after": "120"}, 1) == 10.0
    assert retry_delay(POLICY, 429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 1) == 0.0


def test_jitter_stays_in_the_upper_half() -> None:
    rng = random.Random(7)
    samples = [jittered(8.0, rng) for _ in range(200)]
    assert min(samples) >= 4.0
    assert max(samples) <= 8.0
    assert len(set(samples)) > 100


def test_rate_limiter_sleeps_when_the_period_is_full() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(3, 60.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        limiter.acquire()
    assert slept == []
    now[0] = 10.0
    limiter.acquire()
    assert slept == [50.0]
    assert now[0] == 60.0
