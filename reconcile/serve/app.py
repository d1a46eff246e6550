"""The ASGI app of ``reconcile serve``: thin routes over the inbox, the worker and top-ups."""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import stripe
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from reconcile.config import ServeSettings
from reconcile.errors import ConfigError
from reconcile.safe_text import excerpt
from reconcile.security_headers import SecurityHeaders
from reconcile.serve import inbox
from reconcile.serve.destinations import Destinations
from reconcile.serve.limits import BodyTooLarge, BoundedRequests, too_large
from reconcile.serve.signature import verified_event
from reconcile.serve.topup import Answer, TopUps, error
from reconcile.serve.topup_keys import RememberedTopUps
from reconcile.serve.topup_request import InvalidTopUp, idempotency_key_problem, parse_topup
from reconcile.serve.untrusted import UntrustedInput, load_json
from reconcile.serve.worker import EventWorker, PostOrder

log = logging.getLogger(__name__)

Only = Literal["webhook", "top-up", "console"] | None


@dataclass(frozen=True)
class ServeParts:
    """What the app is built from; every outside system injected."""

    settings: ServeSettings
    sessions: sessionmaker[Session]
    stripe_client: stripe.StripeClient
    post: PostOrder
    destinations: Destinations
    """The posting rule with Moesif's facts, asked before a charge and before a webhook posts."""
    clock: Callable[[], datetime]
    only: Only = None
    run_worker: bool = True
    console: Starlette | None = None
    """The review page, mounted at ``/`` after the routes above (it is off without a token)."""


def create_app(parts: ServeParts) -> Starlette:
    """Return the app: its routes (``only`` limits them), then the review page at ``/``.

    ``/healthz``, ``/webhooks/stripe`` and ``/top-up``, then ``console`` mounted at ``/``; every
    body, the review page's forms too, is refused past 1 MB while it is read.

    Raises:
        ConfigError: an endpoint to serve lacks its credential.
    """
    check_credentials(parts.settings, parts.only)
    handlers = _Handlers(parts)
    routes: list[BaseRoute] = [Route("/healthz", _healthz(parts.sessions), methods=["GET"])]
    if parts.only in (None, "webhook"):
        routes.append(Route("/webhooks/stripe", handlers.webhook, methods=["POST"]))
    if parts.only in (None, "top-up"):
        routes.append(Route("/top-up", handlers.top_up, methods=["POST"]))
    if parts.console is not None:
        routes.append(Mount("/", app=parts.console))

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if parts.run_worker:
            handlers.worker.start()
        try:
            yield
        finally:
            await run_in_threadpool(handlers.worker.stop)

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(SecurityHeaders), Middleware(BoundedRequests)],
        exception_handlers={BodyTooLarge: too_large},
    )
    app.router.redirect_slashes = False
    app.state.worker = handlers.worker
    return app


def create_console_server(sessions: sessionmaker[Session], console: Starlette) -> Starlette:
    """Return the app of ``serve --only console``: ``/healthz`` and the review page at ``/``.

    No webhook, no top-up, no worker, no Stripe or Moesif client: the page reads the snapshot
    database only, within the same body limits and security headers as the full server.
    """
    app = Starlette(
        routes=[
            Route("/healthz", _healthz(sessions), methods=["GET"]),
            Mount("/", app=console),
        ],
        middleware=[Middleware(SecurityHeaders), Middleware(BoundedRequests)],
        exception_handlers={BodyTooLarge: too_large},
    )
    app.router.redirect_slashes = False
    return app


def check_credentials(settings: ServeSettings, only: Only) -> None:
    """Refuse to serve an endpoint whose credential is not configured.

    Raises:
        ConfigError: names the missing variable.
    """
    if only == "console":
        return
    if only in (None, "webhook") and not settings.webhook_secrets:
        raise ConfigError(
            "STRIPE_WEBHOOK_SECRET is required to serve the webhook (or use --only top-up)"
        )
    if only in (None, "top-up") and settings.topup_token is None:
        raise ConfigError("RECONCILE_TOPUP_TOKEN is required to serve /top-up (or --only webhook)")


class _Handlers:
    """The routes' bodies: parse, hand to a service in a thread, turn the answer into JSON."""

    def __init__(self, parts: ServeParts) -> None:
        self.parts = parts
        self.worker = EventWorker(
            parts.sessions,
            parts.stripe_client,
            parts.post,
            destinations=parts.destinations,
            clock=parts.clock,
        )
        self.topups = RememberedTopUps(
            parts.sessions,
            TopUps(
                parts.sessions,
                parts.stripe_client,
                destinations=parts.destinations,
                clock=parts.clock,
                queued=self.worker.wake,
            ),
            parts.clock,
        )
        self.secrets = tuple(secret.reveal() for secret in parts.settings.webhook_secrets)
        token = parts.settings.topup_token
        self.token = token.reveal() if token is not None else None

    async def webhook(self, request: Request) -> Response:
        """Verify, record once, answer; the worker posts."""
        body = await request.body()
        event = verified_event(body, request.headers.get("stripe-signature"), self.secrets)
        if event is None:
            return JSONResponse({"error": "invalid or missing Stripe-Signature"}, status_code=400)
        problem = inbox.unstorable(event, body)
        if problem is not None:
            log.warning("refused a signed Stripe event: %s", problem)
            return JSONResponse({"error": problem}, status_code=400)
        try:
            fresh = await run_in_threadpool(
                inbox.record, self.parts.sessions, event, body.decode("utf-8"), self.parts.clock()
            )
        except SQLAlchemyError:
            log.warning("could not record Stripe event %s; Stripe will retry", excerpt(event["id"]))
            return JSONResponse({"error": "could not record the event"}, status_code=500)
        if fresh:
            self.worker.wake()
        return JSONResponse({"received": True, "duplicate": not fresh})

    async def top_up(self, request: Request) -> Response:
        """Authenticate, validate, then charge and queue the credit."""
        if self.token is None or not _bearer_matches(
            request.headers.get("authorization"), self.token
        ):
            return _json(error(401, "missing or wrong bearer token"))
        key = request.headers.get("idempotency-key")
        problem = idempotency_key_problem(key) if key is not None else None
        if problem is not None:
            return _json(error(400, problem))
        try:
            wanted = parse_topup(load_json(await request.body()))
        except (InvalidTopUp, UntrustedInput) as invalid:
            return _json(error(400, str(invalid)))
        return _json(await run_in_threadpool(self.topups.top_up, wanted, key))


def _healthz(sessions: sessionmaker[Session]) -> Callable[[Request], Awaitable[Response]]:
    async def healthz(_request: Request) -> Response:
        """200 while the snapshot database answers, else 503."""
        if await run_in_threadpool(_database_answers, sessions):
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "unavailable"}, status_code=503)

    return healthz


def _database_answers(sessions: sessionmaker[Session]) -> bool:
    # The one SQL outside db/: a liveness probe of the connection, touching no table.
    try:
        with sessions() as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return False
    return True


def _bearer_matches(header: str | None, token: str) -> bool:
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("utf-8"), token.encode("utf-8")
    )


def _json(answer: Answer) -> Response:
    return JSONResponse(answer.body, status_code=answer.status)
