"""The live path over real HTTP: concurrent duplicates, Moesif down, the nightly run beside it."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from reconcile.clients import open_clients
from reconcile.config import Secret, Settings
from reconcile.db.models import WebhookEvent
from reconcile.fakes.moesif import FakeMoesif
from reconcile.fakes.stripe import FakeStripe, sign
from reconcile.request import RunRequest
from reconcile.run import execute
from reconcile.serve import inbox
from reconcile.serve.worker import EventWorker
from tests.serve.conftest import MOESIF_TOKEN, SECRET, STRIPE_KEY, Served


def mapped_customer(fake: FakeStripe) -> str:
    return fake.add_customer(
        metadata={"moesif_company_id": "co_1", "moesif_subscription_id": "sub_m1"}
    )


def paid_events(fake: FakeStripe, count: int) -> list[str]:
    """Create ``count`` paid top-ups and their ``payment_intent.succeeded`` events."""
    customer = mapped_customer(fake)
    payments = [fake.add_payment_intent(customer, 100 + number) for number in range(count)]
    for payment in payments:
        fake.emit_event("payment_intent.succeeded", "payment_intent", payment)
    return payments


def deliver_concurrently(
    urls: Sequence[str], events: list[dict[str, object]], copies: int
) -> list[int]:
    """POST every event ``copies`` times, signed as Stripe signs, over ``urls``, 16 at once."""
    jobs = [(urls[n % len(urls)], event) for n, event in enumerate(events * copies)]

    def one(job: tuple[str, dict[str, object]]) -> int:
        url, event = job
        body = json.dumps(event)
        header = sign(body, SECRET, int(time.time()))
        answer = httpx.post(
            f"{url}/webhooks/stripe",
            content=body.encode(),
            headers={"Content-Type": "application/json", "Stripe-Signature": header},
            timeout=60,
        )
        return answer.status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(one, jobs))


def posts_per_id(moesif: FakeMoesif) -> Counter[str]:
    return moesif.applied_counts()


def statuses(sessions: sessionmaker[Session]) -> Counter[str]:
    with sessions() as session:
        return Counter(session.scalars(select(WebhookEvent.status)))


def drain_until_settled(served: Served, workers: Sequence[EventWorker]) -> None:
    """Drain with every worker at once, moving the clock past short retries, until none pend."""
    for _round in range(50):
        threads = [threading.Thread(target=worker.drain) for worker in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        pending = statuses(served.sessions)
        if not (pending["received"] + pending["retry"]):
            return
        served.clock.moment += timedelta(seconds=2)
    raise AssertionError(f"events still pending: {statuses(served.sessions)}")


def test_200_concurrent_deliveries_with_duplicates_post_each_id_once(
    make_served: Callable[..., Served],
) -> None:
    served = make_served()
    payments = paid_events(served.stripe, 100)
    answers = deliver_concurrently([served.url], served.stripe.events(), copies=2)

    assert answers == [200] * 200
    assert statuses(served.sessions) == {"received": 100}
    second = EventWorker(
        served.sessions,
        served.worker._stripe,
        served.worker._post,
        destinations=served.worker._destinations,
        clock=served.clock,
    )
    drain_until_settled(served, [served.worker, second])
    assert posts_per_id(served.moesif) == Counter({payment: 1 for payment in payments})
    assert statuses(served.sessions) == {"posted": 100}


def test_events_arriving_while_moesif_is_down_are_recorded_then_posted_once_it_is_back(
    served: Served,
) -> None:
    payments = paid_events(served.stripe, 3)
    served.moesif.on_request = lambda _exchange: "drop"
    served.stripe.configure_webhook(f"{served.url}/webhooks/stripe", SECRET, duplicates=True)

    assert served.stripe.deliver() == [200] * 6
    served.worker.drain()
    assert statuses(served.sessions) == {"retry": 3}
    assert served.moesif.posts == []

    served.moesif.on_request = None
    served.clock.moment += inbox.backoff(1) + timedelta(seconds=1)
    served.worker.drain()
    assert statuses(served.sessions) == {"posted": 3}
    assert posts_per_id(served.moesif) == Counter({payment: 1 for payment in payments})


def nightly(served: Served, engine: Engine, tmp_path: Path) -> int:
    """Run the nightly job on the same database and fakes; return how many it posted."""
    settings = Settings(
        stripe_api_key=Secret(STRIPE_KEY),
        moesif_token=Secret(MOESIF_TOKEN),
        stripe_api_base=served.stripe.base_url,
        moesif_api_base=served.moesif.base_url,
        database_url=engine.url.render_as_string(hide_password=False),
        report_dir=tmp_path / "reports",
    )
    since = served.clock.moment - timedelta(days=1)
    with open_clients(settings, sleep=lambda _seconds: None) as clients:
        return execute(settings, RunRequest(since=since, trigger="test"), clients).posted


def test_a_webhook_then_the_nightly_run_posts_nothing_more(
    served: Served, engine: Engine, tmp_path: Path
) -> None:
    [payment] = paid_events(served.stripe, 1)
    served.stripe.configure_webhook(f"{served.url}/webhooks/stripe", SECRET, duplicates=True)
    assert served.stripe.deliver() == [200, 200]
    served.worker.drain()
    assert posts_per_id(served.moesif) == {payment: 1}

    assert nightly(served, engine, tmp_path) == 0
    assert posts_per_id(served.moesif) == {payment: 1}


def test_the_nightly_run_then_a_late_webhook_posts_nothing_more(
    served: Served, engine: Engine, tmp_path: Path
) -> None:
    [payment] = paid_events(served.stripe, 1)
    assert nightly(served, engine, tmp_path) == 1
    assert posts_per_id(served.moesif) == {payment: 1}

    served.stripe.configure_webhook(f"{served.url}/webhooks/stripe", SECRET, duplicates=True)
    assert served.stripe.deliver() == [200, 200]
    served.worker.drain()
    assert statuses(served.sessions) == {"posted": 1}
    assert posts_per_id(served.moesif) == {payment: 1}


def test_a_claimed_event_is_no_other_workers_until_its_lease_runs_out(served: Served) -> None:
    paid_events(served.stripe, 1)
    served.stripe.configure_webhook(f"{served.url}/webhooks/stripe", SECRET)
    assert served.stripe.deliver() == [200]
    [event_id] = inbox.due(served.sessions, served.clock())
    now = served.clock()

    assert inbox.claim(served.sessions, event_id, now)
    assert not inbox.claim(served.sessions, event_id, now)
    assert inbox.due(served.sessions, now) == []
    assert inbox.claim(served.sessions, event_id, now + inbox.LEASE)
