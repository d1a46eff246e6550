"""The run's clients are built in one place, and the retry settings govern Stripe and Moesif."""

from __future__ import annotations

import ssl
from dataclasses import replace

import httpx
import pytest

from reconcile.clients import open_clients
from reconcile.config import Secret, Settings
from reconcile.db.sql import chunks
from reconcile.errors import MoesifUnavailable, StripeUnavailable
from reconcile.fakes.moesif import FakeMoesif
from reconcile.fakes.stripe import FakeStripe
from reconcile.stripe.client import stripe_errors
from reconcile.tls import tls_context

KEY = "sk_test_clients_1234"


@pytest.fixture
def settings() -> Settings:
    return Settings(
        stripe_api_key=Secret(KEY),
        moesif_token=Secret("tok"),
        retry_attempts=3,
        retry_base_delay=2.0,
    )


def test_both_clients_retry_as_the_settings_say_with_the_injected_sleep(
    settings: Settings,
) -> None:
    slept: list[float] = []
    with FakeStripe(api_key=KEY) as stripe, FakeMoesif(token="tok") as moesif:
        chosen = replace(settings, stripe_api_base=stripe.base_url, moesif_api_base=moesif.base_url)
        stripe.fail_next(503, count=10)
        moesif.fail_next(503, count=10)
        with open_clients(chosen, sleep=slept.append) as clients:
            with pytest.raises(StripeUnavailable), stripe_errors():
                clients.stripe.v1.balance_transactions.list()
            stripe_waits = list(slept)
            with pytest.raises(MoesifUnavailable):
                clients.moesif.subscription("sub_1")
    assert len(stripe_waits) == 2
    assert all(1.0 <= wait <= 4.0 for wait in stripe_waits)
    moesif_waits = slept[len(stripe_waits) :]
    assert len(moesif_waits) == 2
    assert all(1.0 <= wait <= 4.0 for wait in moesif_waits)


def test_in_lists_are_distinct_sorted_and_chunked() -> None:
    assert list(chunks(["b", "a", "b", "c"], size=2)) == [["a", "b"], ["c"]]
    assert list(chunks([])) == []


def test_every_runs_moesif_client_verifies_with_the_one_tls_context(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[ssl.SSLContext] = []
    create = httpx.create_ssl_context

    def counted() -> ssl.SSLContext:
        built.append(create())
        return built[-1]

    monkeypatch.setattr(httpx, "create_ssl_context", counted)
    tls_context.cache_clear()
    try:
        with FakeStripe(api_key=KEY) as stripe, FakeMoesif(token="tok") as moesif:
            chosen = replace(
                settings, stripe_api_base=stripe.base_url, moesif_api_base=moesif.base_url
            )
            for _ in range(3):  # as three connected accounts' runs open theirs
                with open_clients(chosen) as clients:
                    assert clients.moesif.subscription("sub_1") is None
    finally:
        tls_context.cache_clear()
    assert len(built) == 1
