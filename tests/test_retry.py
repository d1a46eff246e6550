from __future__ import annotations

import random

import pytest

from reconcile.retry import (
    TIMEOUT,
    RateLimiter,
    RetryPolicy,
    call_with_retries,
    jittered,
    retry_delay,
)

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


def test_the_loop_follows_the_decision_and_sleeps_only_through_the_injected_sleep() -> None:
    answers = iter([503, 429, 200])
    slept: list[float] = []
    told: list[tuple[int, int, float]] = []

    def delay(status: int, attempt: int) -> float | None:
        return None if status == 200 else retry_delay(POLICY, status, {}, attempt)

    status, attempts = call_with_retries(
        lambda: next(answers),
        delay,
        lambda status, seconds: seconds + 0.25,
        sleep=slept.append,
        announce=lambda status, attempt, seconds: told.append((status, attempt, seconds)),
    )
    assert (status, attempts) == (200, 3)
    assert slept == [1.25, 2.25]
    assert all(type(seconds) is float for seconds in slept)
    assert told == [(503, 1, 1.25), (429, 2, 2.25)]


def test_the_loop_returns_the_last_answer_when_the_decision_stops() -> None:
    slept: list[float] = []
    status, attempts = call_with_retries(
        lambda: 503,
        lambda status, attempt: retry_delay(POLICY, status, {}, attempt),
        lambda status, seconds: seconds,
        sleep=slept.append,
        announce=lambda status, attempt, seconds: None,
    )
    assert (status, attempts) == (503, POLICY.max_attempts)
    assert slept == [1.0, 2.0, 4.0]


def test_an_exception_from_an_attempt_or_a_sleep_ends_the_loop_unchanged() -> None:
    def broken() -> int:
        raise KeyError("no answer at all")

    with pytest.raises(KeyError, match="no answer at all"):
        call_with_retries(
            broken,
            lambda status, attempt: 1.0,
            lambda status, seconds: seconds,
            sleep=lambda seconds: None,
            announce=lambda status, attempt, seconds: None,
        )

    def refused(seconds: float) -> None:
        raise TimeoutError("past the deadline")

    with pytest.raises(TimeoutError, match="past the deadline"):
        call_with_retries(
            lambda: 503,
            lambda status, attempt: 1.0,
            lambda status, seconds: seconds,
            sleep=refused,
            announce=lambda status, attempt, seconds: None,
        )
