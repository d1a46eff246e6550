"""Findings live until settled: stable ids, re-checked outside the window, resolved, closed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy.orm import Session

from reconcile.cli import main
from reconcile.db.engine import make_engine, upgrade_to_head
from reconcile.db.models import WebhookEvent
from reconcile.domain.times import to_iso
from reconcile.domain.values import REPORT_COLUMNS
from reconcile.fakes.moesif import Exchange, Verdict
from tests.e2e.conftest import World
from tests.operator.conftest import Receiver


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    started = Receiver().start()
    monkeypatch.setenv("RECONCILE_NOTIFY_URL", started.url)
    yield started
    started.stop()


def _manual_credit(world: World, days_ago: float = 3) -> None:
    world.moesif.add_subscription("sub_acme", "acme")
    world.moesif.add_row(
        "acme",
        "sub_acme",
        "credit",
        Decimal("20.00"),
        world.now - timedelta(days=days_ago),
        transaction_id="manual-1",
        description="manual credit by support",
    )


def _recent(world: World) -> list[str]:
    """A window of the last day only: the manual credit lies outside it."""
    return ["--since", to_iso(world.now - timedelta(days=1)), "--until", to_iso(world.now)]


def _open(capsys: pytest.CaptureFixture[str], *extra: str) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["findings", "--format", "json", *extra]) == 0
    listed: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return listed


def test_a_finding_keeps_its_id_and_stays_open_after_it_leaves_the_window(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    _manual_credit(world)
    assert main(["--since", world.since]) == 1
    [first] = world.report_rows()
    assert list(first)[-2:] == ["finding_id", "first_seen_at"] == REPORT_COLUMNS[-2:]
    assert first["finding_id"].startswith("F-")

    assert main(_recent(world)) == 1

    [again] = world.report_rows()
    assert (again["category"], again["action"]) == ("missing_in_stripe", "flagged")
    assert again["finding_id"] == first["finding_id"]
    assert again["first_seen_at"] == first["first_seen_at"]
    [listed] = _open(capsys)
    assert (listed["finding_id"], listed["runs_seen"], listed["status"]) == (
        first["finding_id"],
        2,
        "open",
    )


def test_drift_fixed_in_moesif_is_reported_resolved_once_then_closed(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    _manual_credit(world)
    assert main(["--since", world.since]) == 1
    [first] = world.report_rows()
    world.moesif.unlisted.add("manual-1")  # support removed the credit

    assert main(["--since", world.since]) == 0

    [settled] = world.report_rows()
    assert (settled["finding_id"], settled["action"]) == (first["finding_id"], "resolved")
    assert _open(capsys) == []
    [closed] = _open(capsys, "--all")
    assert (closed["status"], closed["closed_by"]) == ("closed", "run")
    assert main(["--since", world.since]) == 0
    assert world.report_rows() == []


def test_an_ignored_finding_no_longer_counts_for_exit_1(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    _manual_credit(world)
    assert main(["--since", world.since]) == 1
    [first] = world.report_rows()

    assert main(["findings", "ignore", first["finding_id"], "--note", "goodwill credit"]) == 0
    assert main(["--since", world.since]) == 0

    assert _open(capsys) == []
    [closed] = _open(capsys, "--all")
    assert (closed["status"], closed["closed_by"], closed["note"]) == (
        "ignored",
        "operator",
        "goodwill credit",
    )


def test_closing_an_unknown_finding_is_exit_2_and_closes_nothing(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    _manual_credit(world)
    assert main(["--since", world.since]) == 1
    [first] = world.report_rows()

    code = main(["findings", "resolve", first["finding_id"], "F-0000000000000000", "--note", "x"])

    assert code == 2
    assert "F-0000000000000000" in capsys.readouterr().err
    assert [row["status"] for row in _open(capsys)] == ["open"]


def test_findings_filter_by_category_and_company_and_print_csv(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    _manual_credit(world)
    assert main(["--since", world.since]) == 1

    assert _open(capsys, "--category", "amount_mismatch") == []
    assert len(_open(capsys, "--company", "acme")) == 1
    assert main(["findings", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("finding_id,status,category")
    assert len(lines) == 2


def test_a_webhook_event_serve_could_not_map_is_an_open_finding_before_any_run(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(world.database_url)
    upgrade_to_head(engine)
    with Session(engine) as session, session.begin():
        session.add(
            WebhookEvent(
                event_id="evt_1",
                event_type="payment_intent.succeeded",
                created=world.now,
                payload="{}",
                received_at=world.now,
                status="unmapped",
                attempts=1,
                last_error="pi_lost: customer has no Stripe subscription",
                next_attempt_at=world.now,
            )
        )
    engine.dispose()

    [listed] = _open(capsys)

    assert (listed["category"], listed["transaction_id"], listed["status"]) == (
        "unmapped_customer",
        "pi_lost",
        "open",
    )
    assert "no Stripe subscription" in str(listed["detail"])
    assert [row["finding_id"] for row in _open(capsys)] == [listed["finding_id"]]


def test_status_shows_open_findings_across_runs_with_control_characters_escaped(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.moesif.add_subscription("sub_acme", "acme")
    world.moesif.add_row(
        "acme",
        "sub_acme",
        "credit",
        Decimal("20.00"),
        world.now - timedelta(days=1),
        transaction_id="manual-1",
        description="\x1b[2J\x1b]0;owned\x07 by support",
    )
    assert main(["--since", world.since]) == 1
    capsys.readouterr()

    assert main(["status"]) == 0

    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "\\x1b[2J" in out
    assert "Open findings across runs" in out
    assert "  missing_in_stripe: 1, oldest first seen" in out


def test_a_company_that_matches_nothing_is_warned_about(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    _manual_credit(world)

    main(["--since", world.since, "--company", "acme", "--company", "nosuchco"])

    err = capsys.readouterr().err
    assert "--company nosuchco matches nothing" in err
    assert "--company acme matches" not in err


def test_a_dry_run_opens_no_finding_and_a_posting_settles_its_failed_one(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.moesif.add_subscription("sub_acme", "acme")
    customer = world.stripe.add_customer(
        metadata={"moesif_company_id": "acme", "moesif_subscription_id": "sub_acme"}
    )
    payment = world.stripe.add_payment_intent(customer, 2500, created=world.now - timedelta(days=1))
    assert main(["--since", world.since, "--dry-run"]) == 1
    assert _open(capsys) == []

    def reject_first_post(exchange: Exchange) -> Verdict | None:
        if exchange.method == "POST":
            world.moesif.on_request = None
            return "reject"
        return None

    world.moesif.on_request = reject_first_post
    assert main(["--since", world.since]) == 1
    [failed] = _open(capsys)
    assert (failed["transaction_id"], failed["category"]) == (payment, "missing_in_moesif")

    assert main(["--since", world.since]) == 0
    assert _open(capsys) == []
    assert [(row["transaction_id"], row["action"]) for row in world.report_rows()] == [
        (payment, "posted")
    ]


# -- settling: fixes made in Moesif, operators' claims checked ---------------------------------


def _paid(world: World, cents: int = 2500, days_ago: float = 2) -> str:
    world.moesif.add_subscription("sub_acme", "acme")
    customer = world.stripe.add_customer(
        metadata={"moesif_company_id": "acme", "moesif_subscription_id": "sub_acme"}
    )
    return world.stripe.add_payment_intent(
        customer, cents, created=world.now - timedelta(days=days_ago)
    )


def _long_ago(world: World) -> list[str]:
    """A window around 40 days ago only."""
    return [
        "--since",
        to_iso(world.now - timedelta(days=41)),
        "--until",
        to_iso(world.now - timedelta(days=39)),
    ]


def _by_category(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {row["category"]: row for row in rows}


def test_the_readme_fix_of_a_misapplied_credit_is_reported_resolved_with_its_amounts(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    paid = _paid(world)
    world.moesif.add_subscription("sub_globex", "globex")
    wrong = world.moesif.add_row(
        "globex", "sub_globex", "credit", Decimal("25.00"), world.now - timedelta(days=2), paid
    )
    assert main(["--since", world.since]) == 1
    first = _by_category(world.report_rows())
    assert set(first) == {"misapplied", "missing_in_moesif"}
    # README: remove it where it sits, post it with the same transaction id where it belongs
    world.moesif.remove_row(wrong.id)
    world.moesif.add_row("acme", "sub_acme", "credit", Decimal("25.00"), world.now, paid)
    capsys.readouterr()

    assert main(["--since", world.since]) == 0

    assert "internal error" not in capsys.readouterr().err
    settled = _by_category(world.report_rows())
    assert {row["action"] for row in settled.values()} == {"resolved"}
    amounts = {
        category: (row["stripe_amount"], row["moesif_amount"], row["delta"], row["finding_id"])
        for category, row in settled.items()
    }
    assert amounts == {
        "misapplied": ("25.00", "25.00", "-25.00", first["misapplied"]["finding_id"]),
        "missing_in_moesif": ("25.00", "", "25.00", first["missing_in_moesif"]["finding_id"]),
    }
    assert world.moesif.posts == []
    assert _open(capsys) == []
    assert main(["--since", world.since]) == 0
    assert world.report_rows() == []


def test_a_wrong_manual_credit_removed_and_a_cents_row_replaced_settle_in_one_run(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    paid = _paid(world)
    cents = world.moesif.add_row(
        "acme", "sub_acme", "credit", Decimal("2500"), world.now - timedelta(days=2), paid
    )
    _manual_credit(world)
    assert main(["--since", world.since]) == 1
    assert set(_by_category(world.report_rows())) == {"amount_mismatch", "missing_in_stripe"}
    world.moesif.remove_row(cents.id)
    world.moesif.unlisted.add("manual-1")
    world.moesif.add_row("acme", "sub_acme", "credit", Decimal("25.00"), world.now, paid)

    assert main(["--since", world.since]) == 0

    settled = _by_category(world.report_rows())
    assert {
        category: (row["action"], row["stripe_amount"], row["moesif_amount"], row["delta"])
        for category, row in settled.items()
    } == {
        "amount_mismatch": ("resolved", "25.00", "2500.00", "-2475.00"),
        "missing_in_stripe": ("resolved", "", "20.00", "-20.00"),
    }
    assert _open(capsys) == []


def test_a_correction_outside_the_next_runs_window_settles_at_that_run(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    _manual_credit(world, days_ago=40)
    assert main(_long_ago(world)) == 1
    [first] = world.report_rows()
    world.moesif.unlisted.add("manual-1")  # support removed it, 40 days back

    assert main(_recent(world)) == 0

    [settled] = world.report_rows()
    assert (settled["finding_id"], settled["action"], settled["moesif_amount"]) == (
        first["finding_id"],
        "resolved",
        "20.00",
    )
    reads = [e.query for e in world.moesif.exchanges if e.path.endswith("/billing/reports")]
    assert {"company_id": "acme"}.items() <= reads[-1].items()
    assert _open(capsys) == []
    [closed] = _open(capsys, "--all")
    assert (closed["status"], closed["closed_by"]) == ("closed", "run")


def test_an_ignored_finding_is_not_counted_notified_or_flagged(
    world: World, capsys: pytest.CaptureFixture[str], receiver: Receiver
) -> None:
    _manual_credit(world)
    world.moesif.add_row(
        "acme", "sub_acme", "credit", Decimal("7.00"), world.now - timedelta(days=2), "manual-2"
    )
    assert main(["--since", world.since]) == 1
    ignored = next(row for row in world.report_rows() if row["transaction_id"] == "manual-1")
    assert main(["findings", "ignore", ignored["finding_id"], "--note", "goodwill"]) == 0
    capsys.readouterr()

    assert main(["--since", world.since]) == 1

    assert "flagged for review: 1" in capsys.readouterr().out
    assert [row["transaction_id"] for row in world.report_rows()] == ["manual-2"]
    payload = receiver.payloads()[-1]
    assert [finding["transaction_id"] for finding in payload["findings"]] == ["manual-2"]
    assert payload["counts"] == {"missing_in_stripe": 1}
    assert "manual-1" not in payload["text"]
    world.moesif.unlisted.add("manual-2")
    sent = len(receiver.bodies)

    assert main(["--since", world.since]) == 0

    assert len(receiver.bodies) == sent
    assert [row["transaction_id"] for row in world.report_rows()] == ["manual-2"]
    assert [row["status"] for row in _open(capsys, "--all")] == ["ignored", "closed"]


def test_resolving_drift_that_is_still_there_reopens_it_wherever_it_lies(
    world: World, capsys: pytest.CaptureFixture[str], receiver: Receiver
) -> None:
    _manual_credit(world, days_ago=40)
    assert main(_long_ago(world)) == 1
    [first] = world.report_rows()
    assert main(["findings", "resolve", first["finding_id"], "--note", "fixed it"]) == 0
    assert _open(capsys) == []

    assert main(_recent(world)) == 1

    [reopened] = world.report_rows()
    assert (reopened["finding_id"], reopened["action"]) == (first["finding_id"], "reopened")
    payload = receiver.payloads()[-1]
    assert payload["exit_code"] == 1
    assert [finding["action"] for finding in payload["findings"]] == ["reopened"]
    assert (
        f"Reopened: 1 finding(s) marked resolved still drift: {first['finding_id']}"
        in (payload["text"])
    )
    [listed] = _open(capsys)
    assert (listed["finding_id"], listed["status"]) == (first["finding_id"], "open")


def test_resolving_after_a_real_fix_closes_it_for_good_without_reporting_it_again(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    _manual_credit(world, days_ago=40)
    assert main(_long_ago(world)) == 1
    [first] = world.report_rows()
    world.moesif.unlisted.add("manual-1")
    assert main(["findings", "resolve", first["finding_id"], "--note", "removed it"]) == 0

    assert main(_recent(world)) == 0

    assert world.report_rows() == []
    [closed] = _open(capsys, "--all")
    assert (closed["status"], closed["closed_by"], closed["note"]) == (
        "closed",
        "operator",
        "removed it",
    )
    assert main(_recent(world)) == 0
    assert world.report_rows() == []
