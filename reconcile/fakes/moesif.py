"""A fake Moesif Management API on 127.0.0.1, for tests and the demo, with fault injection."""

from __future__ import annotations

import hashlib
import json
import math
import random
import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from reconcile.fakes.http_server import LoopbackServer, Reply, Request
from reconcile.moesif.rows import SIGNED_TYPE, dump_json, parse_json

BASE_PATH = "/v1"
RowForm = Literal["typed", "signed"]
CapMode = Literal["truncate", "same"]

_POST_TYPES = frozenset({"credit", "debit"})
_ADDS = frozenset({"credit", "promotion", "adjustment"})
_REQUIRED_TEXT = ("company_id", "subscription_id", "transaction_id")
DEFAULT_ORDER_SEED = 20261202
"""The seed every fake uses unless told otherwise, so every test reads rows out of time order."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class StoredRow:
    """One billing-report row the fake holds; ``amount`` is positive, the type says its kind."""

    id: str
    company_id: str
    subscription_id: str
    type: str
    amount: Decimal
    created_at: datetime
    currency: str | None
    transaction_id: str | None = None
    description: str | None = None
    billing_meter_id: str | None = None


@dataclass(frozen=True)
class AppliedPost:
    """One POST the fake applied to its ledger: a stored row and a change of balance."""

    transaction_id: str
    company_id: str
    subscription_id: str
    type: str
    amount: Decimal
    applied_at: datetime


@dataclass
class Exchange:
    """One request the fake received and the status it answered (``None`` when dropped)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: str
    status: int | None = None


@dataclass(frozen=True)
class _Subscription:
    subscription_id: str
    company_id: str
    currency: str
    pending_activity: Decimal
    status: str = "active"


@dataclass(frozen=True)
class _Link:
    """One row's place in its subscription's running balance."""

    before: int
    sequence_id: int
    beginning: Decimal
    ending: Decimal
    change: Decimal
    pending: Decimal

    def json(self) -> dict[str, Any]:
        """Return the row's ``beginning_balance``, ``ending_balance`` and ``balance_changes``."""
        return {
            "beginning_balance": _credit_balance(self.before, self.beginning, self.pending),
            "ending_balance": _credit_balance(self.sequence_id, self.ending, self.pending),
            "balance_changes": [{"amount": self.change}],
        }


def _credit_balance(sequence_id: int, current: Decimal, pending: Decimal) -> dict[str, Any]:
    return {
        "sequence_id": sequence_id,
        "current_balance": current,
        "pending_activity": pending,
        "available_balance": current + pending,
    }


Verdict = Literal["drop", "apply_then_drop", "reject"]


Garble = Literal["html", "truncated", "array", "non_utf8"]
"""How :meth:`FakeMoesif.garble_next` spoils a 2xx answer after handling the request."""

_GARBLED: dict[str, bytes] = {
    "html": b"<html><body><h1>200 OK</h1><p>Served by a proxy</p></body></html>",
    "array": b"[]",
    "non_utf8": b"\xff\xfe{\x00\x00",
}


@dataclass(frozen=True)
class _Fault:
    kind: Literal["fail", "delay", "drop_after", "garble"]
    status: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None
    seconds: float = 0.0
    garble: Garble = "html"
    method: str | None = None
    """Only a request of this method takes the fault; ``None``: the next request, whatever."""


@dataclass(frozen=True)
class Answer:
    """What the fake answers one request: a status, a JSON body, headers, or a dropped line."""

    status: int
    body: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    drop: bool = False
    raw: bytes | None = None
    """Bytes to send instead of ``body`` (bodies that are not JSON, or not even UTF-8)."""
    content_type: str = "application/json"


class _BadRequest(Exception):
    """A request the fake answers with 400."""


