"""The ``post`` benchmark: the batch posting at its share while a webhook stream posts its own.

Two callers post to the fake Moesif, which answers 429 past 500 requests in a calendar minute
of the virtual clock (and does not count what it refuses):

* the batch: ``postings`` credits through :class:`reconcile.posting.engine.PostingEngine` and a
  Moesif client kept to the job's share (:func:`reconcile.clients.batch_limiter`,
  ``RECONCILE_MOESIF_REQUESTS_PER_MINUTE``), as a run posts: one read of Moesif before its first
  send, then one POST each;
* the live path: a stream of webhook credits arriving at random (Poisson, ``webhook_per_minute``
  on average, so some minutes bring more than its share), each posted when it arrives or as
  soon as the one before is done, through an engine and client of its own kept to what the
  batch leaves (:func:`reconcile.clients.live_limiter`), as ``reconcile serve`` posts: a read of
  Moesif around each posting, then its POST.

Both retry 429s as the client does (``Retry-After``). Time is virtual: each caller has its own
time, advanced only by its waits (limiter, retries) and, for the live path, by waiting for the
next event; the caller whose time is earliest sends next, so their requests interleave as two
processes' would, and an hour of posting runs in seconds without sleeping. Request processing
itself takes no virtual time, which is the worst case for the limit: every request is sent as
soon as its limiter allows.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.orm import sessionmaker

from reconcile.clients import batch_limiter, live_limiter
from reconcile.config import Secret, Settings
from reconcile.db.engine import make_engine, upgrade_to_head
from reconcile.domain import origin
from reconcile.domain.values import Entry
from reconcile.fakes.moesif import Exchange, FakeMoesif
from reconcile.moesif.client import MOESIF_RATE_LIMIT, MoesifClient
from reconcile.posting.engine import PostingEngine
from reconcile.posting.first_read import ReadOnce
from reconcile.retry import RateLimiter

TOKEN = "bench-token"
CALLER = "x-bench-caller"
"""The header each caller's client sends, so that the figures tell their requests apart."""
START = datetime(2026, 11, 8, tzinfo=UTC)
WEBHOOK_PER_MINUTE = 90
"""The live stream's average pace: near its share (500 less the batch's 400), so bursts press
on its limiter."""
COMPANIES = 50
SEED = 3

BATCH_SHARE: int = Settings.__dataclass_fields__["moesif_requests_per_minute"].default
"""The batch job's default share of Moesif's requests a minute."""


