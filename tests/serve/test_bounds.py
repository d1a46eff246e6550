"""What clients may send ``serve``, over real sockets: size, time, nesting, amounts, ids, text."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from reconcile.config import Secret
from reconcile.db.models import TopUpKey, WebhookEvent
from reconcile.fakes.stripe import FakeStripe, sign
from reconcile.operator.console.app import create_console_app
from reconcile.operator.console.settings import ConsoleSettings
from tests.serve.conftest import SECRET, TOKEN, Served

MB = 1024 * 1024
CHUNK = 64 * 1024


@pytest.fixture(autouse=True)
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Nothing a client sends leaves a traceback or an error in the server's log."""
    caplog.set_level(logging.INFO)
    yield
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert bad == [], [r.getMessage() for r in bad]
    assert "Traceback" not in caplog.text
    assert max((len(r.getMessage()) for r in caplog.records), default=0) < 1000


def _customer(fake: FakeStripe) -> str:
    customer = fake.add_customer(
        metadata={"moesif_company_id": "co_1", "moesif_subscription_id": "sub_m1"}
    )
    fake.set_default_payment_method(customer, "pm_card_visa")
    return customer


def _count(sessions: sessionmaker[Session], table: type[Any]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def _nothing_happened(served: Served) -> None:
    assert served.stripe.objects("payment_intent") == []
    assert _count(served.sessions, WebhookEvent) == 0
    assert _count(served.sessions, TopUpKey) == 0
    served.worker.drain()
    assert served.moesif.posts == []


def _address(served: Served) -> tuple[str, int]:
    host, port = served.url.removeprefix("http://").split(":")
    return host, int(port)


def _top_up(served: Served, body: Any, key: str | None = None) -> httpx.Response:  # noqa: ANN401
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    with served.http() as http:
        if isinstance(body, bytes):
            return http.post("/top-up", content=body, headers=headers)
        return http.post("/top-up", json=body, headers=headers)


def _signed(served: Served, payload: bytes) -> httpx.Response:
    header = sign(payload.decode("latin-1"), SECRET, int(time.time()))
    with served.http() as http:
        return http.post("/webhooks/stripe", content=payload, headers={"Stripe-Signature": header})


@pytest.fixture
def console_served(
    make_served: Callable[..., Served], sessions: sessionmaker[Session], tmp_path: Path
) -> Served:
    page = create_console_app(
        ConsoleSettings(token=Secret("console-token-for-bounds-tests-0001"), report_dir=tmp_path),
        sessions,
        lambda: datetime.now(UTC),
    )
    return make_served(console=page)


def _stream(
    served: Served, path: str, headers: dict[str, str], total: int
) -> tuple[int, int, bytes]:
    """POST ``total`` bytes in chunks while reading; return the status, bytes sent, the answer."""
    sock = socket.create_connection(_address(served), timeout=10)
    head = f"POST {path} HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    sock.sendall(head.encode() + b"\r\n")
    answer = bytearray()
    sent = 0
    sent_when_answered: list[int] = []

    def read() -> None:
        with_answer = False
        try:
            while data := sock.recv(65536):
                answer.extend(data)
                if not with_answer:
                    with_answer = True
                    sent_when_answered.append(sent)
        except OSError:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    framed = f"{CHUNK:x}\r\n".encode() + b"a" * CHUNK + b"\r\n"
    try:
        while sent < total and not sent_when_answered:
            sock.sendall(framed)
            sent += CHUNK
    except OSError:
        pass
    reader.join(timeout=10)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 "), bytes(answer[:100])
    return int(answer.split(b" ")[1]), sent_when_answered[0], bytes(answer)


@pytest.mark.parametrize("path", ["/webhooks/stripe", "/top-up", "/login"])
def test_a_large_streamed_body_is_refused_with_413_before_it_is_all_sent(
    console_served: Served, path: str
) -> None:
    served = console_served
    headers = {"Authorization": f"Bearer {TOKEN}", "Stripe-Signature": "t=1,v1=00"}
    if path == "/login":
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    status, sent, answer = _stream(served, path, headers, 50 * MB)
    assert status == 413
    assert b"connection: close" in answer.lower()
    if path != "/login":
        assert b'{"error":"the body is larger than 1048576 bytes"}' in answer
    assert sent < 25 * MB
    _nothing_happened(served)
    with served.http() as http:
        assert http.get("/healthz").status_code == 200


@pytest.mark.parametrize("path", ["/webhooks/stripe", "/top-up", "/login"])
def test_a_body_declared_over_1_mb_is_refused_before_it_is_sent(
    console_served: Served, path: str
) -> None:
    sock = socket.create_connection(_address(console_served), timeout=10)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Length: {50 * MB}\r\n\r\n".encode()
    )
    answer = sock.recv(65536)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in answer.lower()
    _nothing_happened(console_served)


