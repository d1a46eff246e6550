"""A running ``serve`` app over real HTTP, with the fake Stripe and fake Moesif behind it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import pytest
import stripe
import uvicorn
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette

from reconcile.config import Secret, ServeSettings, Settings
from reconcile.domain.values import Entry
from reconcile.fakes.moesif import FakeMoesif
from reconcile.fakes.stripe import FakeStripe
from reconcile.moesif.client import MoesifClient
from reconcile.posting.engine import PostingEngine
from reconcile.posting.outcome import Outcome
from reconcile.retry import RateLimiter, RetryPolicy
from reconcile.serve.app import Only, ServeParts, create_app
from reconcile.serve.destinations import Destinations
from reconcile.serve.limits import server_config
from reconcile.serve.untrusted import READ_TIMEOUT
from reconcile.serve.worker import EventWorker
from reconcile.stripe.client import build_stripe_client

STRIPE_KEY = "sk_test_serve"
MOESIF_TOKEN = "moesif-serve-token"
SECRET = "whsec_current"
OLD_SECRET = "whsec_previous"
TOKEN = "topup-token-123"


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Clock:
    """A clock the test moves; starts at the real time so Stripe's tolerance agrees."""

    moment: datetime = field(default_factory=now)

    def __call__(self) -> datetime:
        return self.moment


@dataclass
class Served:
    """One running app and what it talks to."""

    url: str
    app: Starlette
    stripe: FakeStripe
    moesif: FakeMoesif
    sessions: sessionmaker[Session]
    clock: Clock
    origins: list[str]

    @property
    def worker(self) -> EventWorker:
        worker: EventWorker = self.app.state.worker
        return worker

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    with FakeStripe(api_key=STRIPE_KEY) as fake:
        yield fake


@pytest.fixture
def moesif() -> Iterator[FakeMoesif]:
    with FakeMoesif(token=MOESIF_TOKEN) as fake:
        fake.add_subscription("sub_m1", "co_1")
        yield fake


def stripe_client(fake: FakeStripe) -> stripe.StripeClient:
    settings = Settings(
        stripe_api_key=Secret(STRIPE_KEY),
        moesif_token=Secret(MOESIF_TOKEN),
        stripe_api_base=fake.base_url,
        stripe_max_requests_per_second=1000,
    )
    return build_stripe_client(settings, sleep=lambda _seconds: None)


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
def moesif_http(moesif: FakeMoesif) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=moesif.base_url, timeout=5.0) as http:
        yield http


def moesif_client(http: httpx.Client) -> MoesifClient:
    return MoesifClient(
        http,
        Secret(MOESIF_TOKEN),
        policy=RetryPolicy(max_attempts=2, base_delay=0.01),
        limiter=RateLimiter(1000, 60.0),
        sleep=lambda _seconds: None,
    )


@pytest.fixture
def destinations(sessions: sessionmaker[Session], moesif_http: httpx.Client) -> Destinations:
    """The posting rule with the fake Moesif's facts, for a worker built by hand."""
    return Destinations(sessions, moesif_client(moesif_http), now)


@pytest.fixture
def make_served(
    fake_stripe: FakeStripe,
    moesif: FakeMoesif,
    sessions: sessionmaker[Session],
    moesif_http: httpx.Client,
) -> Iterator[Callable[..., Served]]:
    """Start apps on 127.0.0.1 (several may run, as after a restart); stop them all at the end."""
    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(
        only: Only = None,
        secrets: tuple[str, ...] = (SECRET,),
        session_factory: sessionmaker[Session] | None = None,
        console: Starlette | None = None,
        read_timeout: float = READ_TIMEOUT,
    ) -> Served:
        clock = Clock()
        origins: list[str] = []
        client = moesif_client(moesif_http)
        engine = PostingEngine(sessions, client, amount_unit="major", clock=clock)

        def post(order: Entry, origin: str) -> Outcome:
            origins.append(origin)
            return engine.post(order, origin=origin)

        app = create_app(
            ServeParts(
                settings=ServeSettings(
                    webhook_secrets=tuple(Secret(secret) for secret in secrets),
                    topup_token=Secret(TOKEN),
                ),
                sessions=session_factory or sessions,
                stripe_client=stripe_client(fake_stripe),
                post=post,
                destinations=Destinations(session_factory or sessions, client, clock),
                clock=clock,
                only=only,
                run_worker=False,
                console=console,
            )
        )
        server = uvicorn.Server(server_config(app, "127.0.0.1", 0, read_timeout=read_timeout))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        running.append((server, thread))
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server did not start")
            threading.Event().wait(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        fake_stripe.configure_webhook(f"{url}/webhooks/stripe", SECRET, sleep=lambda _s: None)
        return Served(url, app, fake_stripe, moesif, session_factory or sessions, clock, origins)

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def served(make_served: Callable[..., Served]) -> Served:
    return make_served()
