"""The Moesif Management API client: post balance transactions, read reports and balances."""

from __future__ import annotations

import hashlib
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import quote

import httpx

from reconcile.config import Secret, Settings
from reconcile.errors import (
    CredentialsRejected,
    MoesifOutcomeUnknown,
    MoesifReadCut,
    MoesifRejected,
    MoesifUnavailable,
    ReconcileError,
)
from reconcile.moesif.rows import decimal_text, dump_json, parse_json, row_time
from reconcile.retry import (
    TIMEOUT,
    Deadline,
    RateLimiter,
    RetryPolicy,
    call_with_retries,
    jittered,
    retry_delay,
)
from reconcile.rules.absence import can_narrow, cut_off
from reconcile.tls import tls_context

logger = logging.getLogger(__name__)

BALANCE_TRANSACTIONS_PATH = "/~/billing/reports/balance_transactions"
BILLING_REPORTS_PATH = "/~/billing/reports"
SUBSCRIPTION_PATH = "/search/~/subscriptions/{id}"

MOESIF_RATE_LIMIT = 500
"""Requests Moesif allows per calendar minute; the client keeps under it on its own."""

_EXCERPT_LENGTH = 200
_REQUEST_ID_HEADERS = ("x-moesif-request-id", "x-request-id")
# Transport errors that prove the request never reached Moesif: nothing can have been applied.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
# Answers after which Moesif may have applied a POST anyway.
_MAYBE_APPLIED_STATUSES = frozenset({500, 504})
# A read changes nothing, so a 500 on it is as transient as a 502.
_READ_RETRY_STATUSES = frozenset({500})
DEFAULT_READ_CAP = 1000
"""Rows from which one billing-reports answer counts as cut off (``RECONCILE_MOESIF_READ_CAP``)."""


@dataclass(frozen=True)
class Subscription:
    """A Moesif subscription with its prepaid balance, in major units as Moesif reports them."""

    subscription_id: str
    company_id: str | None
    currency: str | None
    status: str | None
    current_balance: Decimal
    pending_activity: Decimal
    available_balance: Decimal
    sequence_id: int | None = None
    """The balance's ``sequence_id``: which billing-report row it is the ending of."""


@dataclass(frozen=True)
class _Failure:
    """One attempt that did not succeed: an answer with a bad status, or no answer at all."""

    status: int | None
    headers: Mapping[str, str]
    detail: str
    maybe_applied: bool

    @property
    def label(self) -> str:
        return f"HTTP {self.status}" if self.status is not None else self.detail


def open_http_client(settings: Settings, timeout: float = 30.0) -> httpx.Client:
    """Return the ``httpx.Client`` a :class:`MoesifClient` needs, pointed at the settings' base."""
    return httpx.Client(
        base_url=settings.moesif_api_base,
        verify=tls_context(),
        timeout=httpx.Timeout(timeout),
        headers={"Accept": "application/json", "User-Agent": "reconcile"},
    )


