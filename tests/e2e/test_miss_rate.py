"""The live path's miss rate: top-up credits the nightly run had to post, over all of them.

Two top-ups are credited by the webhook's posting (the engine, origin ``webhook:…``), one is
missed and posted by the run; the run's metrics and notification say 1 of 3, and so does the
console's front page.
"""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from reconcile.cli import main
from reconcile.config import Secret
from reconcile.db.engine import make_engine, upgrade_to_head
from reconcile.db.models import Notification
from reconcile.domain import origin
from reconcile.domain.values import Entry
from reconcile.metrics import read_samples
from reconcile.moesif.client import MoesifClient
from reconcile.operator.console.app import create_console_app
from reconcile.operator.console.settings import ConsoleSettings
from reconcile.posting.engine import PostingEngine
from reconcile.posting.outcome import Result
from reconcile.retry import RetryPolicy
from tests.e2e.conftest import MOESIF_TOKEN, World
from tests.operator.conftest import ServedApp, sign_in

CONSOLE_TOKEN = "console-token-for-the-miss-rate-test-0001"


def test_the_miss_rate_counts_what_the_run_had_to_post(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = world.stripe.add_customer(
        metadata={"moesif_company_id": "acme", "moesif_subscription_id": "sub_acme"}
    )
    world.moesif.add_subscription("sub_acme", "acme")
    paid = [
        world.stripe.add_payment_intent(customer, cents, created=world.now - timedelta(hours=5))
        for cents in (1000, 2000, 3000)
    ]
    engine = make_engine(world.database_url)
    upgrade_to_head(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    with httpx.Client(base_url=world.moesif.base_url, timeout=10.0) as http:
        client = MoesifClient(http, Secret(MOESIF_TOKEN), policy=RetryPolicy(max_attempts=2))
        poster = PostingEngine(sessions, client, amount_unit="major", clock=lambda: world.now)
        for number, (tid, cents) in enumerate(zip(paid[:2], (1000, 2000), strict=True)):
            entry = Entry(tid, "acme", "sub_acme", "credit", cents, "usd", f"top-up {tid}")
            posted = poster.post(entry, origin=origin.for_webhook(f"evt_{number}"))
            assert posted.result is Result.POSTED
    metrics = world.report_dir / "reconcile.prom"
    monkeypatch.setenv("RECONCILE_METRICS_FILE", str(metrics))
    monkeypatch.setenv("RECONCILE_NOTIFY_URL", "http://127.0.0.1:9/hook")  # never answers
    world.moesif.add_row(  # a manual credit: a finding, so the run notifies
        "acme", "sub_acme", "credit", Decimal("5.00"), world.now - timedelta(hours=3)
    )

    assert main(["--since", world.since]) == 1

    assert world.posted_ids() == [*paid[:2], paid[2]]
    assert read_samples(metrics)["reconcile_live_path_miss_rate"] == pytest.approx(1 / 3, 1e-3)
    with sessions() as session:
        [stored] = session.scalars(select(Notification)).all()
    assert json.loads(stored.payload)["miss_rate"] == {
        "rate": "0.3333",
        "missed": 1,
        "total": 3,
        "days": 30,
    }

    settings = ConsoleSettings(Secret(CONSOLE_TOKEN), report_dir=world.report_dir)
    app = create_console_app(settings, sessions, lambda: world.now + timedelta(hours=1))
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(ServedApp(app)).url
        page = stack.enter_context(httpx.Client(base_url=url, timeout=10))
        assert sign_in(page, CONSOLE_TOKEN).status_code == 303
        front = page.get("/").text
    assert '<strong id="miss-rate">33.33%</strong>' in front
    assert "1 of 3 top-up credits posted by the nightly run" in front
    day = world.now.date().isoformat()
    assert f'<td class="nowrap">{day}</td><td class="num">1</td><td class="num">3</td>' in front
    engine.dispose()
