"""Moesif's budget shared between the batch job and ``serve``; the review page beside the routes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from reconcile.clients import live_limiter, open_clients
from reconcile.config import Secret, Settings
from reconcile.errors import ConfigError
from reconcile.fakes.moesif import Exchange, FakeMoesif
from reconcile.operator.console.app import create_console_app
from reconcile.operator.console.settings import ConsoleSettings
from tests.serve.conftest import MOESIF_TOKEN, STRIPE_KEY, Served

BASE = {"STRIPE_API_KEY": STRIPE_KEY, "MOESIF_MANAGEMENT_TOKEN": MOESIF_TOKEN}


def test_the_batch_share_defaults_to_400_and_is_bounded() -> None:
    assert Settings.from_env(BASE, dotenv=None).moesif_requests_per_minute == 400
    parsed = Settings.from_env({**BASE, "RECONCILE_MOESIF_REQUESTS_PER_MINUTE": "120"}, dotenv=None)
    assert parsed.moesif_requests_per_minute == 120
    for bad in ("0", "501", "12.5", "many"):
        with pytest.raises(ConfigError, match="RECONCILE_MOESIF_REQUESTS_PER_MINUTE"):
            Settings.from_env({**BASE, "RECONCILE_MOESIF_REQUESTS_PER_MINUTE": bad}, dotenv=None)


def test_serve_keeps_to_what_the_batch_share_leaves() -> None:
    settings = Settings(Secret(STRIPE_KEY), Secret(MOESIF_TOKEN), moesif_requests_per_minute=400)
    assert live_limiter(settings).limit == 100
    everything = Settings(Secret(STRIPE_KEY), Secret(MOESIF_TOKEN), moesif_requests_per_minute=500)
    assert live_limiter(everything).limit == 1


def test_the_batch_client_never_exceeds_its_share_of_moesif(moesif: FakeMoesif) -> None:
    moment = [1000.0]
    seen: list[float] = []

    def sleep(seconds: float) -> None:
        moment[0] += seconds

    def note(_exchange: Exchange) -> None:
        seen.append(moment[0])

    moesif.on_request = note
    settings = Settings(
        Secret(STRIPE_KEY),
        Secret(MOESIF_TOKEN),
        moesif_api_base=moesif.base_url,
        moesif_requests_per_minute=25,
    )
    with open_clients(settings, sleep=sleep, monotonic=lambda: moment[0]) as clients:
        for number in range(80):
            clients.moesif.post_balance_transaction(
                company_id="co_1",
                subscription_id="sub_m1",
                transaction_id=f"pi_{number}",
                entry_type="credit",
                amount=Decimal("1.00"),
                description="budget",
            )
    assert len(seen) == 80
    busiest = max(sum(1 for t in seen if start <= t < start + 60.0) for start in seen)
    assert busiest == 25
    assert moment[0] - 1000.0 >= 180.0


def test_healthz_and_the_review_page_answer_side_by_side(
    make_served: Callable[..., Served], sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    page = create_console_app(
        ConsoleSettings(token=Secret("console-token"), report_dir=tmp_path),
        sessions,
        lambda: datetime.now(UTC),
    )
    served = make_served(console=page)
    with served.http() as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.post("/top-up", json={}).status_code == 401
        login = http.get("/login")
        assert login.status_code == 200
        assert "<form" in login.text
        assert http.get("/").status_code in (302, 303, 307)


def test_without_a_console_token_the_page_is_off_and_the_routes_still_answer(
    make_served: Callable[..., Served], sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    page = create_console_app(
        ConsoleSettings(token=None, report_dir=tmp_path), sessions, lambda: datetime.now(UTC)
    )
    served = make_served(console=page)
    with served.http() as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/").status_code == 404
        assert http.post("/webhooks/stripe", content=b"{}").status_code == 400
