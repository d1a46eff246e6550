"""The limits on what clients send ``serve``, decided without HTTP."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from reconcile.serve.idempotency import KeyAction, StoredKey, action_for, is_final
from reconcile.serve.limits import BodyTooLarge, BoundedRequests, too_large
from reconcile.serve.untrusted import (
    MAX_BODY,
    MAX_JSON_DEPTH,
    UntrustedInput,
    id_problem,
    load_json,
    nesting_depth,
)
from reconcile.stripe.currencies import STRIPE_CURRENCIES, is_stripe_currency

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
MB = 1024 * 1024


def test_nesting_depth_counts_brackets_outside_strings() -> None:
    assert nesting_depth(b'{"a": [1, {"b": []}]}') == 4
    assert nesting_depth(b'{"a": "[[[[[[[[[[", "b": "\\\\\\"[[["}') == 1
    assert nesting_depth(b"42") == 0
    assert nesting_depth(b"[]" * 1000) == 1


def test_json_deeper_than_32_levels_is_refused_quickly_without_recursion() -> None:
    assert load_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) is not None
    started = time.perf_counter()
    for deep in (
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 33 + b"1" + b"}" * 33,
        b"[" * 1_000_000,
    ):
        with pytest.raises(UntrustedInput, match="nested deeper than 32"):
            load_json(deep)
    assert time.perf_counter() - started < 2


def test_json_is_parsed_with_exact_decimals_and_bad_json_is_one_error() -> None:
    assert load_json(b'{"amount": 10.50}') == {"amount": Decimal("10.50")}
    for bad in (b"not json", b"\xff\xfe", b'{"a": 1', b"1" * 5000, b""):
        with pytest.raises(UntrustedInput, match="not JSON"):
            load_json(bad)


def test_ids_are_bounded_strings_the_database_can_store() -> None:
    assert id_problem("evt_1", "the event id") is None
    assert id_problem("e" * 255, "the event id") is None
    assert "255" in (id_problem("e" * 256, "the event id") or "")
    assert "NUL" in (id_problem("evt\x00", "the event id") or "")
    assert "Unicode" in (id_problem("evt\udc80", "the event id") or "")
    assert id_problem(None, "the event id") == "the event id must be a non-empty string"


def test_stripe_currencies_leave_out_fund_codes_and_metals() -> None:
    assert {"usd", "eur", "jpy", "kwd", "bhd"} <= STRIPE_CURRENCIES
    assert not {"bov", "usn", "clf", "uyi", "che", "chw", "cou", "mxv", "xau", "xdr"} & (
        STRIPE_CURRENCIES
    )
    assert all(len(code) == 3 and code.isascii() and code.islower() for code in STRIPE_CURRENCIES)
    assert is_stripe_currency("USD")
    assert not is_stripe_currency("\uff35\uff33\uff24")


def test_a_stored_key_replays_conflicts_waits_or_is_resumed() -> None:
    stored = StoredKey("h1", NOW + timedelta(minutes=1), answered=False)
    assert action_for(stored, "h2", NOW) is KeyAction.CONFLICT
    assert action_for(stored, "h1", NOW) is KeyAction.BUSY
    assert action_for(stored, "h1", NOW + timedelta(minutes=2)) is KeyAction.RESUME
    answered = StoredKey("h1", NOW - timedelta(days=30), answered=True)
    assert action_for(answered, "h1", NOW + timedelta(days=365)) is KeyAction.REPLAY
    assert action_for(answered, "h2", NOW) is KeyAction.CONFLICT


def test_only_answers_below_500_stay_with_their_key() -> None:
    assert [is_final(status) for status in (200, 202, 400, 402, 409, 502, 503)] == [
        True,
        True,
        True,
        True,
        True,
        False,
        False,
    ]


def test_the_body_limit_stops_reading_one_chunk_past_1_mb() -> None:
    chunk = 64 * 1024
    pulled = 0
    sent: list[dict[str, object]] = []

    async def endless_body() -> dict[str, object]:
        nonlocal pulled
        pulled += chunk
        return {"type": "http.request", "body": b"a" * chunk, "more_body": pulled < 20 * MB}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    async def read_all(request: Request) -> Response:
        await request.body()
        return Response("read")

    app = Starlette(
        routes=[Route("/", read_all, methods=["POST"])],
        middleware=[Middleware(BoundedRequests)],
        exception_handlers={BodyTooLarge: too_large},
    )
    scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}
    scope |= {"root_path": "", "http_version": "1.1", "scheme": "http", "server": None}
    asyncio.run(app(scope, endless_body, send))  # type: ignore[arg-type]

    assert pulled <= MAX_BODY + chunk
    assert sent[0]["status"] == 413
    assert (b"connection", b"close") in sent[0]["headers"]  # type: ignore[operator]