class VirtualClock:
    """Seconds that pass only when the caller now sending waits; each caller keeps its own."""

    def __init__(self) -> None:
        """Start at zero (``START`` as a wall time)."""
        self.now = 0.0

    def monotonic(self) -> float:
        """Return the seconds elapsed for the caller now sending."""
        return self.now

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass at once for the caller now sending: a microsecond at least.

        A real sleep always lets some time pass; without that, a limiter whose wait rounds to
        nothing on a clock of large floats would wait for ever.
        """
        self.now += max(seconds, 1e-6)

    def utc(self) -> datetime:
        """Return the wall time now."""
        return START + timedelta(seconds=self.now)


class _Caller:
    """One poster: its engine, its own time, and what it still has to post."""

    def __init__(self, name: str, engine: PostingEngine, origin_of: Callable[[int], str]) -> None:
        self.name = name
        self.engine = engine
        self.origin_of = origin_of
        self.time = 0.0
        self.queue: list[tuple[float, Entry]] = []
        """(arrival, entry) in arrival order."""
        self.latencies: list[float] = []
        self.posted = 0

    def ready_at(self) -> float:
        return max(self.time, self.queue[0][0]) if self.queue else float("inf")

    def step(self, clock: VirtualClock) -> None:
        arrival, entry = self.queue.pop(0)
        clock.now = max(self.time, arrival)
        self.engine.post(entry, origin=self.origin_of(self.posted))
        self.time = clock.now
        self.latencies.append(clock.now - arrival)
        self.posted += 1


def run(
    postings: int,
    scratch: Path,
    *,
    batch_share: int = BATCH_SHARE,
    webhook_per_minute: float = WEBHOOK_PER_MINUTE,
) -> dict[str, Any]:
    """Post ``postings`` batch credits while the webhook stream posts; return the figures.

    ``limit_share`` is the batch's admitted requests per virtual minute over its share, over
    the minutes it spent wholly posting (``None`` when it was done within the first minute);
    ``share_429`` the part of its requests answered 429, ``webhook_share_429`` the stream's.
    """
    settings = Settings(
        stripe_api_key=Secret("unused"),
        moesif_token=Secret(TOKEN),
        moesif_requests_per_minute=batch_share,
    )
    clock = VirtualClock()
    engine = make_engine(f"sqlite:///{scratch / 'snapshot.db'}")
    upgrade_to_head(engine)
    sessions = sessionmaker(engine)
    sent_at: list[float] = []
    began = time.perf_counter()
    with FakeMoesif(TOKEN, rate_limit=MOESIF_RATE_LIMIT, clock=clock.utc) as fake:
        for number in range(COMPANIES):
            fake.add_subscription(f"sub_{number}", f"co_{number}")

        def note(_exchange: Exchange) -> None:
            sent_at.append(clock.now)

        fake.on_request = note
        batch_limit = batch_limiter(settings, clock.sleep, clock.monotonic)
        live_limit = live_limiter(settings, clock.sleep, clock.monotonic)
        with (
            httpx.Client(
                base_url=fake.base_url, timeout=30, headers=_caller("batch")
            ) as batch_http,
            httpx.Client(
                base_url=fake.base_url, timeout=30, headers=_caller("webhook")
            ) as live_http,
        ):
            orders = [_entry("pi", number) for number in range(postings)]
            batch = _Caller(
                "batch",
                _engine(sessions, batch_http, settings, batch_limit, clock, orders),
                lambda _n: origin.for_top_up("bench-batch"),
            )
            batch.queue = [(0.0, entry) for entry in orders]
            live = _Caller(
                "webhook",
                _engine(
                    sessions,
                    live_http,
                    settings,
                    live_limit,
                    clock,
                ),
                lambda n: origin.for_webhook(f"evt_{n}"),
            )
            _simulate(batch, live, clock, webhook_per_minute)
        exchanges = fake.exchanges
        admitted = fake.requests_per_minute()
    seconds = time.perf_counter() - began
    engine.dispose()
    if len(sent_at) != len(exchanges):
        raise SystemExit("bench: the fake Moesif's requests and their times do not line up")
    timed = list(zip(sent_at, exchanges, strict=True))
    batch_sent = [(at, e) for at, e in timed if e.headers.get(CALLER) == "batch"]
    webhook_sent = [(at, e) for at, e in timed if e.headers.get(CALLER) == "webhook"]
    per_minute = Counter(int(at // 60) for at, e in batch_sent if e.status != 429)
    full = [per_minute[minute] for minute in range(int(batch.time // 60))]
    latencies = sorted(live.latencies)
    return {
        "seconds": seconds,
        "virtual_seconds": max(batch.time, live.time),
        "postings": postings,
        "batch_requests_per_minute": batch_share,
        "webhook_per_minute": webhook_per_minute,
        "webhook_share": live_limit.limit,
        "requests": len(exchanges),
        "first_reads": sum(1 for e in exchanges if e.method == "GET" and e.status != 429),
        "batch_requests": len(batch_sent),
        "limit_share": sum(full) / len(full) / batch_share if full else None,
        "batch_429": _count_429(batch_sent),
        "share_429": _share_429(batch_sent),
        "webhook_events": live.posted,
        "webhook_requests": len(webhook_sent),
        "webhook_429": _count_429(webhook_sent),
        "webhook_share_429": _share_429(webhook_sent),
        "webhook_latency_seconds": {
            "median": round(statistics.median(latencies), 1) if latencies else None,
            "p95": round(latencies[int(0.95 * (len(latencies) - 1))], 1) if latencies else None,
            "max": round(latencies[-1], 1) if latencies else None,
        },
        "busiest_minute": max(admitted.values(), default=0),
    }


def _simulate(batch: _Caller, live: _Caller, clock: VirtualClock, per_minute: float) -> None:
    """Send, caller by caller, whichever is ready first, until the batch is done.

    Webhook events arrive until the batch's last posting; the stream's queue is then drained.
    """
    arrivals = random.Random(SEED)
    next_arrival = arrivals.expovariate(per_minute / 60) if per_minute > 0 else float("inf")
    number = 0
    while batch.queue or live.queue:
        while batch.queue and next_arrival <= batch.ready_at():
            live.queue.append((next_arrival, _entry("wh", number)))
            number += 1
            next_arrival += arrivals.expovariate(per_minute / 60)
        caller = min((batch, live), key=_Caller.ready_at)
        caller.step(clock)


def _engine(
    sessions: sessionmaker[Any],
    http: httpx.Client,
    settings: Settings,
    limiter: RateLimiter,
    clock: VirtualClock,
    batch: list[Entry] | None = None,
) -> PostingEngine:
    """An engine as a run builds it (one read of Moesif for a ``batch``) or as ``serve`` does."""
    client = MoesifClient(
        http,
        settings.moesif_token,
        policy=settings.retry_policy(),
        limiter=limiter,
        sleep=clock.sleep,
    )
    first_read = None if batch is None else ReadOnce(client, clock.utc, batch)
    return PostingEngine(
        sessions, client, amount_unit="major", clock=clock.utc, first_read=first_read
    )


def _caller(name: str) -> dict[str, str]:
    return {CALLER: name}


def _entry(prefix: str, number: int) -> Entry:
    company = number % COMPANIES
    return Entry(
        transaction_id=f"{prefix}_{number:09d}",
        company_id=f"co_{company}",
        subscription_id=f"sub_{company}",
        entry_type="credit",
        amount_minor=1000,
        currency="usd",
        description="bench top-up",
    )


def _count_429(sent: list[tuple[float, Exchange]]) -> int:
    return sum(1 for _, exchange in sent if exchange.status == 429)


def _share_429(sent: list[tuple[float, Exchange]]) -> float | None:
    return _count_429(sent) / len(sent) if sent else None
