"""The fake Stripe itself: one server on 127.0.0.1 that seeds, reads, writes and fails on cue.

Each request passes the queued faults first, then the API key, then goes to the reads
(:mod:`~reconcile.fakes.stripe.routes`) or, for a POST, to the live payments
(:mod:`~reconcile.fakes.stripe.live`).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from reconcile.fakes.http_server import LoopbackServer, Reply, Request
from reconcile.fakes.stripe.errors import StripeApiError
from reconcile.fakes.stripe.faults import GARBLED, FaultInjection, fault_error
from reconcile.fakes.stripe.live import LivePayments, WebhookEndpoint
from reconcile.fakes.stripe.reports import Reports, ReportSwitches
from reconcile.fakes.stripe.routes import Routes
from reconcile.fakes.stripe.seeding import Seeding
from reconcile.fakes.stripe.store import COLLECTIONS, Obj, Query, Store

DEFAULT_VERSION = "2025-02-24.acacia"

DEFAULT_ORDER_SEED = 20261202
"""The seed every fake uses unless told otherwise: objects created in one second list shuffled."""


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake answered, for tests to assert on."""

    method: str
    path: str
    query: Query
    stripe_version: str | None
    status: int
    stripe_account: str | None = None
    """The ``Stripe-Account`` header the request carried, if any."""


class ConnectedAccount(Seeding):
    """A connected account of the fake's platform: its own objects, read with ``Stripe-Account``.

    Seed it with the same ``add_*`` methods as the platform; its generated ids come from the
    platform's one sequence, so they never repeat another account's. Ids given by the seeder
    (``add_customer("cus_1")``) may, as customers of two accounts may share ids in a test.
    """

    def __init__(
        self,
        account_id: str,
        state: Store,
        routes: Routes,
        *,
        api_version: str,
        files_url: Callable[[], str],
    ) -> None:
        """Serve ``state`` as the account ``account_id``."""
        super().__init__(state)
        self.id = account_id
        self.routes = routes
        self.live = LivePayments(state, api_version)
        self.live.account = account_id
        self.reports = Reports(state, files_url)

    def emit_event(self, event_type: str, kind: str, object_id: str) -> str:
        """Create a Connect event (``account`` set) about one of this account's objects."""
        return self.live.emit(event_type, kind, object_id)

    def events(self) -> list[Obj]:
        """Return every event of this account so far, oldest first."""
        return self.live.events()

    def objects(self, kind: str) -> list[Obj]:
        """Return copies of every stored object of ``kind`` of this account."""
        return self._state.copies(kind)


