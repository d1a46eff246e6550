"""The lookup's cache: one fetch per key however many slices miss it at once; bounded."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from reconcile.stripe.mapping import _Cache, _Flight


def test_concurrent_misses_on_a_key_fetch_it_once() -> None:
    cache = _Cache()
    fetching, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def slow() -> str:
        calls.append("first")
        fetching.set()
        release.wait(10)
        return "customer"

    def again() -> str:
        calls.append("again")
        return "customer, fetched twice"

    asking = threading.Barrier(4)

    def ask() -> str:
        asking.wait(10)
        return cache.get("cus_1", again)

    with ThreadPoolExecutor(max_workers=4) as pool:
        leader = pool.submit(cache.get, "cus_1", slow)
        fetching.wait(10)
        followers = [pool.submit(ask) for _ in range(3)]
        asking.wait(10)
        release.set()
        answers = [leader.result(10)] + [follower.result(10) for follower in followers]
    assert calls == ["first"]
    assert answers == ["customer"] * 4


def test_a_failed_fetch_reaches_its_waiters_and_is_not_kept() -> None:
    cache = _Cache()

    def broken() -> str:
        raise RuntimeError("Stripe is down")

    with pytest.raises(RuntimeError, match="down"):
        cache.get("cus_1", broken)
    assert cache.get("cus_1", lambda: "customer") == "customer"


def test_followers_waiting_on_a_failing_fetch_get_its_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = _Cache()
    fetching, release = threading.Event(), threading.Event()
    waiting = threading.Semaphore(0)
    result = _Flight.result

    def waited(flight: _Flight) -> object:
        waiting.release()
        return result(flight)

    monkeypatch.setattr(_Flight, "result", waited)

    def broken() -> str:
        fetching.set()
        release.wait(10)
        raise RuntimeError("Stripe is down")

    with ThreadPoolExecutor(max_workers=3) as pool:
        leader = pool.submit(cache.get, "cus_1", broken)
        fetching.wait(10)
        followers = [pool.submit(cache.get, "cus_1", lambda: "fetched again") for _ in range(2)]
        assert all(waiting.acquire(timeout=10) for _ in followers), "both followers wait"
        release.set()
        for asked in [leader, *followers]:
            with pytest.raises(RuntimeError, match="down"):
                asked.result(10)


def test_the_least_recently_used_answer_is_evicted_beyond_the_size() -> None:
    cache = _Cache(size=2)
    cache.get("a", lambda: 1)
    cache.get("b", lambda: 2)
    cache.get("a", lambda: -1)  # a is now the most recently used
    cache.get("c", lambda: 3)
    assert cache.get("a", lambda: -1) == 1
    assert cache.get("b", lambda: 20) == 20
