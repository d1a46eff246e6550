"""Subscription currencies cached in the snapshot, read from Moesif about once a week."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from reconcile.config import Secret
from reconcile.db.frames import LISTED
from reconcile.db.subscriptions import keep_currency, kept_balances, kept_currencies
from reconcile.fakes.moesif import FakeMoesif
from reconcile.moesif.client import MoesifClient
from reconcile.retry import RateLimiter
from reconcile.rules.subscription_currency import MAX_AGE
from reconcile.subscriptions import Known, SubscriptionDirectory

NOW = datetime(2026, 11, 20, 2, tzinfo=UTC)
SUBSCRIPTION_PATH = "/v1/search/~/subscriptions/"


@pytest.fixture
def moesif() -> Iterator[FakeMoesif]:
    with FakeMoesif(token="t") as fake:
        fake.add_subscription("sub_jpy", "co_1", currency="JPY")
        fake.add_subscription("sub_none", "co_1", currency="")
        yield fake


@pytest.fixture
def http(moesif: FakeMoesif) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=moesif.base_url, timeout=5.0) as client:
        yield client


def _reads(moesif: FakeMoesif) -> list[str]:
    return [
        e.path.removeprefix(SUBSCRIPTION_PATH)
        for e in moesif.exchanges
        if e.path.startswith(SUBSCRIPTION_PATH)
    ]


def _lookup(engine: Engine, http: httpx.Client, at: datetime, subscription: str) -> Known | None:
    """One run's lookup: a new client and directory, as every run has."""
    client = MoesifClient(http, Secret("t"), limiter=RateLimiter(1000, 60.0))
    directory = SubscriptionDirectory(client, lambda: at)
    with Session(engine) as session, session.begin():
        return directory.lookup(session, subscription)


def test_a_currency_read_once_serves_later_runs_for_a_week(
    engine: Engine, http: httpx.Client, moesif: FakeMoesif
) -> None:
    assert _lookup(engine, http, NOW, "sub_jpy") == Known("jpy", "co_1")
    assert _lookup(engine, http, NOW + MAX_AGE - timedelta(minutes=1), "sub_jpy") == Known(
        "jpy", "co_1"
    )
    assert _reads(moesif) == ["sub_jpy"]

    assert _lookup(engine, http, NOW + MAX_AGE, "sub_jpy") == Known("jpy", "co_1")
    assert _reads(moesif) == ["sub_jpy", "sub_jpy"]


def test_a_subscription_without_currency_is_known_and_an_unknown_one_is_asked_again(
    engine: Engine, http: httpx.Client, moesif: FakeMoesif
) -> None:
    assert _lookup(engine, http, NOW, "sub_none") == Known(None, "co_1")
    assert _lookup(engine, http, NOW, "sub_missing") is None
    assert _lookup(engine, http, NOW, "sub_missing") is None
    assert _lookup(engine, http, NOW, "sub_none") == Known(None, "co_1")

    assert _reads(moesif) == ["sub_none", "sub_missing", "sub_missing"]


def test_a_kept_currency_that_disagrees_with_the_payment_is_read_again(
    engine: Engine, http: httpx.Client, moesif: FakeMoesif
) -> None:
    assert _lookup(engine, http, NOW, "sub_jpy") == Known("jpy", "co_1")
    moesif.add_subscription("sub_jpy", "co_1", currency="usd")

    directory = SubscriptionDirectory(
        MoesifClient(http, Secret("t"), limiter=RateLimiter(1000, 60.0)), lambda: NOW
    )
    with Session(engine) as session, session.begin():
        assert directory.lookup(session, "sub_jpy", expect="jpy") == Known("jpy", "co_1")
        assert _reads(moesif) == ["sub_jpy"]
        assert directory.lookup(session, "sub_jpy", expect="USD") == Known("usd", "co_1")
    assert _reads(moesif) == ["sub_jpy", "sub_jpy"]
    assert _lookup(engine, http, NOW, "sub_jpy") == Known("usd", "co_1")


