"""The ``ingest`` benchmark: Stripe list pages to stored expected entries, against plain httpx.

The fake Stripe runs in a process of its own (``serve``), seeded with top-ups (each with its
charge and balance transaction) and refunds over :data:`DAYS` days, and serves its lists from an
index. Ours (``ours``): the run's own Stripe client and :func:`reconcile.stripe.extract.extract`
over the window, every entry upserted with ``store_expected`` into a fresh SQLite snapshot. The
yardstick (``yardstick``): a plain ``httpx`` loop reading the same list pages (the same
expansions, so the same bytes), one slice at a time, parsing the JSON and nothing else.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.orm import Session

from reconcile.config import Secret, Settings
from reconcile.db.engine import make_engine, upgrade_to_head
from reconcile.db.expected import store_expected
from reconcile.domain.times import Window
from reconcile.fakes.stripe import FakeStripe
from reconcile.stripe.client import build_stripe_client
from reconcile.stripe.extract import EXPANSIONS, PAGE_LIMIT, SLICE_LENGTH, extract, split_window

API_KEY = "sk_test_bench"
START = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 7
WINDOW = Window(START, START + timedelta(days=DAYS))
CUSTOMERS_PER_TOPUP = 1 / 20
"""One customer per twenty top-ups."""
REFUND_EVERY = 10
"""One top-up in ten is partly refunded."""
LISTS = tuple(EXPANSIONS)


def seed(fake: FakeStripe, size: int) -> None:
    """Give ``fake`` ``size`` top-ups over the window, their charges, and some refunds."""
    customers = [
        fake.add_customer(
            metadata={"moesif_company_id": f"co_{n}", "moesif_subscription_id": f"sub_co_{n}"}
        )
        for n in range(max(1, int(size * CUSTOMERS_PER_TOPUP)))
    ]
    step = DAYS * 86400 / max(size, 1)
    for number in range(size):
        created = START + timedelta(seconds=int(number * step))
        payment = fake.add_payment_intent(
            customers[number % len(customers)], 1000 + number % 7 * 100, created=created
        )
        if number % REFUND_EVERY == 0:
            fake.add_refund(payment, 100, created=created + timedelta(seconds=1))


def serve(size: int) -> int:
    """Seed and serve the fake Stripe until stdin closes; print its URL first."""
    with FakeStripe(api_key=API_KEY, clock=lambda: WINDOW.until) as fake:
        seed(fake, size)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        for name in LISTS:  # build the fake's list indexes before anything is timed
            # Sorting a large store takes a while: no timeout on the warm-up.
            httpx.get(
                f"{fake.base_url}/v1/{name}", params={"limit": 1}, headers=headers, timeout=None
            )
        print(json.dumps({"url": fake.base_url}), flush=True)
        sys.stdin.read()
    return 0


def ours(url: str) -> dict[str, Any]:
    """Extract the window through the run's client and store every entry; time it all."""
    settings = Settings(
        stripe_api_key=Secret(API_KEY),
        moesif_token=Secret("unused"),
        stripe_api_base=url,
        stripe_max_requests_per_second=1_000_000.0,
    )
    with tempfile.TemporaryDirectory(prefix="reconcile-bench-") as scratch:
        engine = make_engine(f"sqlite:///{Path(scratch) / 'snapshot.db'}")
        upgrade_to_head(engine)
        client = build_stripe_client(settings)
        began = time.perf_counter()
        with Session(engine) as session:
            stored = store_expected(
                session,
                extract(client, WINDOW.since, WINDOW.until),
                run_id="bench",
                now=WINDOW.until,
            )
            session.commit()
        seconds = time.perf_counter() - began
        engine.dispose()
    return {"seconds": seconds, "entries": stored}


def yardstick(url: str) -> dict[str, Any]:
    """Read the same list pages with a plain ``httpx`` loop; count the objects."""
    objects = 0
    began = time.perf_counter()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        for piece in split_window(WINDOW, SLICE_LENGTH):
            created = {
                "created[gte]": int(piece.since.timestamp()),
                "created[lt]": int(piece.until.timestamp()),
                "limit": PAGE_LIMIT,
            }
            for name in LISTS:
                params: dict[str, Any] = dict(created)
                params.update(
                    (f"expand[{n}]", path) for n, path in enumerate(EXPANSIONS[name])
                )  # as the SDK encodes a list
                while True:
                    page = http.get(f"/v1/{name}", params=params).raise_for_status().json()
                    objects += len(page["data"])
                    if not page["has_more"]:
                        break
                    params["starting_after"] = page["data"][-1]["id"]
    return {"seconds": time.perf_counter() - began, "objects": objects}