def test_a_body_of_exactly_1_mb_is_read(served: Served) -> None:
    body = b'{"pad": "' + b"a" * (MB - 11) + b'"}'
    assert len(body) == MB
    answer = _top_up(served, body)
    assert answer.status_code == 400
    assert "unknown fields" in answer.json()["error"]


def _closed_after(sock: socket.socket, dribble: bytes, limit: float) -> float:
    """Send ``dribble`` every 50 ms until the server closes; return the seconds it took."""
    started = time.monotonic()
    sock.settimeout(0.05)
    while time.monotonic() - started < limit:
        try:
            if dribble:
                sock.sendall(dribble)
            data = sock.recv(65536)
            if not data:
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
    return limit


@pytest.mark.parametrize(
    ("opening", "dribble"),
    [
        (b"POST /webhooks/stripe HTTP/1.1\r\nHost: t\r\nContent-Length: 9000\r\n\r\n{", b""),
        (b"POST /webhooks/stripe HTTP/1.1\r\nHost: t\r\nContent-Length: 9000\r\n\r\n{", b" "),
        (b"POST /top-up HTTP/1.1\r\nHost: t\r\nX-Slow: a", b"a"),
        (b"POST /top-up HTTP/1.1\r\nHost: t\r\nContent-Length: 9000\r\n\r\n{", b" "),
    ],
    ids=["stalled-body", "dribbled-body", "dribbled-headers", "unread-body-after-401"],
)
def test_a_request_not_whole_within_the_read_timeout_is_dropped(
    make_served: Callable[..., Served], opening: bytes, dribble: bytes
) -> None:
    served = make_served(read_timeout=0.5)
    sock = socket.create_connection(_address(served), timeout=5)
    sock.sendall(opening)
    took = _closed_after(sock, dribble, limit=5.0)
    sock.close()
    assert 0.4 <= took < 3.0
    _nothing_happened(served)


def test_many_slow_connections_are_all_dropped_and_others_still_served(
    make_served: Callable[..., Served],
) -> None:
    served = make_served(read_timeout=0.5)
    slow = [socket.create_connection(_address(served), timeout=5) for _ in range(100)]
    for sock in slow:
        sock.sendall(b"POST /webhooks/stripe HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n\r\n")
    with served.http() as http:
        assert http.get("/healthz").status_code == 200
    time.sleep(1.5)  # the injected read timeout (0.5 s) and some slack, not a backoff
    for sock in slow:
        sock.settimeout(1)
        try:
            assert sock.recv(100) == b""
        except ConnectionResetError:
            pass
        sock.close()
    with served.http() as http:
        assert http.get("/healthz").status_code == 200


def test_a_client_that_goes_away_mid_body_leaves_no_traceback(served: Served) -> None:
    for path in ("/webhooks/stripe", "/top-up"):
        sock = socket.create_connection(_address(served), timeout=5)
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n"
            'Content-Length: 1000\r\n\r\n{"a": '.encode()
        )
        time.sleep(0.2)  # let the app start reading the body
        sock.close()
    time.sleep(0.3)
    with served.http() as http:
        assert http.get("/healthz").status_code == 200
    _nothing_happened(served)


