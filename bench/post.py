"""The ``post`` benchmark: postings at Moesif's limit through the engine, on a virtual clock.

A batch of credits goes through :class:`reconcile.posting.engine.PostingEngine` and the real
Moesif client to the fake Moesif, which answers 429 past 500 requests in a calendar minute. The
batch's client keeps to its share (``RECONCILE_MOESIF_REQUESTS_PER_MINUTE``'s default); a live
webhook posts alongside through its own client at :data:`WEBHOOK_PER_MINUTE`. Every wait
advances a virtual clock shared by the limiters, the retries, the engine and the fake, so an
hour of posting runs in seconds and nothing sleeps. (The batch posts under a top-up origin, so
the snapshot needs no run row; the engine treats every origin alike.)
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.orm import sessionmaker

from reconcile.config import Secret, Settings
from reconcile.db.engine import make_engine, upgrade_to_head
from reconcile.fakes.moesif import FakeMoesif
from reconcile.moesif.client import MOESIF_RATE_LIMIT, MoesifClient
from reconcile.posting import origin
from reconcile.posting.engine import PostingEngine
from reconcile.posting.entry import Entry
from reconcile.retry import RateLimiter

TOKEN = "bench-token"
START = datetime(2026, 11, 8, tzinfo=UTC)
WEBHOOK_PER_MINUTE = 60
"""The live webhook's pace beside the batch."""
COMPANIES = 50


class VirtualClock:
    """Seconds that pass only when something sleeps."""

    def __init__(self) -> None:
        """Start at zero (``START`` as a wall time)."""
        self.now = 0.0

    def monotonic(self) -> float:
        """Return the seconds elapsed."""
        return self.now

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass at once."""
        self.now += max(seconds, 0.0)

    def utc(self) -> datetime:
        """Return the wall time now."""
        return START + timedelta(seconds=self.now)


BATCH_SHARE: int = Settings.__dataclass_fields__["moesif_requests_per_minute"].default
"""The batch job's default share of Moesif's requests a minute."""


def run(postings: int, scratch: Path) -> dict[str, Any]:
    """Post ``postings`` batch credits with a webhook alongside; return the figures.

    ``limit_share`` is the batch's postings per virtual minute (the last, partial minute left
    out) over its share; ``share_429`` the part of its requests answered 429.
    """
    clock = VirtualClock()
    engine = make_engine(f"sqlite:///{scratch / 'snapshot.db'}")
    upgrade_to_head(engine)
    sessions = sessionmaker(engine)
    began = time.perf_counter()
    with FakeMoesif(TOKEN, rate_limit=MOESIF_RATE_LIMIT, clock=clock.utc) as fake:
        for number in range(COMPANIES):
            fake.add_subscription(f"sub_{number}", f"co_{number}")
        with (
            httpx.Client(base_url=fake.base_url, timeout=30) as batch_http,
            httpx.Client(base_url=fake.base_url, timeout=30) as webhook_http,
        ):
            batch = _engine(sessions, batch_http, BATCH_SHARE, clock)
            webhook = _engine(sessions, webhook_http, WEBHOOK_PER_MINUTE, clock)
            next_webhook = 0.0
            per_minute: Counter[int] = Counter()
            for number in range(postings):
                batch.post(_entry("pi", number), origin=origin.for_top_up("bench-batch"))
                per_minute[int(clock.now // 60)] += 1
                if clock.now >= next_webhook:
                    webhook.post(_entry("wh", number), origin=origin.for_webhook(f"evt_{number}"))
                    next_webhook += 60.0 / WEBHOOK_PER_MINUTE
        exchanges = fake.exchanges
    seconds = time.perf_counter() - began
    engine.dispose()
    batch_sent = [e for e in exchanges if '"pi_' in e.body]
    webhook_sent = [e for e in exchanges if '"wh_' in e.body]
    full = [per_minute[minute] for minute in sorted(per_minute)[:-1]] or list(per_minute.values())
    return {
        "seconds": seconds,
        "virtual_seconds": clock.now,
        "postings": postings,
        "requests": len(exchanges),
        "batch_requests_per_minute": BATCH_SHARE,
        "limit_share": sum(full) / len(full) / BATCH_SHARE,
        "share_429": _share_429(batch_sent),
        "webhook_requests": len(webhook_sent),
        "webhook_share_429": _share_429(webhook_sent),
    }


def _engine(
    sessions: sessionmaker[Any], http: httpx.Client, per_minute: int, clock: VirtualClock
) -> PostingEngine:
    client = MoesifClient(
        http,
        Secret(TOKEN),
        limiter=RateLimiter(per_minute, 60.0, clock=clock.monotonic, sleep=clock.sleep),
        sleep=clock.sleep,
    )
    return PostingEngine(sessions, client, amount_unit="major", clock=clock.utc)


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


def _share_429(sent: list[Any]) -> float | None:
    return sum(1 for e in sent if e.status == 429) / len(sent) if sent else None