class FakeMoesif:
    """A Moesif Management API that keeps its ledger in memory and serves it over HTTP.

    Use it as a context manager; ``base_url`` is what ``MOESIF_API_BASE`` should be.

    Behaviour where Moesif documents none (decisions of this fake):

    * ``GET /~/billing/reports`` returns rows with ``from <= created_at < to`` (half-open, like
      the job's windows), in no time order: the order is a permutation fixed by ``order_seed``
      (``None`` lists oldest first). A missing bound is open. ``inclusive_to`` makes ``to``
      inclusive, as Moesif might be, so a row on a boundary comes back twice.
    * A POST for a subscription the fake does not know is stored (204) unless
      ``strict_subscriptions`` is on, then it is a 404.
    * Every POST answered 204 is applied, a repeated ``transaction_id`` included: Moesif
      documents no de-duplication, so the fake forgives nothing. ``deduplicate`` plays a
      forgiving Moesif that answers 204 to a repeated id and adds nothing. ``applied`` logs
      every POST that changed the ledger; ``posts`` lists every accepted POST body.
    * POST amounts must be positive numbers.
    * Requests over ``rate_limit`` in one calendar minute of ``clock`` are answered 429 with
      ``Retry-After``, and do not count toward the limit.
    * A subscription's ``current_balance`` is credits + promotions + adjustments - debits -
      metered usage, as Moesif burns reported usage down from the balance it tracks (a row with
      a ``billing_meter_id`` is usage Moesif has posted; usage not yet posted is what
      ``pending_activity`` stands for, set per subscription); ``available_balance`` adds
      ``pending_activity``.
    * Every billing-report row carries its running balance (unless ``serve_balances`` is off):
      per subscription the rows form a chain in the order the fake stored them (``sequence_id``
      1, 2, …, as Moesif numbers what it applies), each row's ``beginning_balance`` is the
      previous row's ``ending_balance`` (zero before the first), and ``balance_changes`` holds
      one change, the row's effect on ``current_balance``: plus a credit, promotion or
      adjustment, minus a debit or metered usage (see above). The last row's ending is the
      subscription's balance, and the subscription's ``balance.sequence_id`` is the last row's.
      Removing a row renumbers and recomputes the chain after it. :meth:`break_balance` and
      :meth:`misreport_balance` inject breaks.

    Hostile modes for tests: ``ignore_window`` answers every billing-report read with all rows,
    whatever ``from``/``to`` say; ``echo_token`` sends the caller's token back in an
    ``X-Request-Id`` header and in error bodies; :meth:`garble_next` spoils 2xx answers.

    Incomplete reads (the rows stay in the ledger, only billing-report answers lack them; a
    POST still finds them held):

    * :meth:`omit` leaves chosen rows (by transaction id or row id) out of the next answers
      that would list them: once by default, ``reads=None`` for always.
    * ``omit_share`` (with ``omit_seed``) leaves a seeded random share of rows out: each row is
      chosen or not by the seed and its id alone, and a chosen row is left out of the first
      ``omit_reads`` answers that would list it (``None``: of every answer).
    * ``read_cap`` cuts every answer off at that many rows, silently, as a Moesif that truncates
      large answers would. With ``cap_mode="truncate"`` it keeps the first rows the read lists
      (a narrower window then lists the rest); with ``cap_mode="same"`` every read, whatever
      its window, answers the same first ``read_cap`` rows of the ledger (oldest first).
      Rows of :meth:`add_raw_row` count toward the cap after the ledger's.
    """

    def __init__(
        self,
        token: str = "tok",
        *,
        row_form: RowForm = "typed",
        include_transaction_id: bool = True,
        include_row_ids: bool = True,
        strict_subscriptions: bool = False,
        inclusive_to: bool = False,
        rate_limit: int = 500,
        clock: Callable[[], datetime] = _utc_now,
        deduplicate: bool = False,
        order_seed: int | None = DEFAULT_ORDER_SEED,
        read_cap: int | None = None,
        cap_mode: CapMode = "truncate",
        omit_share: float = 0.0,
        omit_seed: int = 0,
        omit_reads: int | None = 1,
        serve_balances: bool = True,
    ) -> None:
        """Prepare an empty ledger; the server starts with ``start()`` or ``with``.

        ``deduplicate`` ignores a POST whose ``transaction_id`` the ledger holds (Moesif
        documents no such thing; off by default). ``order_seed`` picks the order reads list
        rows in; ``None`` lists them oldest first. ``read_cap``, ``cap_mode``, ``omit_share``,
        ``omit_seed`` and ``omit_reads`` make reads incomplete (see the class docstring); they
        are attributes tests may also set later.
        """
        self.token = token
        self.row_form: RowForm = row_form
        self.include_transaction_id = include_transaction_id
        self.include_row_ids = include_row_ids
        self.strict_subscriptions = strict_subscriptions
        self.inclusive_to = inclusive_to
        self.deduplicate = deduplicate
        self.order_seed = order_seed
        self.rate_limit = rate_limit
        self._clock = clock
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._rows: list[StoredRow] = []
        self._transaction_ids: set[str] = set()
        self._subscriptions: dict[str, _Subscription] = {}
        self._posts: list[dict[str, Any]] = []
        self._applied: list[AppliedPost] = []
        self._exchanges: list[Exchange] = []
        self._faults: deque[_Fault] = deque()
        self._per_minute: Counter[datetime] = Counter()
        self._next_id = 0
        self._server: LoopbackServer | None = None
        self.unlisted: set[str] = set()
        """Transaction ids whose rows are stored but not yet listed in billing reports, as when
        Moesif's reports lag its ledger."""
        self._raw_rows: list[str] = []
        self.read_cap = read_cap
        """Cut every billing-report answer off at this many rows (``None``: never)."""
        self.cap_mode: CapMode = cap_mode
        """``truncate``: the first rows of the window; ``same``: the ledger's first, every time."""
        self.omit_share = omit_share
        """The share of rows (0 to 1, chosen by ``omit_seed``) left out of reads."""
        self.omit_seed = omit_seed
        self.omit_reads = omit_reads
        """How many answers a row of ``omit_share`` is left out of (``None``: all)."""
        self._omit: dict[str, int | None] = {}
        self.serve_balances = serve_balances
        """Give every billing-report row its running balance (see the class docstring)."""
        self._breaks: dict[str, tuple[bool, Decimal]] = {}
        self._misreported: dict[str, Decimal] = {}
        self._chained: tuple[object, dict[str, _Link]] | None = None
        self._left_out: Counter[str] = Counter()
        self.ignore_window = False
        """Answer billing-report reads with every row, ignoring ``from`` and ``to``."""
        self.echo_token = False
        """Echo the caller's token back in ``X-Request-Id`` and in error bodies."""
        self.on_request: Callable[[Exchange], Verdict | None] | None = None
        """Called with each request before anything else: return ``"drop"`` to cut the
        connection without handling it, ``"apply_then_drop"`` to handle it and then cut the
        connection, ``"reject"`` to answer 400 without handling it, or ``None`` to go on as
        usual. Tests use it to kill a client mid-request."""

    def __repr__(self) -> str:
        """Name the address, never the token."""
        return f"FakeMoesif({self.base_url if self._server else 'stopped'})"

    @property
    def base_url(self) -> str:
        """Return ``http://127.0.0.1:PORT/v1``, the API base to give a client."""
        if self._server is None:
            raise RuntimeError("the fake Moesif is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}{BASE_PATH}"

    def start(self) -> FakeMoesif:
        """Start serving on a free port of 127.0.0.1 in a background thread."""
        self._stopping.clear()
        self._server = LoopbackServer("fake Moesif", partial(_respond, self))
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving; delayed answers still pending are cut short."""
        self._stopping.set()
        if self._server is not None:
            self._server.stop()
        self._server = None

    def __enter__(self) -> FakeMoesif:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    # Seeding and inspection.

    def add_subscription(
        self,
        subscription_id: str,
        company_id: str,
        currency: str = "usd",
        pending_activity: Decimal = Decimal(0),
    ) -> None:
        """Create (or replace) a subscription of ``company_id`` in ``currency``."""
        subscription = _Subscription(
            subscription_id, company_id, currency.lower(), pending_activity
        )
        with self._lock:
            self._subscriptions[subscription_id] = subscription

    def add_row(
        self,
        company_id: str,
        subscription_id: str,
        type: str,
        amount: Decimal,
        created_at: datetime,
        transaction_id: str | None = None,
        description: str | None = None,
        billing_meter_id: str | None = None,
    ) -> StoredRow:
        """Store a row as if Moesif had it already (manual credits, webhook rows, usage)."""
        with self._lock:
            return self._store(
                StoredRow(
                    id="",
                    company_id=company_id,
                    subscription_id=subscription_id,
                    type=type,
                    amount=amount,
                    created_at=created_at,
                    currency=None,
                    transaction_id=transaction_id,
                    description=description,
                    billing_meter_id=billing_meter_id,
                )
            )

    def delete_rows(self, transaction_id: str) -> int:
        """Delete the rows carrying ``transaction_id``, as support might; return how many."""
        with self._lock:
            kept = [row for row in self._rows if row.transaction_id != transaction_id]
            deleted = len(self._rows) - len(kept)
            self._rows = kept
            self._transaction_ids.discard(transaction_id)
            return deleted

    def held(self, transaction_id: str) -> int:
        """Return how many rows the ledger holds for ``transaction_id``, listed or not."""
        with self._lock:
            return sum(1 for row in self._rows if row.transaction_id == transaction_id)

    def omit(self, *keys: str, reads: int | None = 1) -> None:
        """Leave the rows these transaction ids or row ids name out of billing-report answers.

        Each such row is left out of the next ``reads`` answers that would list it (``None``:
        of every answer from now on); it stays in the ledger all along.
        """
        with self._lock:
            for key in keys:
                self._omit[key] = reads

    def left_out(self) -> Counter[str]:
        """Return how many answers left each row out (by row id), by ``omit`` or ``omit_share``."""
        with self._lock:
            return Counter(self._left_out)

    def remove_row(self, row_id: str) -> StoredRow:
        """Delete a stored row, as an operator does in Moesif's UI; return what was removed.

        Its ``transaction_id`` is free again once no remaining row carries it.

        Raises:
            KeyError: no row has this id.
        """
        with self._lock:
            found = [row for row in self._rows if row.id == row_id]
            if not found:
                raise KeyError(row_id)
            row = found[0]
            self._rows.remove(row)
            self._transaction_ids = {
                each.transaction_id for each in self._rows if each.transaction_id is not None
            }
            return row

    def break_balance(self, row_id: str, gap: Decimal, *, within: bool = False) -> None:
        """Make the running balance jump by ``gap`` at the row ``row_id``, as a broken ledger would.

        By default the row begins ``gap`` away from the previous row's ending (its own changes
        still add up); ``within`` makes the row end ``gap`` away from its beginning plus its
        changes instead. Either way the rows after it, and the subscription's balance, carry the
        jump on, so the chain breaks at that one place only.
        """
        with self._lock:
            self._breaks[row_id] = (within, gap)

    def misreport_balance(self, subscription_id: str, gap: Decimal) -> None:
        """Report the subscription's balance ``gap`` away from its last row's ending."""
        with self._lock:
            self._misreported[subscription_id] = self._misreported.get(subscription_id, 0) + gap

    def rows(self) -> list[StoredRow]:
        """Return every stored row, oldest first."""
        with self._lock:
            return sorted(self._rows, key=lambda row: (row.created_at, row.id))

    @property
    def posts(self) -> list[dict[str, Any]]:
        """Return every accepted POST body (amounts as ``Decimal``), duplicates included."""
        with self._lock:
            return list(self._posts)

    @property
    def applied(self) -> list[AppliedPost]:
        """Return every POST the fake applied to its ledger, in order, repeated ids included."""
        with self._lock:
            return list(self._applied)

    def applied_count(self, transaction_id: str) -> int:
        """Return how many POSTs of ``transaction_id`` the fake applied (exactly-once is 1)."""
        with self._lock:
            return sum(1 for post in self._applied if post.transaction_id == transaction_id)

    def applied_counts(self) -> Counter[str]:
        """Return how many POSTs the fake applied per ``transaction_id``."""
        with self._lock:
            return Counter(post.transaction_id for post in self._applied)

    def applied_more_than_once(self) -> dict[str, int]:
        """Return the transaction ids the fake applied more than once, with their counts."""
        return {tid: count for tid, count in self.applied_counts().items() if count > 1}

    @property
    def exchanges(self) -> list[Exchange]:
        """Return every request received, in order, with the status answered."""
        with self._lock:
            return list(self._exchanges)

    def requests_per_minute(self) -> dict[datetime, int]:
        """Return how many requests were admitted in each calendar minute of the clock."""
        with self._lock:
            return dict(self._per_minute)

    def balance(self, subscription_id: str) -> Decimal:
        """Return a subscription's current balance: credits and grants less debits and usage."""
        with self._lock:
            return self._current_balance(subscription_id)

    # Fault injection.

    def fail_next(
        self,
        status: int,
        count: int = 1,
        headers: Mapping[str, str] | None = None,
        body: str | None = None,
        *,
        method: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests with ``status`` (and ``headers``, ``body``).

        ``method`` (``"POST"``, ``"GET"``): only requests of that method count; others pass.
        """
        fault = _Fault("fail", status=status, headers=dict(headers or {}), body=body, method=method)
        self._queue(fault, count)

    def delay_next(self, seconds: float, count: int = 1, *, method: str | None = None) -> None:
        """Wait ``seconds`` before handling each of the next ``count`` requests (of ``method``)."""
        self._queue(_Fault("delay", seconds=seconds, method=method), count)

    def apply_then_timeout_next(self, count: int = 1, *, method: str | None = None) -> None:
        """Handle the next ``count`` requests (of ``method``), then drop the connection."""
        self._queue(_Fault("drop_after", method=method), count)

    def add_raw_row(self, json_text: str) -> None:
        """Serve ``json_text`` as one more billing-report row in every read, exactly as given.

        For rows no real ledger would hold: ``NaN`` amounts, no time, NUL bytes, odd types.
        """
        with self._lock:
            self._raw_rows.append(json_text)

    def garble_next(
        self, kind: Garble = "html", count: int = 1, *, method: str | None = None
    ) -> None:
        """Handle the next ``count`` requests, then spoil a 2xx answer's body as ``kind`` says.

        ``html`` is a proxy's page (answered 200 ``text/html``), ``truncated`` cuts the JSON
        in half, ``array`` answers ``[]`` where an object belongs, ``non_utf8`` sends bytes
        that are not UTF-8. A POST is applied before its answer is spoiled.
        """
        self._queue(_Fault("garble", garble=kind, method=method), count)

    def clear_faults(self) -> None:
        """Forget every fault still queued."""
        with self._lock:
            self._faults.clear()

    def _queue(self, fault: _Fault, count: int) -> None:
        with self._lock:
            self._faults.extend([fault] * count)

    # Answering requests (called from the server's threads).

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: str) -> Answer:
        """Return the answer to one HTTP request; the whole behaviour of the fake."""
        parts = urlsplit(target)
        exchange = Exchange(
            method=method,
            path=unquote(parts.path),
            query=dict(parse_qsl(parts.query)),
            headers={name.lower(): value for name, value in headers.items()},
            body=body,
        )
        with self._lock:
            self._exchanges.append(exchange)
            request_id = f"req-{len(self._exchanges):06d}"
            fault = self._take_fault(method)
        answer = self._answer(exchange, fault)
        exchange.status = None if answer.drop else answer.status
        headers = {"X-Moesif-Request-Id": request_id, **answer.headers}
        if self.echo_token:
            token = exchange.headers.get("authorization", "").removeprefix("Bearer ")
            headers["X-Request-Id"] = f"{request_id}-{token}"
            if answer.status >= 400:
                answer = replace(answer, body=_error(f"token {token} is not welcome here"))
        return replace(answer, headers=headers)

    def _take_fault(self, method: str) -> _Fault | None:
        """The first queued fault this request takes, removed from the queue (lock held)."""
        for index, fault in enumerate(self._faults):
            if fault.method is None or fault.method == method:
                del self._faults[index]
                return fault
        return None

    def _answer(self, exchange: Exchange, fault: _Fault | None) -> Answer:
        verdict = self.on_request(exchange) if self.on_request is not None else None
        if verdict == "drop":
            return Answer(503, "", drop=True)
        if verdict == "apply_then_drop":
            return replace(self._route(exchange), drop=True)
        if verdict == "reject":
            return Answer(400, _error("rejected: the request does not fit this ledger"))
        if fault is not None and fault.kind == "fail":
            body = fault.body if fault.body is not None else _error(f"injected {fault.status}")
            return Answer(fault.status, body, fault.headers)
        if fault is not None and fault.kind == "delay":
            self._stopping.wait(fault.seconds)
        answer = self._over_limit() or self._unauthorised(exchange) or self._route(exchange)
        if fault is not None and fault.kind == "drop_after":
            return replace(answer, drop=True)
        if fault is not None and fault.kind == "garble" and 200 <= answer.status < 300:
            return _garbled(answer, fault.garble)
        return answer

    def _over_limit(self) -> Answer | None:
        now = self._clock()
        minute = now.replace(second=0, microsecond=0)
        with self._lock:
            if self._per_minute[minute] < self.rate_limit:
                self._per_minute[minute] += 1
                return None
        wait = math.ceil((minute + timedelta(minutes=1) - now).total_seconds())
        return Answer(429, _error("rate limit exceeded"), {"Retry-After": str(max(wait, 1))})

    def _unauthorised(self, exchange: Exchange) -> Answer | None:
        if exchange.headers.get("authorization") == f"Bearer {self.token}":
            return None
        return Answer(401, _error("Unauthorized: invalid or missing management token"))

    def _route(self, exchange: Exchange) -> Answer:
        if not exchange.path.startswith(BASE_PATH + "/"):
            return Answer(404, _error(f"no route {exchange.path}"))
        path = exchange.path[len(BASE_PATH) :]
        try:
            if path == "/~/billing/reports/balance_transactions":
                return self._allow(exchange, "POST") or self._post(exchange.body, exchange.headers)
            if path == "/~/billing/reports":
                return self._allow(exchange, "GET") or self._reports(exchange.query)
            if path.startswith("/search/~/subscriptions/"):
                subscription_id = path[len("/search/~/subscriptions/") :]
                return self._allow(exchange, "GET") or self._subscription(subscription_id)
        except _BadRequest as error:
            return Answer(400, _error(str(error)))
        return Answer(404, _error(f"no route {exchange.path}"))

    @staticmethod
    def _allow(exchange: Exchange, method: str) -> Answer | None:
        if exchange.method == method:
            return None
        return Answer(405, _error(f"{exchange.method} is not allowed here"), {"Allow": method})

    def _post(self, body: str, headers: Mapping[str, str]) -> Answer:
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise _BadRequest("Content-Type must be application/json")
        transaction = _balance_transaction(body)
        with self._lock:
            subscription = self._subscriptions.get(transaction["subscription_id"])
            if subscription is None and self.strict_subscriptions:
                return Answer(404, _error("subscription not found"))
            self._posts.append(transaction)
            if self.deduplicate and transaction["transaction_id"] in self._transaction_ids:
                return Answer(204)
            row = self._store(
                StoredRow(
                    id="",
                    company_id=transaction["company_id"],
                    subscription_id=transaction["subscription_id"],
                    type=transaction["type"],
                    amount=transaction["amount"],
                    created_at=self._clock(),
                    currency=None,
                    transaction_id=transaction["transaction_id"],
                    description=transaction.get("description"),
                )
            )
            self._applied.append(
                AppliedPost(
                    transaction_id=transaction["transaction_id"],
                    company_id=row.company_id,
                    subscription_id=row.subscription_id,
                    type=row.type,
                    amount=row.amount,
                    applied_at=row.created_at,
                )
            )
        return Answer(204)

    def _reports(self, query: Mapping[str, str]) -> Answer:
        since = _query_time(query, "from")
        until = _query_time(query, "to")
        same = self.read_cap is not None and self.cap_mode == "same"
        if self.ignore_window or same:
            since = until = None
        with self._lock:
            listed = [
                row
                for row in sorted(self._rows, key=self._listing_key)
                if _selected(row, query, since, until, inclusive_to=self.inclusive_to)
                and row.transaction_id not in self.unlisted
            ]
            chain = self._chain() if self.serve_balances else {}
            rows = [
                self._row_json(row, chain.get(row.id)) for row in self._incomplete(listed, same)
            ]
            raw = list(self._raw_rows)
        if self.read_cap is not None:
            raw = raw[: max(0, self.read_cap - len(rows))]
        if raw:
            return Answer(200, "[" + ", ".join([dump_json(row) for row in rows] + raw) + "]")
        return Answer(200, dump_json(rows))

    def _subscription(self, subscription_id: str) -> Answer:
        with self._lock:
            subscription = self._subscriptions.get(subscription_id)
            if subscription is None:
                return Answer(404, _error(f"subscription {subscription_id} not found"))
            current = self._current_balance(subscription_id) + self._injected(subscription_id)
            movements = sum(1 for row in self._rows if row.subscription_id == subscription_id)
        document = {
            "org_id": "fake-org",
            "app_id": "fake-app",
            "type": "prepaid",
            "subscription_id": subscription.subscription_id,
            "company_id": subscription.company_id,
            "status": subscription.status,
            "currency": subscription.currency,
            "balance": {
                "sequence_id": movements,
                "current_balance": current,
                "pending_activity": subscription.pending_activity,
                "available_balance": current + subscription.pending_activity,
            },
        }
        return Answer(200, dump_json(document))

    # State helpers; the caller holds the lock.

    def _incomplete(self, listed: list[StoredRow], same: bool) -> list[StoredRow]:
        """Return what an incomplete read answers of the rows ``listed``: some left out, cut."""
        answered = [row for row in listed if not self._leaves_out(row)]
        if same:
            answered.sort(key=lambda row: (row.created_at, row.id))
        return answered if self.read_cap is None else answered[: self.read_cap]

    def _leaves_out(self, row: StoredRow) -> bool:
        """Whether this answer leaves ``row`` out; counts it when it does."""
        budgets = [self._omit[key] for key in (row.id, row.transaction_id) if key in self._omit]
        if self.omit_share and _chosen(self.omit_seed, row.id, self.omit_share):
            budgets.append(self.omit_reads)
        if not budgets or all(
            budget is not None and self._left_out[row.id] >= budget for budget in budgets
        ):
            return False
        self._left_out[row.id] += 1
        return True

    def _store(self, row: StoredRow) -> StoredRow:
        """Give ``row`` an id, the subscription's currency and a millisecond time; keep it."""
        self._next_id += 1
        subscription = self._subscriptions.get(row.subscription_id)
        created_at = row.created_at.astimezone(UTC)
        row = replace(
            row,
            id=f"{self._next_id:024x}",
            created_at=created_at.replace(microsecond=created_at.microsecond // 1000 * 1000),
            currency=subscription.currency if subscription else None,
        )
        self._rows.append(row)
        if row.transaction_id is not None:
            self._transaction_ids.add(row.transaction_id)
        return row

    def _listing_key(self, row: StoredRow) -> tuple[object, ...]:
        """Return where ``row`` sits in a read: a seeded permutation, or time order."""
        if self.order_seed is None:
            return (row.created_at, row.id)
        digest = hashlib.blake2b(f"{self.order_seed}:{row.id}".encode(), digest_size=8)
        return (digest.digest(), row.id)

    def _current_balance(self, subscription_id: str) -> Decimal:
        return sum(
            (self._effect(row) for row in self._rows if row.subscription_id == subscription_id),
            Decimal(0),
        )

    @staticmethod
    def _effect(row: StoredRow) -> Decimal:
        """Return what ``row`` does to its subscription's ``current_balance`` (usage burns down)."""
        if row.billing_meter_id:
            return -row.amount
        if row.type in _ADDS:
            return row.amount
        return -row.amount if row.type == "debit" else Decimal(0)

    def _injected(self, subscription_id: str) -> Decimal:
        """Return the jumps injected into the subscription's balance, which its balance carries."""
        jumps = sum(
            (
                self._breaks[row.id][1]
                for row in self._rows
                if row.subscription_id == subscription_id and row.id in self._breaks
            ),
            Decimal(0),
        )
        return jumps + self._misreported.get(subscription_id, Decimal(0))

    def _chain(self) -> dict[str, _Link]:
        """Return every row's running balance, per subscription in the order rows were stored.

        Kept until the ledger changes: ids only grow and rows are only ever removed, so the
        next id and the number of rows tell one ledger from another.
        """
        pending = sorted((key, each.pending_activity) for key, each in self._subscriptions.items())
        state = (self._next_id, len(self._rows), sorted(self._breaks.items()), pending)
        if self._chained is None or self._chained[0] != state:
            self._chained = (state, self._chain_anew())
        return self._chained[1]

    def _chain_anew(self) -> dict[str, _Link]:
        links: dict[str, _Link] = {}
        last: dict[str, tuple[int, Decimal]] = {}
        for row in sorted(self._rows, key=lambda row: row.id):
            subscription = self._subscriptions.get(row.subscription_id)
            pending = subscription.pending_activity if subscription else Decimal(0)
            sequence, current = last.get(row.subscription_id, (0, Decimal(0)))
            within, gap = self._breaks.get(row.id, (False, Decimal(0)))
            beginning = current if within else current + gap
            change = self._effect(row)
            ending = beginning + change + (gap if within else Decimal(0))
            links[row.id] = _Link(sequence, sequence + 1, beginning, ending, change, pending)
            last[row.subscription_id] = (sequence + 1, ending)
        return links

    def _row_json(self, row: StoredRow, link: _Link | None = None) -> dict[str, Any]:
        document: dict[str, Any] = {
            "company_id": row.company_id,
            "subscription_id": row.subscription_id,
            "created_at": _moesif_time(row.created_at),
        }
        if self.include_row_ids:
            document["_id"] = row.id
        if row.currency:
            document["currency"] = row.currency
        document.update(self._kind_and_amount(row))
        if self.include_transaction_id and row.transaction_id:
            document["transaction_id"] = row.transaction_id
        if row.description:
            document["description"] = row.description
        if link is not None:
            document.update(link.json())
        return document

    def _kind_and_amount(self, row: StoredRow) -> dict[str, Any]:
        if row.billing_meter_id:
            return {
                "billing_meter_id": row.billing_meter_id,
                "type": row.type,
                "amount": row.amount,
                "usage_start_time": _moesif_time(row.created_at - timedelta(hours=1)),
                "usage_end_time": _moesif_time(row.created_at),
            }
        if self.row_form == "signed":
            signed = -row.amount if row.type == "debit" else row.amount
            return {"type": SIGNED_TYPE, "amount": signed}
        return {"type": row.type, "amount": row.amount}


def _chosen(seed: int, row_id: str, share: float) -> bool:
    """Whether the seed chooses this row for a share of rows: by the seed and the id alone."""
    return random.Random(f"{seed}:{row_id}").random() < share


def _garbled(answer: Answer, kind: Garble) -> Answer:
    """Return ``answer`` with its body spoiled as ``kind`` says (always status 200)."""
    if kind == "truncated":
        whole = answer.body or '{"ok": true, "note": "this answer is cut"}'
        return replace(answer, status=200, raw=whole[: max(1, len(whole) // 2)].encode())
    content_type = "text/html" if kind == "html" else "application/json"
    return replace(answer, status=200, raw=_GARBLED[kind], content_type=content_type)


def _error(message: str) -> str:
    return json.dumps({"message": message})


def _balance_transaction(body: str) -> dict[str, Any]:
    """Validate a POST body as ``BillingReportBalanceTransCreate``; return it parsed."""
    try:
        data = parse_json(body)
    except ValueError:
        raise _BadRequest("the body is not JSON") from None
    if not isinstance(data, dict):
        raise _BadRequest("the body must be a JSON object")
    for name in _REQUIRED_TEXT:
        if not isinstance(data.get(name), str) or not data[name].strip():
            raise _BadRequest(f"{name} is required and must be a non-empty string")
    if data.get("type") not in _POST_TYPES:
        raise _BadRequest("type is required and must be credit or debit")
    if "description" in data and not isinstance(data["description"], str):
        raise _BadRequest("description must be a string")
    data["amount"] = _positive_amount(data.get("amount"))
    return data


def _positive_amount(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise _BadRequest("amount is required and must be a number")
    amount = Decimal(value)
    if not amount.is_finite() or amount <= 0:
        raise _BadRequest("amount must be a positive number")
    return amount


def _query_time(query: Mapping[str, str], name: str) -> datetime | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise _BadRequest(f"{name} must be an ISO 8601 date-time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _selected(
    row: StoredRow,
    query: Mapping[str, str],
    since: datetime | None,
    until: datetime | None,
    *,
    inclusive_to: bool,
) -> bool:
    if since is not None and row.created_at < since:
        return False
    if until is not None and (row.created_at > until if inclusive_to else row.created_at >= until):
        return False
    for name in ("company_id", "subscription_id", "billing_meter_id"):
        if name in query and getattr(row, name) != query[name]:
            return False
    return True


def _moesif_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _respond(fake: FakeMoesif, request: Request) -> Reply:
    """Carry one HTTP request to :meth:`FakeMoesif.handle` and its answer back to the wire."""
    body = request.body.decode("utf-8", errors="replace")
    answer = fake.handle(request.method, request.target, request.headers, body)
    if answer.drop:
        return Reply(answer.status, drop=True)
    payload = answer.raw if answer.raw is not None else answer.body.encode()
    headers = list(answer.headers.items())
    if payload:
        headers.append(("Content-Type", answer.content_type))
    return Reply(answer.status, payload, headers)
