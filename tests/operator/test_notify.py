"""Notifications: payload, outbox, delivery to a local receiver, retry while it is down."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from reconcile.config import Secret, Settings, notify_url_from_env
from reconcile.db.models import Notification, Posting
from reconcile.db.subscriptions import keep_currency
from reconcile.errors import ConfigError
from reconcile.operator.notify import (
    MAX_FINDINGS,
    notify_run,
    run_notice,
    should_notify,
)
from tests.operator.conftest import HOSTILE, NOW, Receiver, add_finding, add_run, add_state

PAYLOAD_KEYS = {
    "text",
    "run_id",
    "exit_code",
    "dry_run",
    "counts",
    "automatic",
    "needs_person",
    "overdue",
    "totals",
    "report_path",
    "findings",
    "overdue_findings",
    "blocks",
}
CONSOLE = "https://console.example/reconcile/"


def _notice(
    sessions: sessionmaker[Session],
    run_id: str,
    exit_code: int = 1,
    *,
    console_url: str | None = None,
    error: str | None = None,
    report_path: str | None = None,
) -> dict[str, Any]:
    with sessions() as session:
        return run_notice(
            session,
            run_id,
            exit_code=exit_code,
            report_path=report_path,
            now=NOW,
            console_url=console_url,
            error=error,
        )


def _balance(session: Session, subscription_id: str, available_minor: int, currency: str) -> None:
    keep_currency(
        session, subscription_id, currency, NOW, "acme", available_balance_minor=available_minor
    )


def _confirmed(session: Session, run_id: str, tid: str, amount: int, entry_type: str) -> None:
    session.add(
        Posting(
            transaction_id=tid,
            origin="run",
            run_id=run_id,
            company_id="acme",
            subscription_id="sub_acme",
            entry_type=entry_type,
            amount_minor=amount,
            currency="usd",
            amount_sent=str(amount),
            description=f"reconcile: {entry_type} {tid} for Stripe",
            status="confirmed",
            attempts=1,
            created_at=NOW,
            updated_at=NOW,
            confirmed_at=NOW,
        )
    )


def test_payload_lists_the_twenty_largest_findings_first(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        add_run(session, "r1")
        for amount in range(100, 3100, 100):
            add_finding(
                session,
                "r1",
                moesif_amount_minor=amount,
                moesif_id=f"m{amount}",
                finding_id=f"F-{amount:016x}",
            )
    payload = _notice(sessions, "r1", report_path="reports/drift-r1.csv")
    assert set(payload) == PAYLOAD_KEYS
    listed = [finding["moesif_amount"] for finding in payload["findings"]]
    assert len(listed) == MAX_FINDINGS
    assert listed[:3] == ["30.00", "29.00", "28.00"]
    assert [f["delta"] for f in payload["findings"][:2]] == ["-30.00", "-29.00"]
    assert payload["counts"] == {"missing_in_stripe": 30}
    assert payload["totals"] == {
        "usd": {"owed_to_customers": "0.00", "over_credited": "-465.00", "posted": "0.00"}
    }
    assert payload["needs_person"] == 30
    text = payload["text"]
    assert "USD: owed to customers 0.00 USD, over-credited -465.00 USD, posted 0.00 USD" in text
    assert "`missing_in_stripe` 30 (30 need a person)" in text
    assert "reports/drift-r1.csv" in text
    assert "`missing_in_stripe` -30.00 USD on acme/sub_acme" in text
    assert "and 25 more" in text
    assert "reconcile findings" in text


def test_payload_text_escapes_slack_markup_and_jpy_has_no_decimals(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        add_run(session, "r1")
        add_finding(
            session,
            "r1",
            company_id=HOSTILE,
            currency="jpy",
            moesif_amount_minor=5000,
            moesif_id="m1",
            finding_id="F-00000000000000aa",
        )
    payload = _notice(sessions, "r1")
    assert "<script>" not in payload["text"]
    assert "<script>" not in json.dumps(payload["blocks"])
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in payload["text"]
    [listed] = payload["findings"]
    assert listed["moesif_amount"] == "5000"
    assert listed["delta"] == "-5000"
    assert listed["currency"] == "jpy"
    assert listed["company_id"] == HOSTILE
    assert "-5,000 JPY" in payload["text"]


def test_payload_text_names_the_findings_reopened_and_only_when_there_are_some(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        add_run(session, "r1")
        add_finding(
            session,
            "r1",
            action="reopened",
            moesif_amount_minor=900,
            moesif_id="m1",
            finding_id="F-00000000000000aa",
        )
        add_finding(
            session, "r1", moesif_amount_minor=500, moesif_id="m2", finding_id="F-00000000000000bb"
        )
        add_run(session, "r2")
        add_finding(
            session, "r2", moesif_amount_minor=500, moesif_id="m2", finding_id="F-00000000000000bb"
        )
    payload = _notice(sessions, "r1")
    assert (
        "Reopened: 1 finding(s) marked resolved still drift: F-00000000000000aa"
        in (payload["text"])
    )
    assert "F-00000000000000bb" not in payload["text"].split("Reopened:")[1].splitlines()[0]
    assert "Reopened" not in _notice(sessions, "r2")["text"]


@pytest.mark.parametrize(
    ("code", "sends"), [(0, False), (1, True), (2, False), (3, True), (4, True), (75, False)]
)
def test_which_exit_codes_notify(code: int, sends: bool) -> None:
    assert should_notify(code) is sends
    # overdue findings in the queue make a run that ended well notify too, and only it
    assert should_notify(code, overdue=2) is (sends or code == 0)


def test_failed_run_text_says_why_and_what_next(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        add_run(session, "r9", exit_code=3)
    payload = _notice(sessions, "r9", 3, error="Moesif unavailable after 6 attempts")
    assert payload["findings"] == []
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
            report_path=None,
            clock=lambda: NOW + timedelta(seconds=1),
        )
    assert result is None
    with sessions() as session:
        assert session.scalars(select(Notification)).all() == []


def _demo_like_run(sessions: sessionmaker[Session], *, dry_run: bool = False) -> None:
    """A run with an over-credit, two owed customers (one blocked), JPY and EUR findings."""
    action = "would_post" if dry_run else "flagged"
    with sessions.begin() as session:
        add_run(session, "r1", dry_run=dry_run)
        _balance(session, "sub_blocked", 0, "usd")
        _balance(session, "sub_acme", 5000, "usd")
        add_finding(
            session,
            "r1",
            category="amount_mismatch",
            transaction_id="pi_initech",
            stripe_amount_minor=1050,
            moesif_amount_minor=105000,
            finding_id="F-000000000000000a",
        )
        add_finding(
            session,
            "r1",
            category="missing_in_moesif",
            action=action,
            company_id="blocked",
            subscription_id="sub_blocked",
            transaction_id="pi_blocked",
            stripe_amount_minor=2000,
            finding_id="F-000000000000000b",
        )
        add_finding(
            session,
            "r1",
            category="missing_in_moesif",
            action=action,
            transaction_id="pi_acme",
            stripe_amount_minor=3700,
            finding_id="F-000000000000000c",
        )
        add_finding(
            session,
            "r1",
            category="missing_in_moesif",
            action=action,
            company_id="umbrella",
            subscription_id="sub_umbrella",
            currency="jpy",
            transaction_id="pi_jpy",
            stripe_amount_minor=5000,
            finding_id="F-000000000000000d",
        )
        add_finding(
            session,
            "r1",
            category="missing_in_moesif",
            action="posted" if not dry_run else "would_post",
            transaction_id="pi_posted",
            stripe_amount_minor=2500,
            finding_id="F-000000000000000e",
        )
        add_finding(
            session,
            "r1",
            category="currency_mismatch",
            currency="eur",
            transaction_id="pi_eur",
            stripe_amount_minor=3000,
            finding_id="F-000000000000000f",
        )
        if not dry_run:
            _confirmed(session, "r1", "pi_posted", 2500, "credit")
            _confirmed(session, "r1", "re_refund", 500, "debit")


def test_amounts_are_signed_deltas_in_major_units_of_their_own_currency(
    sessions: sessionmaker[Session],
) -> None:
    _demo_like_run(sessions)
    payload = _notice(sessions, "r1", console_url=CONSOLE)
    by_id = {finding["finding_id"]: finding for finding in payload["findings"]}
    mismatch = by_id["F-000000000000000a"]
    assert (mismatch["stripe_amount"], mismatch["moesif_amount"]) == ("10.50", "1050.00")
    assert (mismatch["delta"], mismatch["currency"]) == ("-1039.50", "usd")
    assert (by_id["F-000000000000000d"]["delta"], by_id["F-000000000000000d"]["currency"]) == (
        "5000",
        "jpy",
    )
    assert by_id["F-000000000000000b"]["delta"] == "20.00"
    assert "F-000000000000000e" not in by_id  # posted automatically: nothing to review
    assert payload["totals"] == {
        "eur": {"owed_to_customers": "30.00", "over_credited": "0.00", "posted": "0.00"},
        "jpy": {"owed_to_customers": "5000", "over_credited": "0", "posted": "0"},
        "usd": {"owed_to_customers": "57.00", "over_credited": "-1039.50", "posted": "20.00"},
    }
    assert (payload["automatic"], payload["needs_person"], payload["dry_run"]) == (2, 5, False)
    text = payload["text"]
    assert "-1,039.50 USD" in text
    assert "+5,000 JPY" in text
    assert "10.50 USD" not in text.split("First to look at:")[1]  # the delta, not Stripe's amount
    assert "USD: owed to customers +57.00 USD, over-credited -1,039.50 USD, posted +20.00 USD" in (
        text
    )
    assert "2 posted automatically; 5 need a person." in text
    assert "`missing_in_moesif` 4 (1 posted automatically, 3 need a person)" in text
    for finding in payload["findings"]:
        assert finding["priority"] in {"critical", "high", "medium", "low"}
        assert finding["due_at"].endswith("Z")
    assert by_id["F-000000000000000a"]["priority"] == "high"  # 1,039.50 USD: >= 1,000


def test_blocked_but_owed_come_first_then_each_currency_largest_first(
    sessions: sessionmaker[Session],
) -> None:
    _demo_like_run(sessions)
    payload = _notice(sessions, "r1")
    order = [finding["finding_id"] for finding in payload["findings"]]
    blocked = [finding["blocked"] for finding in payload["findings"]]
    assert order[0] == "F-000000000000000b"  # 20.00 USD owed to a blocked customer
    assert blocked == [True, False, False, False, False]
    usd = [f["finding_id"] for f in payload["findings"] if f["currency"] == "usd"]
    assert usd == ["F-000000000000000b", "F-000000000000000a", "F-000000000000000c"]
    # The first of every currency comes before the second of any: 5000 JPY is not compared
    # with 1,039.50 USD, and 37.00 USD (second in USD) comes after the JPY and EUR ones.
    assert order.index("F-000000000000000c") > order.index("F-000000000000000d")
    assert order.index("F-000000000000000c") > order.index("F-000000000000000f")
    first = payload["text"].split("First to look at:")[1].splitlines()[1]
    assert "F-000000000000000b" in first
    assert "BLOCKED while owed" in first


def test_a_dry_run_is_marked_and_says_what_it_would_post(sessions: sessionmaker[Session]) -> None:
    _demo_like_run(sessions, dry_run=True)
    payload = _notice(sessions, "r1")
    assert payload["dry_run"] is True
    assert payload["text"].startswith("*[DRY RUN] reconcile run r1")
    assert payload["blocks"][0]["text"]["text"].startswith("[DRY RUN]")
    assert payload["automatic"] == 4
    assert "Dry run: nothing was posted; 4 would be posted automatically" in payload["text"]
    assert {sums["posted"] for sums in payload["totals"].values()} == {"0.00", "0"}
    assert "posted +" not in payload["text"]


def test_each_finding_links_to_its_console_page_and_slack_gets_blocks(
    sessions: sessionmaker[Session],
) -> None:
    _demo_like_run(sessions)
    payload = _notice(sessions, "r1", console_url=CONSOLE)
    for finding in payload["findings"]:
        url = "https://console.example/reconcile/findings/" + finding["finding_id"]
        assert finding["url"] == url
        assert f"<{url}|{finding['finding_id']}>" in json.dumps(payload["blocks"])
    assert [block["type"] for block in payload["blocks"]][:2] == ["header", "section"]
    assert all(finding["url"] is None for finding in _notice(sessions, "r1")["findings"])


def test_an_ignored_finding_is_never_sent(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        add_run(session, "r1")
        ignored = add_state(session, moesif_id="m-ignored", status="ignored", delta_minor=-900)
        add_finding(
            session,
            "r1",
            moesif_amount_minor=900,
            moesif_id="m-ignored",
            finding_id=ignored.finding_id,
        )
        add_finding(session, "r1", moesif_amount_minor=300, moesif_id="m-open", finding_id="F-1")
    payload = _notice(sessions, "r1")
    assert [finding["finding_id"] for finding in payload["findings"]] == ["F-1"]
    assert ignored.finding_id not in payload["text"]
    assert ignored.finding_id not in json.dumps(payload["blocks"])
    assert payload["totals"]["usd"]["over_credited"] == "-3.00"


def test_a_finding_keeps_its_first_sighting_for_priority_and_due_time(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        add_run(session, "r1")
        old = add_state(session, moesif_id="m-old", first_seen_at=NOW - timedelta(days=7))
        add_finding(
            session, "r1", moesif_amount_minor=100, moesif_id="m-old", finding_id=old.finding_id
        )
    [finding] = _notice(sessions, "r1")["findings"]
    assert finding["first_seen_at"] == "2026-11-24T02:00:00Z"
    assert finding["priority"] == "critical"  # 7 days old, whatever the amount: due a day ago
    assert finding["overdue"] is True
    assert finding["due_at"] == "2026-11-30T02:00:00Z"


def test_the_console_url_must_be_http() -> None:
    base = {"STRIPE_API_KEY": "sk_test_x", "MOESIF_MANAGEMENT_TOKEN": "token"}
    assert Settings.from_env(base, dotenv=None).console_url is None
    url = "https://console.example/reconcile"
    assert Settings.from_env({**base, "RECONCILE_CONSOLE_URL": url}, dotenv=None).console_url == url
    with pytest.raises(ConfigError, match="RECONCILE_CONSOLE_URL"):
        Settings.from_env({**base, "RECONCILE_CONSOLE_URL": "javascript:alert(1)"}, dotenv=None)


def _overdue_in_queue(session: Session) -> None:
    """The queue holds, besides the run's own, one overdue finding of an older window."""
    add_state(
        session,
        category="amount_mismatch",
        transaction_id="pi_old",
        moesif_id="m-old-window",
        stripe_amount_minor=1000,
        moesif_amount_minor=4000,
        delta_minor=-3000,
        owner="alice",
        status="assigned",
        first_seen_at=NOW - timedelta(days=8),
        finding_id="F-00000000000000od",
    )
    add_state(  # ignored: never overdue
        session, moesif_id="m-ignored", status="ignored", first_seen_at=NOW - timedelta(days=30)
    )
    add_state(  # fresh: not yet due
        session, moesif_id="m-fresh", delta_minor=-100, first_seen_at=NOW - timedelta(hours=1)
    )


