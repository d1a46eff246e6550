"""Notifications: payload, outbox, delivery to a local receiver, retry while it is down."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from reconcile.config import Secret, notify_url_from_env
from reconcile.db.models import Notification
from reconcile.errors import ConfigError
from reconcile.operator.notify import (
    MAX_FINDINGS,
    build_payload,
    notify_run,
    should_notify,
)
from tests.operator.conftest import NOW, Receiver, add_finding, add_run

PAYLOAD_KEYS = {"text", "run_id", "exit_code", "counts", "totals", "report_path", "findings"}


def _finding(amount: int, company: str = "acme", **extra: object) -> dict[str, object]:
    return {
        "category": "missing_in_stripe",
        "company_id": company,
        "currency": "usd",
        "moesif_amount_minor": amount,
        "delta_minor": -amount,
        **extra,
    }


def test_payload_lists_the_twenty_largest_findings_first() -> None:
    findings = [_finding(amount) for amount in range(100, 3100, 100)]
    payload = build_payload(
        run_id="r1",
        exit_code=1,
        counts={"missing_in_stripe": 30},
        totals={"missing_in_stripe:usd:credit": "465.00"},
        report_path="reports/drift-r1.csv",
        findings=findings,
    )
    assert set(payload) == PAYLOAD_KEYS
    listed = [finding["moesif_amount"] for finding in payload["findings"]]
    assert len(listed) == MAX_FINDINGS
    assert listed[:3] == ["30.00", "29.00", "28.00"]
    assert payload["findings"][0]["delta"] == "-30.00"
    text = payload["text"]
    assert "`missing_in_stripe` 30: 465.00 USD credit" in text
    assert "reports/drift-r1.csv" in text
    assert "missing_in_stripe -30.00 USD on acme" in text
    assert "and 25 more" in text
    assert "reconcile findings" in text


def test_payload_text_escapes_slack_markup_and_jpy_has_no_decimals() -> None:
    payload = build_payload(
        run_id="r1",
        exit_code=1,
        counts={"amount_mismatch": 1},
        totals={},
        report_path=None,
        findings=[_finding(5000, company="<script>alert(1)</script>", currency="jpy")],
    )
    assert "<script>" not in payload["text"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in payload["text"]
    assert payload["findings"][0]["moesif_amount"] == "5000"
    assert payload["findings"][0]["company_id"] == "<script>alert(1)</script>"


def test_payload_text_names_the_findings_reopened_and_only_when_there_are_some() -> None:
    reopened = _finding(900, action="reopened", finding_id="F-00000000000000aa")
    flagged = _finding(500, action="flagged", finding_id="F-00000000000000bb")
    payload = build_payload(
        run_id="r1",
        exit_code=1,
        counts={"missing_in_stripe": 2},
        totals={},
        report_path=None,
        findings=[flagged, reopened],
    )
    assert (
        "Reopened: 1 finding(s) marked resolved still drift: F-00000000000000aa"
        in (payload["text"])
    )
    assert "F-00000000000000bb" not in payload["text"].split("Reopened:")[1].splitlines()[0]
    quiet = build_payload(
        run_id="r2", exit_code=1, counts={}, totals={}, report_path=None, findings=[flagged]
    )
    assert "Reopened" not in quiet["text"]


@pytest.mark.parametrize(
    ("code", "sends"), [(0, False), (1, True), (2, False), (3, True), (4, True), (75, False)]
)
def test_which_exit_codes_notify(code: int, sends: bool) -> None:
    assert should_notify(code) is sends


def test_failed_run_text_says_why_and_what_next() -> None:
    payload = build_payload(
        run_id="r9",
        exit_code=3,
        counts={},
        totals={},
        report_path=None,
        findings=[],
        error="Moesif unavailable after 6 attempts",
    )
    assert "the run failed" in payload["text"]
    assert "Moesif unavailable after 6 attempts" in payload["text"]
    assert "rerun resumes" in payload["text"]


def test_notify_url_is_a_secret_and_must_be_http() -> None:
    url = notify_url_from_env({"RECONCILE_NOTIFY_URL": "https://hooks.example/T/B/xyz"})
    assert url is not None
    assert "xyz" not in repr(url)
    assert notify_url_from_env({}) is None
    with pytest.raises(ConfigError) as raised:
        notify_url_from_env({"RECONCILE_NOTIFY_URL": "ftp://hooks.example/T/B/xyz"})
    assert "xyz" not in str(raised.value)


def _notify(sessions: sessionmaker[Session], url: str, run_id: str, exit_code: int):
    with httpx.Client(timeout=5) as http:
        return notify_run(
            sessions,
            http,
            Secret(url),
            run_id=run_id,
            exit_code=exit_code,
            counts={"missing_in_stripe": 1},
            totals={"missing_in_stripe:usd:credit": "20.00"},
            report_path=f"reports/drift-{run_id}.csv",
            clock=lambda: NOW,
        )


def _seed(sessions: sessionmaker[Session], run_id: str, amount: int = 2000) -> None:
    with sessions.begin() as session:
        add_run(session, run_id)
        add_finding(session, run_id, moesif_amount_minor=amount, moesif_id=f"m-{run_id}")
        add_finding(session, run_id, category="matched_by_amount", action="none")


def test_a_clean_run_sends_and_stores_nothing(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    _seed(sessions, "r0")
    _notify(sessions, receiver.url, "r0", 0)
    assert receiver.bodies == []
    with sessions() as session:
        assert session.scalars(select(Notification)).all() == []


def test_a_run_with_drift_posts_one_payload(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    _seed(sessions, "r1")
    delivery = _notify(sessions, receiver.url, "r1", 1)
    assert delivery is not None
    assert delivery.delivered == ("r1",)
    [payload] = receiver.payloads()
    assert set(payload) == PAYLOAD_KEYS | {"miss_rate"}
    # no top-up credits posted: no rate (tests/e2e/test_miss_rate.py has one)
    assert payload["miss_rate"] == {"rate": None, "missed": 0, "total": 0, "days": 30}
    assert payload["run_id"] == "r1"
    assert payload["exit_code"] == 1
    assert [f["category"] for f in payload["findings"]] == ["missing_in_stripe"]
    with sessions() as session:
        stored = session.scalars(select(Notification)).one()
    assert stored.delivered_at == NOW
    assert stored.attempts == 1


def test_undelivered_notification_goes_first_unchanged_when_the_receiver_is_back(
    sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    receiver = Receiver().start()
    port, url = receiver.port, receiver.url
    receiver.stop()  # the chat service is down
    _seed(sessions, "r1", amount=1500)
    with caplog.at_level(logging.WARNING):
        delivery = _notify(sessions, url, "r1", 1)
    assert delivery is not None
    assert delivery.failed == "r1"
    assert delivery.delivered == ()
    with sessions() as session:
        kept = session.scalars(select(Notification)).one()
    assert kept.delivered_at is None
    assert kept.attempts == 1
    assert kept.last_error
    assert "s3cr3t" not in kept.last_error
    assert "s3cr3t" not in caplog.text
    assert "not delivered" in caplog.text

    back = Receiver(port=port).start()  # up again, same address
    try:
        _seed(sessions, "r2", amount=900)
        delivery = _notify(sessions, url, "r2", 1)
        assert delivery is not None
        assert delivery.delivered == ("r1", "r2")
        assert len(back.bodies) == 2
        assert back.bodies[0] == kept.payload.encode()
        assert [json.loads(body)["run_id"] for body in back.bodies] == ["r1", "r2"]
    finally:
        back.stop()


def test_a_receiver_error_keeps_the_notification(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    receiver.status = 500
    _seed(sessions, "r1")
    delivery = _notify(sessions, receiver.url, "r1", 4)
    assert delivery is not None
    assert delivery.failed == "r1"
    assert delivery.error is not None
    assert delivery.error.startswith("HTTP 500")
    receiver.status = 200
    delivery = _notify(sessions, receiver.url, "r2", 0)  # a clean run still delivers the backlog
    assert delivery is not None
    assert delivery.delivered == ("r1",)
    assert [p["exit_code"] for p in receiver.payloads()] == [4, 4]


def test_without_a_url_nothing_is_stored(sessions: sessionmaker[Session]) -> None:
    _seed(sessions, "r1")
    with httpx.Client() as http:
        result = notify_run(
            sessions,
            http,
            None,
            run_id="r1",
            exit_code=1,
            counts={},
            totals={},
            report_path=None,
            clock=lambda: NOW + timedelta(seconds=1),
        )
    assert result is None
    with sessions() as session:
        assert session.scalars(select(Notification)).all() == []