class MoesifClient:
    """Talks to the Moesif Management API over an injected ``httpx.Client``.

    Every request waits for the rate limiter, and transient failures (429, 502, 503, 504,
    timeouts, dropped connections) are retried as :func:`reconcile.retry.retry_delay` decides.
    """

    def __init__(
        self,
        http: httpx.Client,
        token: Secret,
        *,
        policy: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        read_cap: int = DEFAULT_READ_CAP,
        deadline: Deadline | None = None,
    ) -> None:
        """Use ``http`` (its ``base_url`` is ``MOESIF_API_BASE``) with the management ``token``.

        Args:
            http: the HTTP client, created by the caller with a base URL and a timeout.
            token: the management token, with or without a leading ``Bearer``.
            policy: how to retry; the default :class:`RetryPolicy` when not given.
            limiter: the request rate; by default 500 per 60 seconds, sleeping with ``sleep``.
            sleep: how to wait between retries.
            rng: the random source of the retry jitter.
            read_cap: a billing-report answer with this many rows or more is taken as cut off
                and read again in halves (``RECONCILE_MOESIF_READ_CAP``).
            deadline: the run's deadline, checked before every request and every wait.

        Raises:
            ValueError: ``read_cap`` is below 1.
        """
        if read_cap < 1:
            raise ValueError(f"the read cap must be at least 1 row, not {read_cap}")
        self._http = http
        self._token = _bare_token(token)
        self._policy = policy or RetryPolicy()
        self._deadline = deadline or Deadline.never()
        sleep = self._deadline.sleeper(sleep, "the next Moesif request")
        self._limiter = limiter or RateLimiter(MOESIF_RATE_LIMIT, 60.0, sleep=sleep)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._read_cap = read_cap
        self._subscriptions: dict[str, Subscription | None] = {}

    def __repr__(self) -> str:
        """Name the base URL, never the token."""
        return f"MoesifClient(base_url={str(self._http.base_url)!r})"

    def post_balance_transaction(
        self,
        *,
        company_id: str,
        subscription_id: str,
        transaction_id: str,
        entry_type: Literal["credit", "debit"],
        amount: Decimal,
        description: str,
    ) -> None:
        """Post one credit or debit; ``amount`` is written exactly, in Moesif's amount unit.

        Attempts that surely did not reach Moesif (refused connections, 429, 502, 503) are
        retried. Once an attempt may have been applied (a timeout after sending, a dropped
        connection, 500, 504) nothing is sent again: the outcome is unknown, and the caller reads
        the ledger back before any resend. Moesif is not relied on to ignore a repeated
        ``transaction_id``.

        Raises:
            MoesifOutcomeUnknown: some attempt may have reached Moesif, none said it was applied.
            MoesifUnavailable: after retries; Moesif surely did not apply it.
            CredentialsRejected: Moesif refused the token (401/403).
            MoesifRejected: Moesif refused the request itself (another 4xx).
            ValueError: ``amount`` is not a positive finite number.
        """
        if not amount.is_finite() or amount <= 0:
            raise ValueError(f"a balance transaction needs a positive amount, not {amount}")
        body = {
            "company_id": company_id,
            "subscription_id": subscription_id,
            "transaction_id": transaction_id,
            "type": entry_type,
            "amount": amount,
            "description": description,
        }
        what = f"{entry_type} {transaction_id} of {decimal_text(amount)}"
        self._request("POST", BALANCE_TRANSACTIONS_PATH, what=what, content=dump_json(body))

    def billing_reports(
        self, since: datetime, until: datetime, company_id: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield every billing-report row created in ``[since, until)``, once each.

        Moesif does not paginate and may cut a large answer off silently, so an answer of
        ``read_cap`` rows or more is taken as cut off and read again as two half windows
        (recursively, down to one second; see :mod:`reconcile.rules.absence`); rows are
        de-duplicated by ``_id``. Every row yielded comes from an answer under the cap, so a
        complete read of ``[since, until)`` proves what it lacks. Rows whose time lies outside
        the window asked for (a server that ignores ``from``/``to``) are dropped: they belong to
        another window's read. Rows without a readable time are kept. Amounts are exact
        ``Decimal`` values.

        Raises:
            MoesifReadCut: a one-second window still answered ``read_cap`` rows or more; rows of
                the windows read before it may have been yielded, and nothing may be concluded
                from the read.
            MoesifUnavailable: after retries, or the answer is not a JSON array of objects.
            CredentialsRejected: Moesif refused the token.
            MoesifRejected: Moesif refused the request.
        """
        seen: set[str] = set()
        for row in self._reports(since, until, company_id):
            row_id = row.get("_id")
            if isinstance(row_id, str):
                if row_id in seen:
                    continue
                seen.add(row_id)
            yield row

    def subscription(self, subscription_id: str, *, fresh: bool = False) -> Subscription | None:
        """Return the subscription with its balance, or ``None`` when Moesif has no such id.

        Answers are cached for the life of this client; ``fresh`` reads Moesif again.

        Raises:
            MoesifUnavailable: after retries, or the answer is not a subscription.
            CredentialsRejected: Moesif refused the token.
            MoesifRejected: Moesif refused the request.
        """
        if fresh or subscription_id not in self._subscriptions:
            self._subscriptions[subscription_id] = self._read_subscription(subscription_id)
        return self._subscriptions[subscription_id]

    def _read_subscription(self, subscription_id: str) -> Subscription | None:
        what = f"subscription {subscription_id}"
        path = SUBSCRIPTION_PATH.format(id=quote(subscription_id, safe=""))
        response = self._request("GET", path, what=what, tolerate=frozenset({404}))
        if response.status_code == 404:
            return None
        data = self._json(response, what)
        if not isinstance(data, dict):
            raise MoesifUnavailable(f"Moesif answered {what} with something not an object")
        return _subscription(data, subscription_id)

    def _reports(
        self, since: datetime, until: datetime, company_id: str | None
    ) -> Iterator[dict[str, Any]]:
        answer = self._read_reports(since, until, company_id)
        if not cut_off(len(answer), self._read_cap):
            yield from (row for row in answer if in_window(row, since, until))
            return
        if not can_narrow(since, until):
            whose = f" of company {company_id}" if company_id is not None else ""
            raise MoesifReadCut(
                f"Moesif's billing reports{whose} from {_iso(since)} to {_iso(until)} held "
                f"{len(answer)} rows in a one-second window, at the read cap of "
                f"RECONCILE_MOESIF_READ_CAP={self._read_cap}: the answer may be cut off, so "
                "nothing is concluded from it"
            )
        logger.info(
            "Moesif billing reports %s to %s: %d rows, at the read cap of %d; reading the "
            "window in halves",
            _iso(since),
            _iso(until),
            len(answer),
            self._read_cap,
        )
        del answer
        middle = _midpoint(since, until)
        yield from self._reports(since, middle, company_id)
        yield from self._reports(middle, until, company_id)

    def _read_reports(
        self, since: datetime, until: datetime, company_id: str | None
    ) -> list[dict[str, Any]]:
        params = {"from": _iso(since), "to": _iso(until)}
        if company_id is not None:
            params["company_id"] = company_id
        what = f"billing reports {params['from']} to {params['to']}"
        data = self._json(
            self._request("GET", BILLING_REPORTS_PATH, what=what, params=params), what
        )
        if not isinstance(data, list):
            raise MoesifUnavailable(f"Moesif answered {what} with something not a JSON array")
        return [row if isinstance(row, dict) else not_an_object(row) for row in data]

    def _json(self, response: httpx.Response, what: str) -> object:
        try:
            return parse_json(response.content.decode("utf-8"))
        except ValueError:
            excerpt = _excerpt(_text_of(response), self._token)
            raise MoesifUnavailable(
                f"Moesif answered {what} with JSON that does not parse: {excerpt}"
                f"{_request_id(response.headers).replace(self._token, '***')}"
            ) from None

    def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        content: str | None = None,
        tolerate: frozenset[int] = frozenset(),
    ) -> httpx.Response:
        """Send one request with retries; return a 2xx (or tolerated) answer or raise."""
        policy = self._policy
        if method == "GET":
            policy = replace(policy, retry_statuses=policy.retry_statuses | _READ_RETRY_STATUSES)

        def attempt() -> httpx.Response | _Failure:
            outcome = self._attempt(method, path, params, content)
            if not isinstance(outcome, httpx.Response) or outcome.status_code in tolerate:
                return outcome
            if outcome.is_success and confirms(outcome, empty_ok=method == "POST"):
                return outcome
            return self._failure(outcome, method)

        def delay(outcome: httpx.Response | _Failure, attempts: int) -> float | None:
            # An attempt Moesif may have applied is never sent again.
            if isinstance(outcome, httpx.Response) or outcome.maybe_applied:
                return None
            return retry_delay(policy, outcome.status, outcome.headers, attempts)

        def wait(outcome: httpx.Response | _Failure, seconds: float) -> float:
            return seconds if _has_retry_after(outcome.headers) else jittered(seconds, self._rng)

        def announce(outcome: httpx.Response | _Failure, attempts: int, seconds: float) -> None:
            logger.warning(
                "Moesif %s %s: %s; retrying in %.2f s (attempt %d of %d)",
                method,
                path,
                _label(outcome),
                seconds,
                attempts + 1,
                self._policy.max_attempts,
            )

        outcome, attempts = call_with_retries(
            attempt, delay, wait, sleep=self._sleep, announce=announce
        )
        if isinstance(outcome, httpx.Response):
            return outcome
        raise self._error(outcome, what, outcome.maybe_applied, attempts)

    def _attempt(
        self, method: str, path: str, params: Mapping[str, str] | None, content: str | None
    ) -> httpx.Response | _Failure:
        headers = {"Authorization": f"Bearer {self._token}"}
        if content is not None:
            headers["Content-Type"] = "application/json"
        self._deadline.check(f"Moesif {method} {path}")
        self._limiter.acquire()
        self._deadline.check(f"Moesif {method} {path}")
        timeout: httpx.Timeout | httpx._client.UseClientDefault = httpx.USE_CLIENT_DEFAULT
        if not math.isinf(self._deadline.remaining()):
            timeout = httpx.Timeout(self._deadline.timeout(self._http.timeout.read or 30.0))
        try:
            return self._http.request(
                method, path, params=params, content=content, headers=headers, timeout=timeout
            )
        except httpx.TransportError as error:
            sent = not isinstance(error, _NOT_SENT)
            detail = f"no answer ({type(error).__name__}: {_excerpt(str(error), self._token)})"
            return _Failure(TIMEOUT, {}, detail, maybe_applied=sent and method == "POST")

    def _failure(self, response: httpx.Response, method: str) -> _Failure:
        excerpt = _excerpt(_text_of(response), self._token)
        request_id = _request_id(response.headers).replace(self._token, "***")
        if response.is_success:
            # A 2xx whose body is not JSON (a proxy's HTML page, a cut-off answer) confirms
            # nothing: a POST may have been applied; a read is worth another attempt.
            detail = (
                f"HTTP {response.status_code} with a body that is not JSON: {excerpt}{request_id}"
            )
            return _Failure(TIMEOUT, response.headers, detail, maybe_applied=method == "POST")
        detail = f"HTTP {response.status_code}: {excerpt}{request_id}"
        maybe_applied = method == "POST" and response.status_code in _MAYBE_APPLIED_STATUSES
        return _Failure(response.status_code, response.headers, detail, maybe_applied)

    def _error(
        self, failure: _Failure, what: str, maybe_applied: bool, attempts: int
    ) -> ReconcileError:
        status = failure.status
        if status in (401, 403):
            return CredentialsRejected(
                f"Moesif refused the management token (HTTP {status}): "
                f"{failure.detail.removeprefix(f'HTTP {status}: ')}"
            )
        if status is not None and 400 <= status < 500 and status not in self._policy.retry_statuses:
            return MoesifRejected(status, failure.detail.removeprefix(f"HTTP {status}: "), what)
        tries = f"after {attempts} attempt{'s' if attempts > 1 else ''}"
        if maybe_applied:
            return MoesifOutcomeUnknown(
                f"Moesif may or may not have applied {what}: {failure.detail} ({tries}); "
                "read the ledger back before posting it again"
            )
        return MoesifUnavailable(f"Moesif unavailable for {what} {tries}: {failure.detail}")


def confirms(response: httpx.Response, *, empty_ok: bool) -> bool:
    """Return whether a 2xx answer's body is one the job can trust: JSON, or empty when allowed.

    An HTML page from a proxy, a truncated JSON document or bytes that are not UTF-8 confirm
    nothing (contract section 5).
    """
    body = response.content
    if not body.strip():
        return empty_ok
    try:
        parse_json(body.decode("utf-8"))
    except ValueError:
        return False
    return True


def in_window(row: Mapping[str, Any], since: datetime, until: datetime) -> bool:
    """Return whether a row's time lies in ``[since, until)``; a row without one counts as in."""
    moment = row_time(row)
    return moment is None or since <= moment < until


def _text_of(response: httpx.Response) -> str:
    return response.content.decode("utf-8", errors="replace")


def _bare_token(token: Secret) -> str:
    value = token.reveal().strip()
    while value.lower().startswith("bearer "):
        value = value[len("bearer ") :].strip()
    return value


def _excerpt(text: str, token: str) -> str:
    """Return a one-line excerpt of at most 200 characters, with the token blanked out."""
    line = " ".join(text.split())
    if token:
        line = line.replace(token, "***")
    if len(line) > _EXCERPT_LENGTH:
        line = line[: _EXCERPT_LENGTH - 1] + "…"
    return line or "(empty body)"


def _request_id(headers: Mapping[str, str]) -> str:
    lowered = {name.lower(): value for name, value in headers.items()}
    for name in _REQUEST_ID_HEADERS:
        if lowered.get(name):
            return f" [request id {' '.join(lowered[name].split())[:100]}]"
    return ""


def _has_retry_after(headers: Mapping[str, str]) -> bool:
    return any(name.lower() == "retry-after" for name in headers)


def _label(outcome: httpx.Response | _Failure) -> str:
    if isinstance(outcome, httpx.Response):
        return f"HTTP {outcome.status_code}"
    return outcome.label


def not_an_object(element: object) -> dict[str, Any]:
    """Return a report element that is not a JSON object as a row that is kept, unreadable.

    One odd element never fails the whole read: it gets a stable id from its content and no
    time or amount, so the sync stores it as received and reports it ``unreadable``.
    """
    digest = hashlib.sha256(dump_json(element).encode()).hexdigest()[:32]
    return {"_id": f"not-an-object:{digest}", "not_an_object": element}


def _iso(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    spec = "microseconds" if utc.microsecond else "seconds"
    return utc.isoformat(timespec=spec).replace("+00:00", "Z")


def _midpoint(since: datetime, until: datetime) -> datetime:
    middle = since + (until - since) / 2
    whole = middle.replace(microsecond=0)
    return whole if whole > since else middle


def _decimal(value: object) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, str):
        try:
            return Decimal(value)
        except ArithmeticError:
            return Decimal(0)
    return Decimal(0)


def _optional_text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _subscription(data: Mapping[str, Any], subscription_id: str) -> Subscription:
    balance = data.get("balance")
    balance = balance if isinstance(balance, dict) else {}
    current = _decimal(balance.get("current_balance"))
    pending = _decimal(balance.get("pending_activity"))
    available = balance.get("available_balance")
    currency = _optional_text(data.get("currency"))
    return Subscription(
        subscription_id=_optional_text(data.get("subscription_id")) or subscription_id,
        company_id=_optional_text(data.get("company_id")),
        currency=currency.lower() if currency else None,
        status=_optional_text(data.get("status")),
        current_balance=current,
        pending_activity=pending,
        available_balance=current + pending if available is None else _decimal(available),
        sequence_id=_sequence_id(balance.get("sequence_id")),
    )


def _sequence_id(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
