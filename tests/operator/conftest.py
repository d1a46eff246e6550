"""Fixtures of the operator's tools: a local HTTP receiver and a snapshot with runs and findings."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from reconcile.db.models import ExpectedRow, Finding, FindingState, LedgerEntry, Run
from reconcile.domain.ids import finding_id

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
HOSTILE = "<script>alert(1)</script>"


@dataclass
class Receiver:
    """A tiny webhook receiver on 127.0.0.1 that keeps every body it is sent."""

    port: int = 0
    bodies: list[bytes] = field(default_factory=list)
    status: int = 200
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                receiver.bodies.append(self.rfile.read(length))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/T000/B000/s3cr3t-webhook-path"

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body in self.bodies]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    yield started
    started.stop()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def add_run(
    session: Session, run_id: str, *, started_at: datetime = NOW, exit_code: int = 1, **extra: Any
) -> Run:
    run = Run(
        id=run_id,
        since=started_at - timedelta(days=3),
        until=started_at,
        status="succeeded",
        exit_code=exit_code,
        started_at=started_at,
        finished_at=started_at + timedelta(seconds=42),
        **extra,
    )
    session.add(run)
    session.flush()
    return run


def add_finding(session: Session, run_id: str, **values: Any) -> Finding:
    defaults: dict[str, Any] = {
        "category": "missing_in_stripe",
        "action": "flagged",
        "company_id": "acme",
        "subscription_id": "sub_acme",
        "currency": "usd",
        "entry_type": "credit",
    }
    finding = Finding(run_id=run_id, **{**defaults, **values})
    session.add(finding)
    session.flush()
    return finding


def add_state(session: Session, **values: Any) -> FindingState:
    category = values.setdefault("category", "missing_in_stripe")
    values.setdefault("moesif_id", f"row-{len(values)}-{values.get('company_id', 'x')}")
    defaults: dict[str, Any] = {
        "status": "open",
        "company_id": "acme",
        "subscription_id": "sub_acme",
        "currency": "usd",
        "entry_type": "credit",
        "first_seen_run_id": "r1",
        "first_seen_at": NOW - timedelta(days=10),
        "last_seen_run_id": "r1",
        "last_seen_at": NOW,
        "runs_seen": 1,
    }
    merged = {**defaults, **values}
    merged.setdefault(
        "finding_id", finding_id(category, merged.get("transaction_id"), merged.get("moesif_id"))
    )
    state = FindingState(**merged)
    session.add(state)
    session.flush()
    return state


def add_initech_records(session: Session) -> None:
    """Add initech's 10.50 USD top-up and the ledger row that holds it as 1,050.00 USD."""
    session.add(
        ExpectedRow(
            transaction_id="pi_initech", source="topup", entry_type="credit",
            amount_minor=1050, currency="usd", created_at=NOW, stripe_object_id="pi_initech",
            topup_id="pi_initech", stripe_customer_id="cus_9", company_id="initech",
            subscription_id="sub_initech", first_seen_run_id="r", last_seen_run_id="r",
            updated_at=NOW,
        )
    )  # fmt: skip
    session.add(
        LedgerEntry(
            moesif_id="m-initech", transaction_id="pi_initech", entry_type="credit",
            amount_minor=105000, amount_raw="1050", currency="usd", company_id="initech",
            subscription_id="sub_initech", created_at=NOW, description="old integration",
            first_seen_at=NOW, last_seen_at=NOW,
        )
    )  # fmt: skip


Clock = Callable[[], datetime]


class ServedApp:
    """An ASGI app served by uvicorn on 127.0.0.1 in a thread, for a real HTTP client or browser."""

    def __init__(self, app: Any) -> None:
        import socket

        import uvicorn

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServedApp:
        self._thread.start()
        started = threading.Event()
        for _ in range(500):
            if self._server.started:
                started.set()
                break
            started.wait(0.01)
        if not started.is_set():
            raise RuntimeError("uvicorn did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join()
        self._socket.close()


@pytest.fixture
def seeded(sessions: sessionmaker[Session]) -> dict[str, str]:
    with sessions.begin() as session:
        add_run(session, "20261128T020000Z-aaaaaa", started_at=NOW - timedelta(days=3), findings=2)
        add_run(session, "20261201T020000Z-bbbbbb", findings=3, flagged=2, posted=1)
        add_finding(
            session,
            "20261128T020000Z-aaaaaa",
            moesif_id="m-hostile",
            company_id=HOSTILE,
            moesif_amount_minor=2000,
        )
        add_finding(
            session,
            "20261201T020000Z-bbbbbb",
            moesif_id="m-hostile",
            company_id=HOSTILE,
            moesif_amount_minor=2000,
        )
        session.add(
            LedgerEntry(
                moesif_id="m-hostile",
                transaction_id=None,
                entry_type="credit",
                amount_minor=2000,
                amount_raw="20.00",
                currency="usd",
                company_id=HOSTILE,
                subscription_id="sub_h",
                created_at=NOW,
                description="manual credit <b>by support</b>",
                first_seen_at=NOW,
                last_seen_at=NOW,
            )
        )
        session.add(
            ExpectedRow(
                transaction_id="pi_owed",
                source="topup",
                entry_type="credit",
                amount_minor=2500,
                currency="usd",
                created_at=NOW,
                stripe_object_id="pi_owed",
                topup_id="pi_owed",
                stripe_customer_id="cus_1",
                company_id="acme",
                subscription_id="sub_acme",
                first_seen_run_id="r",
                last_seen_run_id="r",
                updated_at=NOW,
            )
        )
        ids = {
            "hostile": add_state(
                session,
                moesif_id="m-hostile",
                company_id=HOSTILE,
                subscription_id="sub_h",
                moesif_amount_minor=2000,
                delta_minor=-2000,
                first_seen_at=NOW - timedelta(days=3),
                first_seen_run_id="20261128T020000Z-aaaaaa",
            ).finding_id,
            "owed": add_state(
                session,
                category="missing_in_moesif",
                transaction_id="pi_owed",
                moesif_id=None,
                stripe_amount_minor=2500,
                delta_minor=2500,
                first_seen_at=NOW - timedelta(hours=1),
            ).finding_id,
            "jpy": add_state(
                session,
                category="missing_in_moesif",
                transaction_id="pi_jpy",
                moesif_id=None,
                company_id="umbrella",
                currency="jpy",
                stripe_amount_minor=5000,
                delta_minor=5000,
                first_seen_at=NOW - timedelta(days=2),
            ).finding_id,
        }
    return ids


def sign_in(client: Any, token: str) -> Any:  # noqa: ANN401 - an httpx or Starlette client
    """Fetch the login form as a browser would, then post ``token`` with its CSRF token."""
    import re

    form = client.get("/login")
    assert form.status_code == 200
    found = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert found is not None
    return client.post("/login", data={"token": token, "csrf": found.group(1)})