class FakeStripe(Seeding, FaultInjection):
    """A Stripe API server on 127.0.0.1 in a background thread; a context manager.

    Seed it with ``add_*`` methods, point the SDK at :attr:`base_url`, inject faults with
    :meth:`fail_next` and :meth:`delay_next`. Thread-safe; silent on stderr.
    """

    repeat_pages = False
    """When set, every list answers its first page with ``has_more`` whatever the cursor."""

    def __init__(
        self,
        api_key: str = "sk_test_fake",
        *,
        default_version: str = DEFAULT_VERSION,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        serve: Collection[str] | None = None,
        unknown_url: tuple[int, Obj] | None = None,
        ignore_filters: Collection[str] = (),
        echo_key: bool = False,
        order_seed: int | None = DEFAULT_ORDER_SEED,
    ) -> None:
        """Accept only ``api_key``; answer without ``Stripe-Version`` as ``default_version``.

        The other switches play Stripe-compatible servers that differ from Stripe:

        - ``serve`` limits the collections served (``"invoice_payments"``, ...); the others
          answer as unknown URLs.
        - ``unknown_url`` is the status and JSON body of that answer, instead of Stripe's 404
          in Stripe's error shape (e.g. ``(405, {"detail": "Method Not Allowed"})``).
        - ``ignore_filters`` names collections whose lists ignore every filter but ``created``
          (``customer``, ``payment[...]``, ``status``...) and list everything.
        - ``echo_key`` ends every error message with the API key the request presented.

        Lists are newest first by ``created``, as Stripe documents; Stripe promises no order
        among objects created in the same second, so ``order_seed`` permutes those ties
        (``None`` orders them by id). Cursors, ``created`` filters and ``has_more`` follow
        the one order the list serves.
        """
        state = Store(clock, order_seed)
        Seeding.__init__(self, state)
        FaultInjection.__init__(self)
        self.api_key = api_key
        self.default_version = default_version
        self._echo_key = echo_key
        self._routes = Routes(
            state,
            api_key=api_key,
            served=COLLECTIONS if serve is None else serve,
            unknown_url=unknown_url,
            unfiltered=[COLLECTIONS[name] for name in ignore_filters],
        )
        self._live = LivePayments(state, default_version)
        self._reports = Reports(state, lambda: self.base_url)
        self._requests: list[RecordedRequest] = []
        self._server: LoopbackServer | None = None
        self._connected: dict[str, ConnectedAccount] = {}
        self._routes_args: dict[str, Any] = {
            "api_key": api_key,
            "served": COLLECTIONS if serve is None else serve,
            "unknown_url": unknown_url,
            "unfiltered": [COLLECTIONS[name] for name in ignore_filters],
        }

    # -- connected accounts (Stripe Connect) ---------------------------------------------------

    def add_account(self, account_id: str | None = None) -> ConnectedAccount:
        """Create a connected account, listed by ``GET /v1/accounts``; return it for seeding."""
        with self._state.lock:
            account_id = account_id or f"acct_fake{self._state.number():012d}"
            state = self._state.sibling()
            routes = Routes(state, **self._routes_args)
            account = ConnectedAccount(
                account_id,
                state,
                routes,
                api_version=self.default_version,
                files_url=lambda: self.base_url,
            )
            self._connected[account_id] = account
            return account

    def account(self, account_id: str) -> ConnectedAccount:
        """Return a connected account made with :meth:`add_account`."""
        return self._connected[account_id]

    def _accounts_page(self, query: Query) -> Obj:
        """Answer ``GET /v1/accounts``: the connected accounts, ``limit`` at a time."""
        with self._state.lock:
            ids = list(self._connected)
        start = ids.index(query["starting_after"]) + 1 if query.get("starting_after") in ids else 0
        limit = max(1, min(100, int(query.get("limit") or 10)))
        page = ids[start : start + limit]
        return {
            "object": "list",
            "url": "/v1/accounts",
            "has_more": start + limit < len(ids),
            "data": [{"id": name, "object": "account", "type": "express"} for name in page],
        }

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> FakeStripe:
        """Start serving."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop serving."""
        self.stop()

    def start(self) -> None:
        """Listen on a free port of 127.0.0.1 and serve in a daemon thread."""
        self._server = LoopbackServer(
            "fake Stripe", self._respond, methods=("GET", "POST", "DELETE"), idle_timeout=10
        )
        self._server.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def base_url(self) -> str:
        """The URL to give the SDK as its API base (``http://127.0.0.1:<port>``)."""
        if self._server is None:
            raise RuntimeError("the fake Stripe is not running")
        return self._server.url

    def objects(self, kind: str) -> list[Obj]:
        """Return copies of every stored object of ``kind`` (``payment_intent``, ``refund``...)."""
        return self._state.copies(kind)

    @property
    def reports(self) -> ReportSwitches:
        """The Reporting API's switches (a short summary, a refusal, a failure; see there)."""
        return self._reports.switches

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request answered so far, oldest first."""
        with self._state.lock:
            return list(self._requests)

    # -- serving --------------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], payload: bytes = b""
    ) -> tuple[int, Obj | bytes, dict[str, str]]:
        """Answer one request: return status, JSON body (or raw bytes) and extra headers."""
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        version = headers.get("stripe-version") or self.default_version
        self._pause()
        garble = self._take_garble()
        if garble is not None:
            self._record(method, parts.path, query, headers, garble.status)
            return garble.status, GARBLED[garble.kind], {}
        extra: dict[str, str] = {}
        try:
            status, body = 200, self._answer(method, parts.path, query, headers, payload, version)
            if isinstance(body, bytes):
                extra = {"Content-Type": "text/csv"}
        except StripeApiError as error:
            status, body, extra = error.status, error.body, error.headers
            if self._echo_key and "error" in body:
                presented = headers.get("authorization", "").removeprefix("Bearer ").strip()
                body["error"]["message"] += f" (key {presented})"
        self._record(method, parts.path, query, headers, status)
        return status, body, extra

    def _answer(
        self,
        method: str,
        path: str,
        query: Query,
        headers: Mapping[str, str],
        payload: bytes,
        version: str,
    ) -> Obj | bytes:
        fault = self._take_fault()
        if fault is not None:
            raise fault_error(fault)
        self._routes.authenticate(headers)
        account = headers.get("stripe-account")
        if account is None and method == "GET" and path.rstrip("/") == "/v1/accounts":
            return self._accounts_page(query)
        routes, live, reports = self._routes, self._live, self._reports
        if account is not None:
            connected = self._connected.get(account)
            if connected is None:
                raise StripeApiError(
                    403,
                    f"The provided key does not have access to account '{account[:60]}' "
                    "(or that account does not exist).",
                )
            routes, live, reports = connected.routes, connected.live, connected.reports
        if reports.handles(path):
            form = dict(parse_qsl(payload.decode("utf-8"), keep_blank_values=True))
            return reports.answer(method, path, form)
        if method == "POST":
            form = dict(parse_qsl(payload.decode("utf-8"), keep_blank_values=True))
            return live.post(path, form, headers.get("idempotency-key"))
        return routes.read(method, path, query, version, repeat_pages=self.repeat_pages)

    def _record(
        self, method: str, path: str, query: Query, headers: Mapping[str, str], status: int
    ) -> None:
        with self._state.lock:
            self._requests.append(
                RecordedRequest(
                    method,
                    path,
                    query,
                    headers.get("stripe-version"),
                    status,
                    headers.get("stripe-account"),
                )
            )

    def _respond(self, request: Request) -> Reply:
        """Carry one HTTP request to :meth:`handle` and its answer back to the wire."""
        headers = {name.lower(): value for name, value in request.headers.items()}
        status, body, extra = self.handle(request.method, request.target, headers, request.body)
        payload = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        kind = "text/html" if payload.startswith(b"<html") else "application/json"
        reply_headers = [
            *([] if "Content-Type" in extra else [("Content-Type", kind)]),
            ("Request-Id", f"req_fake{next(_request_ids):010d}"),
            *extra.items(),
        ]
        return Reply(status, payload, reply_headers)

    # -- the live path: events and webhooks -----------------------------------------------------

    def emit_event(self, event_type: str, kind: str, object_id: str) -> str:
        """Create an event of ``event_type`` about a stored object, as Stripe creates it."""
        return self._live.emit(event_type, kind, object_id)

    def events(self) -> list[Obj]:
        """Return every event created so far, oldest first."""
        return self._live.events()

    def configure_webhook(
        self,
        url: str,
        secret: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        attempts: int = 3,
        duplicates: bool = False,
    ) -> None:
        """Deliver events to ``url`` signed with ``secret`` when :meth:`deliver` is called.

        A non-2xx answer is retried ``attempts`` times in all, waiting with ``sleep``;
        ``duplicates`` sends every event twice, as Stripe may.
        """
        self._live.endpoint = WebhookEndpoint(url, secret, sleep, attempts, duplicates)

    def deliver(self) -> list[int]:
        """Deliver every event not delivered yet; return the final status of each delivery."""
        return self._live.deliver()


_request_ids = itertools.count(1)
