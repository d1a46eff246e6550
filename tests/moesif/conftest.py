"""Fixtures for the Moesif tests: a running fake Moesif and clients pointed at it."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from reconcile.config import Secret
from reconcile.fakes.moesif import FakeMoesif
from reconcile.moesif.client import MoesifClient
from reconcile.retry import RetryPolicy

TOKEN = "tok_moesif_secret_123"
POLICY = RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=10.0)


@pytest.fixture
def fake() -> Iterator[FakeMoesif]:
    """A fake Moesif on 127.0.0.1 that accepts ``TOKEN``."""
    with FakeMoesif(token=TOKEN) as moesif:
        yield moesif


@pytest.fixture
def slept() -> list[float]:
    """The waits the client asked for, instead of sleeping."""
    return []


@pytest.fixture
def make_client(fake: FakeMoesif, slept: list[float]) -> Iterator[Callable[..., MoesifClient]]:
    """Build MoesifClients against the fake; keyword arguments go to MoesifClient."""
    opened: list[httpx.Client] = []

    def build(
        *, token: str = TOKEN, timeout: float = 2.0, base_url: str | None = None, **options: Any
    ) -> MoesifClient:
        http = httpx.Client(base_url=base_url or fake.base_url, timeout=timeout)
        opened.append(http)
        options.setdefault("policy", POLICY)
        options.setdefault("sleep", slept.append)
        options.setdefault("rng", random.Random(1))
        return MoesifClient(http, Secret(token), **options)

    yield build
    for http in opened:
        http.close()


@pytest.fixture
def client(make_client: Callable[..., MoesifClient]) -> MoesifClient:
    """A MoesifClient against the fake with the test retry policy and no real sleeping."""
    return make_client()
