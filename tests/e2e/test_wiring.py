"""Notifications, masked errors and unreadable Stripe objects, through the command line."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from jobs import nightly
from reconcile.cli import main
from reconcile.config import Settings
from reconcile.db.engine import make_engine, upgrade_to_head
from reconcile.db.models import Finding, FindingState, Run
from reconcile.demo import seed
from reconcile.domain.times import Window
from reconcile.errors import MoesifUnavailable
from reconcile.redaction import Redactor
from reconcile.request import RunRequest
from reconcile.steps import begin
from tests.e2e.conftest import MOESIF_TOKEN, World
from tests.operator.conftest import Receiver


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    started = Receiver().start()
    monkeypatch.setenv("RECONCILE_NOTIFY_URL", started.url)
    yield started
    started.stop()


def test_a_run_with_drift_notifies_once_and_a_clean_run_does_not(
    world: World, receiver: Receiver
) -> None:
    seed(world.stripe, world.moesif, world.now)

    assert main(["--since", world.since]) == 1

    [payload] = receiver.payloads()
    assert payload["exit_code"] == 1
    assert payload["counts"]["missing_in_moesif"] >= 1
    assert payload["report_path"].endswith(".csv")
    assert receiver.url not in str(payload)


def test_the_demo_run_notifies_signed_amounts_per_currency_with_console_links(
    world: World, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILE_CONSOLE_URL", "https://console.example/ops")
    seed(world.stripe, world.moesif, world.now)

    assert main(["--since", world.since]) == 1

    [payload] = receiver.payloads()
    assert payload["dry_run"] is False
    by_category = {finding["category"]: finding for finding in payload["findings"]}
    mismatch = by_category["amount_mismatch"]
    assert (mismatch["stripe_amount"], mismatch["moesif_amount"]) == ("10.50", "1050.00")
    assert (mismatch["delta"], mismatch["currency"]) == ("-1039.50", "usd")
    assert mismatch["url"] == "https://console.example/ops/findings/" + mismatch["finding_id"]
    assert by_category["currency_mismatch"]["currency"] == "eur"
    assert "missing_in_moesif" not in by_category  # all posted automatically
    assert payload["automatic"] == 4
    assert set(payload["totals"]) >= {"usd", "eur", "jpy"}
    assert payload["totals"]["jpy"]["posted"] == "5000"
    assert payload["totals"]["usd"]["over_credited"].startswith("-")
    assert "-1,039.50 USD" in payload["text"]
    assert "4 posted automatically" in payload["text"]
    assert payload["blocks"][0]["type"] == "header"


def test_a_dry_run_notifies_marked_with_the_blocked_customer_first(
    world: World, receiver: Receiver
) -> None:
    seed(world.stripe, world.moesif, world.now)
    world.moesif.add_subscription("sub_blocked", "blocked")  # no credit at all: blocked
    customer = world.stripe.add_customer(
        metadata={"moesif_company_id": "blocked", "moesif_subscription_id": "sub_blocked"}
    )
    world.stripe.add_payment_intent(customer, 700, created=world.now - timedelta(days=1))

    assert main(["--since", world.since, "--dry-run"]) == 1

    [payload] = receiver.payloads()
    assert payload["dry_run"] is True
    assert payload["text"].startswith("*[DRY RUN] ")
    listed = payload["findings"]
    blocked = [finding for finding in listed if finding["blocked"]]
    # Nothing was posted, so the demo's customers with no credit yet are blocked as well:
    # every blocked customer who is owed comes before anyone else.
    assert listed[: len(blocked)] == blocked
    assert all(Decimal(finding["delta"]) > 0 for finding in blocked)
    [mine] = [finding for finding in listed if finding["subscription_id"] == "sub_blocked"]
    assert (mine["delta"], mine["currency"], mine["blocked"]) == ("7.00", "usd", True)
    assert mine["url"] is None
    assert any(not finding["blocked"] for finding in listed)
    assert "BLOCKED while owed" in payload["text"]
    assert {sums["posted"] for sums in payload["totals"].values()} <= {"0", "0.00"}


def test_a_failed_run_notifies_with_its_error_and_keeps_exit_3(
    world: World, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    world.moesif.add_subscription("sub_acme", "acme")
    world.stripe.add_payment_intent(
        world.stripe.add_customer(
            metadata={"moesif_company_id": "acme", "moesif_subscription_id": "sub_acme"}
        ),
        2500,
        created=world.now - timedelta(days=1),
    )
    world.moesif.fail_next(503, count=50)

    assert main(["--since", world.since]) == 3

    [payload] = receiver.payloads()
    assert payload["exit_code"] == 3
    assert MOESIF_TOKEN not in capsys.readouterr().err


def test_an_unreachable_notification_url_never_changes_the_exit_code(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(world.stripe, world.moesif, world.now)
    monkeypatch.setenv("RECONCILE_NOTIFY_URL", "http://127.0.0.1:9/hooks/unreachable")

    assert main(["--since", world.since]) == 1


def test_a_failed_run_records_its_error_with_secrets_masked(world: World) -> None:
    engine = make_engine(world.database_url)
    upgrade_to_head(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    window = Window(world.now - timedelta(days=1), world.now)
    begin.start(sessions, "run-1", window, RunRequest(), world.now)
    error = MoesifUnavailable(f"Moesif refused token {MOESIF_TOKEN}")

    begin.fail(sessions, "run-1", error, world.now, Redactor([MOESIF_TOKEN]))

    with sessions() as session:
        row = session.get_one(Run, "run-1")
        assert (row.status, row.exit_code) == ("failed", 3)
        assert row.error == "Moesif refused token ***"
    engine.dispose()


def test_a_secret_in_ledger_text_never_reaches_the_report_or_the_database(world: World) -> None:
    world.moesif.add_subscription("sub_acme", "acme")
    world.moesif.add_row(
        "acme",
        "sub_acme",
        "credit",
        Decimal("20.00"),
        world.now - timedelta(days=1),
        transaction_id="manual-1",
        description=f"pasted by support: Bearer {MOESIF_TOKEN}",
    )

    assert main(["--since", world.since]) == 1

    [row] = world.report_rows()
    assert MOESIF_TOKEN not in row["detail"]
    assert "***" in row["detail"]
    engine = make_engine(world.database_url)
    try:
        with Session(engine) as session:
            [detail] = session.scalars(select(Finding.detail)).all()
            assert detail is not None
            assert MOESIF_TOKEN not in detail
            [state] = session.scalars(select(FindingState.detail)).all()
            assert MOESIF_TOKEN not in str(state)
    finally:
        engine.dispose()


def test_a_scheduled_run_with_drift_notifies(world: World, receiver: Receiver) -> None:
    seed(world.stripe, world.moesif, world.now)
    settings = Settings.from_env()

    assert nightly.fire(settings, world.now, trigger="once") == 1

    [payload] = receiver.payloads()
    assert (payload["exit_code"], payload["report_path"].endswith(".csv")) == (1, True)


def test_an_unreadable_stripe_payment_is_a_flagged_finding_and_never_posted(world: World) -> None:
    world.moesif.add_subscription("sub_acme", "acme")
    customer = world.stripe.add_customer(
        metadata={"moesif_company_id": "acme", "moesif_subscription_id": "sub_acme"}
    )
    bad = world.stripe.add_payment_intent(
        customer, 1234, currency="xyz", created=world.now - timedelta(days=1)
    )
    good = world.stripe.add_payment_intent(customer, 700, created=world.now - timedelta(days=1))

    assert main(["--since", world.since]) == 1

    assert world.posted_ids() == [good]
    rows = {row["transaction_id"]: row for row in world.report_rows()}
    assert (rows[bad]["category"], rows[bad]["action"]) == ("unreadable", "flagged")
    assert rows[bad]["stripe_object_id"] == bad
    assert "ISO 4217" in rows[bad]["detail"]
