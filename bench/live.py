"""Time the live path end to end: signed webhook deliveries to Moesif holding each credit.

Usage: python -m bench.live [--events N] [--senders K] [--rate R] [--postgres ADMIN_URL]

Starts ``serve`` in-process on 127.0.0.1 (its event worker running) over the fake Stripe and the
fake Moesif (its rate limit off, the client's limiter wide open), delivers N
``payment_intent.succeeded`` events signed as Stripe signs them, each twice, from K threads,
and waits until Moesif holds every credit. Prints one JSON line: events per second (first
delivery to last credit) and the latency from an event's first delivery to Moesif receiving
its credit (median, p95), in milliseconds. ``--rate R`` paces the deliveries at R events a
second from one sender instead (latency when the worker keeps up, not queueing behind a burst).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import uvicorn
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.orm import sessionmaker

from reconcile.clients import utc_now
from reconcile.config import Secret, ServeSettings, Settings
from reconcile.db.engine import make_engine, upgrade_to_head
from reconcile.domain.values import Entry
from reconcile.fakes.moesif import Exchange, FakeMoesif
from reconcile.fakes.stripe import FakeStripe, sign
from reconcile.moesif.client import MoesifClient
from reconcile.posting.engine import PostingEngine
from reconcile.posting.outcome import Outcome
from reconcile.retry import RateLimiter
from reconcile.serve.app import ServeParts, create_app
from reconcile.serve.destinations import Destinations
from reconcile.serve.limits import server_config
from reconcile.stripe.client import build_stripe_client

KEY = "sk_test_bench"
TOKEN = "bench-token"
SECRET = "whsec_bench"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.live")
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--rate", type=float)
    parser.add_argument("--postgres", help="PostgreSQL URL to make a scratch database with")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as scratch,
        FakeStripe(api_key=KEY) as stripe,
        FakeMoesif(token=TOKEN, rate_limit=10**9) as moesif,
    ):
        with scratch_database(args.postgres, Path(scratch)) as url:
            print(json.dumps(measure(stripe, moesif, url, args.events, args.senders, args.rate)))


@contextlib.contextmanager
def scratch_database(admin_url: str | None, scratch: Path) -> Iterator[str]:
    """Yield an empty database: SQLite in ``scratch``, or a new PostgreSQL one dropped after."""
    if admin_url is None:
        yield f"sqlite:///{scratch / 'live.db'}"
        return
    name = f"reconcile_bench_live_{os.getpid()}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def measure(
    stripe: FakeStripe,
    moesif: FakeMoesif,
    database_url: str,
    count: int,
    senders: int,
    rate: float | None = None,
) -> dict[str, object]:
    moesif.add_subscription("sub_bench", "co_bench")
    customer = stripe.add_customer(
        metadata={"moesif_company_id": "co_bench", "moesif_subscription_id": "sub_bench"}
    )
    payments = [stripe.add_payment_intent(customer, 100 + n) for n in range(count)]
    for payment in payments:
        stripe.emit_event("payment_intent.succeeded", "payment_intent", payment)
    events = stripe.events()

    credited: dict[str, float] = {}
    all_in = threading.Event()

    def note(exchange: Exchange) -> None:
        if exchange.method == "POST":
            credited.setdefault(json.loads(exchange.body)["transaction_id"], time.perf_counter())
            if len(credited) == count:
                all_in.set()

    moesif.on_request = note
    settings = Settings(
        stripe_api_key=Secret(KEY),
        moesif_token=Secret(TOKEN),
        stripe_api_base=stripe.base_url,
        moesif_api_base=moesif.base_url,
        stripe_max_requests_per_second=1000,
        database_url=database_url,
    )
    engine = make_engine(database_url)
    upgrade_to_head(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    with httpx.Client(base_url=moesif.base_url, timeout=30) as http:
        client = MoesifClient(http, Secret(TOKEN), limiter=RateLimiter(10**9, 60.0))
        posting = PostingEngine(sessions, client, amount_unit="major", clock=utc_now)

        def post(order: Entry, origin: str) -> Outcome:
            return posting.post(order, origin=origin)

        app = create_app(
            ServeParts(
                settings=ServeSettings((Secret(SECRET),), Secret("bench")),
                sessions=sessions,
                stripe_client=build_stripe_client(settings),
                post=post,
                destinations=Destinations(sessions, client, utc_now),
                clock=utc_now,
            )
        )
        server = uvicorn.Server(server_config(app, "127.0.0.1", 0))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        sent = deliver(f"http://127.0.0.1:{port}/webhooks/stripe", events, senders, rate)
        all_in.wait(600)
        server.should_exit = True
        thread.join(60)
    database = engine.dialect.name
    engine.dispose()
    latencies = sorted((credited[pi] - sent[pi]) * 1000 for pi in payments if pi in credited)
    span = max(credited.values()) - min(sent.values())
    return {
        "events": count,
        "paced_per_second": rate,
        "deliveries": 2 * count,
        "database": database,
        "credited": len(credited),
        "moesif_posts": len(moesif.posts),
        "events_per_second": round(len(credited) / span, 1),
        "latency_ms": {
            "median": round(statistics.median(latencies), 1),
            "p95": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
        },
    }


def deliver(
    url: str, events: list[dict[str, object]], senders: int, rate: float | None
) -> dict[str, float]:
    """Deliver each event twice (the copies in a row); return when each was first sent."""
    sent: dict[str, float] = {}

    def one(event: dict[str, object]) -> None:
        body = json.dumps(event)
        payment = json.loads(body)["data"]["object"]["id"]
        with httpx.Client(timeout=60) as http:
            for _copy in range(2):
                sent.setdefault(payment, time.perf_counter())
                http.post(
                    url,
                    content=body.encode(),
                    headers={"Stripe-Signature": sign(body, SECRET, int(time.time()))},
                )

    if rate:
        start = time.perf_counter()
        for number, event in enumerate(events):
            time.sleep(max(0.0, start + number / rate - time.perf_counter()))
            one(event)
        return sent
    with ThreadPoolExecutor(max_workers=senders) as pool:
        list(pool.map(one, events))
    return sent


if __name__ == "__main__":
    main()