def _deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (_deep(100_000), "nested deeper than 32"),
        (b'{"customer_id": ' * 40 + b"1" + b"}" * 40, "nested deeper than 32"),
        (json.dumps({"customer_id": "cus_1", "amount": "1e999990", "currency": "usd"}), "ASCII"),
        (json.dumps({"customer_id": "cus_1", "amount": "1e999999", "currency": "usd"}), "ASCII"),
        (json.dumps({"customer_id": "cus_1", "amount": "1_000", "currency": "usd"}), "ASCII"),
        (
            json.dumps({"customer_id": "cus_1", "amount": "\u0661\u0660", "currency": "usd"}),
            "ASCII",
        ),
        (b'{"customer_id": "cus_1", "amount": 1e999999, "currency": "usd"}', "decimal string"),
        (b'{"customer_id": "cus_1", "amount": 25, "currency": "usd"}', "decimal string"),
        (json.dumps({"customer_id": "cus_1", "amount": "1", "currency": "bov"}), "ISO 4217"),
        (json.dumps({"customer_id": "cus_1", "amount": "1", "currency": "usn"}), "ISO 4217"),
        (
            json.dumps({"customer_id": "cus_" + "9" * 100_000, "amount": "1", "currency": "usd"}),
            "255",
        ),
        (json.dumps({"customer_id": "cus_1\u0000", "amount": "1", "currency": "usd"}), "NUL"),
        (json.dumps({"customer_id": "cus_\ud800", "amount": "1", "currency": "usd"}), "Unicode"),
        (b"\xff\xfe{\x00}\x00", "not JSON"),
    ],
    ids=[
        "100k-deep",
        "40-deep-object",
        "1e999990",
        "1e999999",
        "underscore",
        "arabic-indic",
        "number-exponent",
        "number",
        "bov",
        "usn",
        "100k-customer",
        "nul-customer",
        "surrogate-customer",
        "utf-16",
    ],
)
def test_top_up_input_out_of_bounds_is_400_fast_and_touches_nothing(
    served: Served, body: str | bytes, says: str
) -> None:
    started = time.monotonic()
    answer = _top_up(served, body if isinstance(body, bytes) else body.encode(), key="k-1")
    assert time.monotonic() - started < 2.0
    assert answer.status_code == 400
    assert says in answer.json()["error"]
    assert len(answer.text) < 300
    assert served.stripe.requests == []
    _nothing_happened(served)


def test_an_idempotency_key_over_255_characters_is_400(served: Served) -> None:
    customer = _customer(served.stripe)
    request = {"customer_id": customer, "amount": "1.00", "currency": "usd"}
    answer = _top_up(served, request, key="k" * 256)
    assert answer.status_code == 400
    assert "255" in answer.json()["error"]
    _nothing_happened(served)


def _event(**fields: object) -> bytes:
    event = {"id": "evt_1", "object": "event", "type": "customer.created", "created": 1}
    return json.dumps({**event, **fields}).encode()


@pytest.mark.parametrize(
    "payload",
    [
        _event(type="customer.\u0000created"),
        _event(id="evt_\u0000"),
        _event(id="evt_" + "1" * 252),
        _event(type="t" * 101),
        _event(id="evt_\udc80"),
        _event(data={"object": {"note": "nul \u0000 inside"}}).replace(b"\\u0000", b"\x00"),
        _event().decode().encode("utf-16-le"),
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=[
        "nul-type",
        "nul-id",
        "long-id",
        "long-type",
        "surrogate-id",
        "raw-nul",
        "utf-16",
        "100k-deep",
    ],
)
def test_a_signed_event_that_cannot_be_stored_is_400_never_500(
    served: Served, payload: bytes
) -> None:
    answer = _signed(served, payload)
    assert answer.status_code == 400
    assert len(answer.text) < 300
    _nothing_happened(served)
    assert _signed(served, _event()).status_code == 200


def test_a_nul_in_a_url_is_400_on_the_review_page(console_served: Served) -> None:
    with console_served.http() as http:
        login = http.post("/login", data={"token": "console-token-for-bounds-tests-0001"})
        assert login.status_code == 303
        assert http.get("/findings?company=co_1").status_code == 200
        assert http.get("/findings?company=%00").status_code == 400
        assert http.get("/findings/F-%00").status_code == 400