def test_the_live_path_reads_moesif_again_through_its_long_lived_client(
    engine: Engine, http: httpx.Client, moesif: FakeMoesif
) -> None:
    client = MoesifClient(http, Secret("t"), limiter=RateLimiter(1000, 60.0))

    def live(subscription: str) -> Known | None:
        directory = SubscriptionDirectory(client, lambda: NOW, fresh_reads=True)
        with Session(engine) as session, session.begin():
            return directory.lookup(session, subscription)

    assert live("sub_new") is None
    moesif.add_subscription("sub_new", "co_9", currency="eur")
    assert live("sub_new") == Known("eur", "co_9")
    assert live("sub_new") == Known("eur", "co_9")
    assert _reads(moesif) == ["sub_new", "sub_new"]


def test_a_subscription_kept_without_its_company_is_read_again(
    engine: Engine, http: httpx.Client, moesif: FakeMoesif
) -> None:
    with Session(engine) as session, session.begin():
        keep_currency(session, "sub_jpy", "jpy", NOW)
    assert _lookup(engine, http, NOW, "sub_jpy") == Known("jpy", "co_1")
    assert _lookup(engine, http, NOW, "sub_jpy") == Known("jpy", "co_1")
    assert _reads(moesif) == ["sub_jpy"]


def test_a_run_keeps_the_available_balance_it_reads_and_the_live_path_leaves_it(
    engine: Engine, http: httpx.Client, moesif: FakeMoesif
) -> None:
    moesif.add_subscription("sub_usd", "co_2", currency="usd")
    moesif.add_row("co_2", "sub_usd", "credit", Decimal("12.50"), NOW - timedelta(days=1))
    client = MoesifClient(http, Secret("t"), limiter=RateLimiter(1000, 60.0))
    run = SubscriptionDirectory(client, lambda: NOW, amount_unit="major")
    with Session(engine) as session, session.begin():
        run.lookup(session, "sub_usd")
        run.lookup(session, "sub_jpy")
    with Session(engine) as session:
        assert kept_balances(session, ["sub_usd", "sub_jpy", "sub_none"]) == {
            "sub_usd": 1250,
            "sub_jpy": 0,
        }

    moesif.add_row("co_2", "sub_usd", "credit", Decimal("10.00"), NOW)
    live = SubscriptionDirectory(client, lambda: NOW, fresh_reads=True)
    with Session(engine) as session, session.begin():
        live.lookup(session, "sub_usd")
    with Session(engine) as session:
        assert kept_balances(session, ["sub_usd"]) == {"sub_usd": 1250}
    fresh = MoesifClient(http, Secret("t"), limiter=RateLimiter(1000, 60.0))  # a later run's
    later = SubscriptionDirectory(fresh, lambda: NOW + MAX_AGE, amount_unit="minor")
    with Session(engine) as session, session.begin():
        later.lookup(session, "sub_usd")
    with Session(engine) as session:
        assert kept_balances(session, ["sub_usd"]) == {"sub_usd": 22}  # 22.50 cents, half-even


def test_a_run_reads_only_the_kept_rows_of_the_subscriptions_it_asks_about(
    engine: Engine, http: httpx.Client, moesif: FakeMoesif
) -> None:
    with Session(engine) as session, session.begin():
        keep_currency(session, "sub_jpy", "jpy", NOW, "co_1")
        keep_currency(session, "sub_old", "eur", NOW - MAX_AGE, "co_2")
        keep_currency(session, "sub_other", "usd", NOW, "co_3")
    with Session(engine) as session:
        assert set(kept_currencies(session, ["sub_jpy", "sub_old", "sub_x"])) == {
            "sub_jpy",
            "sub_old",
        }
        many = ["sub_old"] + [f"sub_x{n}" for n in range(LISTED)]  # kept from a read of all
        assert {sid: kept.currency for sid, kept in kept_currencies(session, many).items()} == {
            "sub_old": "eur"
        }
    client = MoesifClient(http, Secret("t"), limiter=RateLimiter(1000, 60.0))
    directory = SubscriptionDirectory(client, lambda: NOW)
    asked = [("sub_jpy", "jpy"), ("sub_none", None), ("sub_missing", "usd")]
    with Session(engine) as session, session.begin():
        found = directory.lookup_all(session, asked)
        assert directory._kept is None  # noqa: SLF001 - not every kept row was read
    assert found == {
        "sub_jpy": Known("jpy", "co_1"),
        "sub_none": Known(None, "co_1"),
        "sub_missing": None,
    }
    # kept and fresh: not asked of Moesif; the others are, once each
    assert _reads(moesif) == ["sub_none", "sub_missing"]
