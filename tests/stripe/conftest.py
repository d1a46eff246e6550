"""Fixtures of the Stripe tests: a running fake Stripe and an SDK client pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import stripe

from reconcile.config import Secret, Settings
from reconcile.fakes.stripe import FakeStripe
from reconcile.stripe.client import build_stripe_client

ATTEMPTS = 5
"""Attempts per Stripe request in these tests (RECONCILE_RETRY_ATTEMPTS)."""
API_KEY = "sk_test_fakeKey4242424242"
T0 = datetime(2025, 1, 10, tzinfo=UTC)
"""A fixed instant the seeded histories start from."""


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    with FakeStripe(api_key=API_KEY, clock=lambda: T0) as server:
        yield server


@pytest.fixture
def slept() -> list[float]:
    """Every wait the client asked for (it never really sleeps in tests)."""
    return []


@pytest.fixture
def make_client(fake_stripe: FakeStripe, slept: list[float]) -> Callable[..., stripe.StripeClient]:
    def make(**overrides: object) -> stripe.StripeClient:
        settings = Settings(
            stripe_api_key=Secret(API_KEY),
            moesif_token=Secret("moesif-test-token"),
            stripe_api_base=fake_stripe.base_url,
            stripe_max_requests_per_second=1000.0,
            retry_attempts=ATTEMPTS,
        )
        return build_stripe_client(replace(settings, **overrides), sleep=slept.append)

    return make


@pytest.fixture
def client(make_client: Callable[..., stripe.StripeClient]) -> stripe.StripeClient:
    return make_client()