def test_overdue_findings_of_the_queue_are_counted_and_listed_beside_the_runs(
    sessions: sessionmaker[Session],
) -> None:
    _seed(sessions, "r1")
    with sessions.begin() as session:
        _overdue_in_queue(session)
    payload = _notice(sessions, "r1", console_url=CONSOLE)
    assert payload["overdue"] == 1
    [late] = payload["overdue_findings"]
    assert late["finding_id"] == "F-00000000000000od"
    assert late["overdue"] is True
    assert late["delta"] == "-30.00"
    assert late["owner"] == "alice"
    assert late["status"] == "assigned"
    assert late["url"] == CONSOLE + "findings/F-00000000000000od"
    assert "F-00000000000000od" not in [f["finding_id"] for f in payload["findings"]]
    assert payload["counts"] == {"matched_by_amount": 1, "missing_in_stripe": 1}
    assert "Overdue (1), past their due time:" in payload["text"]
    assert "owner alice" in payload["text"]


def test_a_run_that_ends_well_notifies_while_queue_findings_are_overdue(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    _seed(sessions, "r0")
    with sessions.begin() as session:
        _overdue_in_queue(session)
    delivery = _notify(sessions, receiver.url, "r0", 0)
    assert delivery is not None
    assert delivery.delivered == ("r0",)
    [payload] = receiver.payloads()
    assert payload["exit_code"] == 0
    assert payload["overdue"] == 1
    assert "1 overdue finding(s) need a person" in payload["text"].splitlines()[0]


def test_a_run_that_ends_well_sends_nothing_while_nothing_is_overdue(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    _seed(sessions, "r0")
    with sessions.begin() as session:
        add_state(session, moesif_id="m-fresh", delta_minor=-100, first_seen_at=NOW)
    _notify(sessions, receiver.url, "r0", 0)
    assert receiver.bodies == []
    with sessions() as session:
        assert session.scalars(select(Notification)).all() == []
