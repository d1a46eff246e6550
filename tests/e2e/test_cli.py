"""The whole job through its command line, against the fakes over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from reconcile.cli import main
from reconcile.db.engine import make_engine
from reconcile.db.models import Posting, Run
from reconcile.demo import seed
from reconcile.domain.times import to_iso
from reconcile.domain.vocab import Category
from reconcile.fakes.moesif import StoredRow
from reconcile.lock import run_lock
from tests.e2e.conftest import MOESIF_TOKEN, STRIPE_KEY, World

EVERY_CATEGORY = {category.value for category in Category}


def seed_every_category(world: World) -> str:
    """Seed the demo history, a credit on the wrong customer, an unreadable Moesif row, and a
    Stripe summary short of one refund.

    Returns the transaction id of the misapplied credit.
    """
    seed(world.stripe, world.moesif, world.now)
    wayne = world.stripe.add_customer(
        metadata={"moesif_company_id": "wayne", "moesif_subscription_id": "sub_wayne"}
    )
    world.moesif.add_subscription("sub_wayne", "wayne", currency="usd")
    paid = world.stripe.add_payment_intent(wayne, 1200, created=world.now - timedelta(days=2))
    wrong = world.moesif.add_row(
        "acme",
        "sub_acme",
        "credit",
        Decimal("12.00"),
        world.now - timedelta(days=2),
        transaction_id=paid,
        description="webhook: top-up",
    )
    world.moesif.break_balance(wrong.id, Decimal("3.00"))
    world.moesif.add_raw_row(
        '{"_id": "m_bad", "transaction_id": "pi_unreadable", "type": "credit", '
        '"amount": "NaN", "company_id": "acme", "subscription_id": "sub_acme", '
        f'"created_at": "{to_iso(world.now - timedelta(days=1))}"}}'
    )
    world.stripe.reports.short_category = "refund"
    return paid


def _id(row: StoredRow) -> str:
    return row.id


def _count(world: World, model: type, *where: object) -> int:
    engine = make_engine(world.database_url)
    try:
        with engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(model).where(*where)))
    finally:
        engine.dispose()


def test_seeded_history_gives_every_category_and_posts_what_is_missing(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    misapplied = seed_every_category(world)

    assert main(["--since", world.since]) == 1

    rows = world.report_rows()
    assert {row["category"] for row in rows} == EVERY_CATEGORY
    assert misapplied not in world.posted_ids()
    about = {row["category"]: row for row in rows if row["transaction_id"] == misapplied}
    assert set(about) == {"misapplied", "missing_in_moesif"}
    assert about["misapplied"]["action"] == "flagged"
    assert "company acme / subscription sub_acme" in about["misapplied"]["detail"]
    assert "belongs on company wayne / subscription sub_wayne" in about["misapplied"]["detail"]
    assert about["missing_in_moesif"]["action"] == "flagged"
    assert "misapplied" in about["missing_in_moesif"]["detail"]
    [unreadable] = [row for row in rows if row["category"] == "unreadable"]
    assert (unreadable["action"], unreadable["transaction_id"]) == ("flagged", "pi_unreadable")
    [broken] = [row for row in rows if row["category"] == "balance_break"]
    assert broken["action"] == "flagged"
    assert (broken["company_id"], broken["subscription_id"]) == ("acme", "sub_acme")
    assert "a gap of 3.00 USD" in broken["detail"]
    acme = sorted((r for r in world.moesif.rows() if r.subscription_id == "sub_acme"), key=_id)
    at = next(i for i, r in enumerate(acme) if r.transaction_id == misapplied)
    assert f"row {acme[at].id} begins at" in broken["detail"]
    assert f"row {acme[at - 1].id} ended at" in broken["detail"]
    posted = {row["transaction_id"]: row for row in rows if row["action"] == "posted"}
    assert set(posted) == set(world.posted_ids())
    assert Counter(body["type"] for body in world.moesif.posts) == {"credit": 2, "debit": 2}
    assert world.moesif.applied_counts() == dict.fromkeys(posted, 1)
    amounts = {(row["currency"], row["stripe_amount"]) for row in posted.values()}
    assert amounts == {("usd", "25.00"), ("usd", "5.00"), ("jpy", "5000"), ("usd", "40.00")}
    sent = {body["transaction_id"]: body["amount"] for body in world.moesif.posts}
    assert sorted(sent.values()) == [
        Decimal("5.00"),
        Decimal("25.00"),
        Decimal("40.00"),
        Decimal("5000"),
    ]
    flagged = [row for row in rows if row["action"] == "flagged"]
    assert all(
        row["category"] != "missing_in_moesif" or row["transaction_id"] == misapplied
        for row in flagged
    )
    out = capsys.readouterr().out
    assert "drift-" in out
    assert "missing_in_moesif" in out


def test_a_second_run_posts_nothing(world: World) -> None:
    seed(world.stripe, world.moesif, world.now)
    assert main(["--since", world.since]) == 1
    first = list(world.moesif.posts)

    assert main(["--since", world.since]) == 1

    assert world.moesif.posts == first
    second = world.report_rows()
    assert not [row for row in second if row["category"] == "missing_in_moesif"]
    assert (
        Counter(row.transaction_id for row in world.moesif.rows() if row.transaction_id)[
            first[0]["transaction_id"]
        ]
        == 1
    )
    assert world.moesif.applied_counts() == Counter(str(body["transaction_id"]) for body in first)
    assert not world.moesif.applied_more_than_once()


def test_a_dry_run_posts_nothing_and_records_nothing_as_posted(world: World) -> None:
    seed(world.stripe, world.moesif, world.now)

    assert main(["--since", world.since, "--dry-run"]) == 1

    assert world.moesif.posts == []
    assert _count(world, Posting) == 0
    actions = {
        row["action"] for row in world.report_rows() if row["category"] == "missing_in_moesif"
    }
    assert actions == {"would_post"}
    assert main(["--since", world.since]) == 1
    assert len(world.moesif.posts) == 4


def test_a_clean_history_exits_0(world: World) -> None:
    customer = world.stripe.add_customer(
        metadata={"moesif_company_id": "acme", "moesif_subscription_id": "sub_acme"}
    )
    world.moesif.add_subscription("sub_acme", "acme")
    paid = world.stripe.add_payment_intent(customer, 1234, created=world.now - timedelta(days=1))
    world.moesif.add_row(
        "acme",
        "sub_acme",
        "credit",
        Decimal("12.34"),
        world.now - timedelta(days=1),
        transaction_id=paid,
    )

    assert main(["--since", world.since]) == 0

    assert world.report_rows() == []
    assert world.moesif.posts == []


def test_only_missing_movements_are_posted_and_then_the_run_is_clean(world: World) -> None:
    customer = world.stripe.add_customer(
        metadata={"moesif_company_id": "acme", "moesif_subscription_id": "sub_acme"}
    )
    world.moesif.add_subscription("sub_acme", "acme")
    world.stripe.add_payment_intent(customer, 1999, created=world.now - timedelta(days=1))

    assert main(["--since", world.since]) == 0
    assert main(["--since", world.since]) == 0

    assert [body["amount"] for body in world.moesif.posts] == [Decimal("19.99")]


def _one_error_line(err: str) -> str:
    """The error is one line, the last one, and no traceback came before it."""
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("reconcile: error:")]
    assert len(errors) == 1
    assert err.strip().splitlines()[-1] == errors[0]
    return errors[0]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--since", "yesterday"], "not an ISO 8601"),
        (["--since", "2026-11-02", "--until", "2026-11-01"], "--since must be before --until"),
        (["--since", "2026-11-01", "--bogus"], "unrecognized arguments"),
        ([], "no --since given"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    world: World, capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        raise SystemExit(main(argv))
    assert caught.value.code == 2
    assert fragment in _one_error_line(capsys.readouterr().err)


def test_a_missing_key_is_exit_2_naming_the_variable(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRIPE_API_KEY")
    assert main(["--since", world.since]) == 2
    assert "STRIPE_API_KEY" in _one_error_line(capsys.readouterr().err)


def test_a_rejected_stripe_key_is_exit_2_without_the_key(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_wrong_key_9999")
    assert main(["--since", world.since]) == 2
    err = capsys.readouterr().err
    assert "Stripe refused the API key" in _one_error_line(err)
    assert "sk_test_wrong_key_9999" not in err


def test_moesif_down_is_exit_3_and_the_rerun_resumes(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(world.stripe, world.moesif, world.now)
    world.moesif.fail_next(503, count=1000)

    assert main(["--since", world.since]) == 3
    assert world.moesif.posts == []
    assert "Moesif" in capsys.readouterr().err

    world.moesif.fail_next(200, count=0)
    world.moesif.clear_faults()
    assert main(["--since", world.since]) == 1
    assert len(world.moesif.posts) == 4
    assert len(world.moesif.applied_counts()) == 4
    assert not world.moesif.applied_more_than_once()


def test_the_posting_count_guardrail_posts_nothing_and_exits_4(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(world.stripe, world.moesif, world.now)
    monkeypatch.setenv("RECONCILE_MAX_POSTINGS", "3")

    assert main(["--since", world.since]) == 4

    assert world.moesif.posts == []
    assert "RECONCILE_MAX_POSTINGS=3" in capsys.readouterr().err
    missing = [row for row in world.report_rows() if row["category"] == "missing_in_moesif"]
    assert {row["action"] for row in missing} == {"would_post"}


def test_the_posting_total_guardrail_posts_nothing_and_exits_4(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(world.stripe, world.moesif, world.now)
    monkeypatch.setenv("RECONCILE_MAX_POSTING_TOTAL", "100")

    assert main(["--since", world.since]) == 4
    assert world.moesif.posts == []

    monkeypatch.setenv("RECONCILE_MAX_POSTING_TOTAL", "10000")
    assert main(["--since", world.since]) == 1
    assert len(world.moesif.posts) == 4
    assert not world.moesif.applied_more_than_once()


def test_a_second_run_while_one_holds_the_lock_exits_75(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(world.database_url)
    try:
        from reconcile.db.engine import upgrade_to_head

        upgrade_to_head(engine)
        with run_lock(engine):
            assert main(["--since", world.since]) == 75
    finally:
        engine.dispose()
    assert "lock" in capsys.readouterr().err
    assert main(["--since", world.since]) == 0


def test_a_run_without_since_continues_from_the_watermark_minus_the_lookback(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILE_LOOKBACK", "6h")
    until = world.now - timedelta(hours=1)
    assert main(["--since", world.since, "--until", to_iso(until)]) == 0

    assert main([]) == 0

    engine = make_engine(world.database_url)
    try:
        with engine.connect() as connection:
            windows = connection.execute(
                select(Run.since, Run.until).order_by(Run.started_at)
            ).all()
    finally:
        engine.dispose()
    assert windows[1].since == until - timedelta(hours=6)


def test_company_filter_limits_the_run(world: World) -> None:
    seed(world.stripe, world.moesif, world.now)

    assert main(["--since", world.since, "--company", "acme"]) == 0

    companies = {row["company_id"] for row in world.report_rows()}
    assert companies == {"acme"}
    assert {body["company_id"] for body in world.moesif.posts} == {"acme"}
    assert not world.moesif.applied_more_than_once()


def test_secrets_reach_neither_output_nor_report_nor_database(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(world.stripe, world.moesif, world.now)
    assert main(["--since", world.since, "--verbose"]) == 1

    captured = capsys.readouterr()
    text = captured.out + captured.err + world.reports()[-1].read_text()
    engine = make_engine(world.database_url)
    try:
        with engine.connect() as connection:
            for model in (Run, Posting):
                text += repr(connection.execute(select(model.__table__)).all())
    finally:
        engine.dispose()
    assert STRIPE_KEY not in text
    assert MOESIF_TOKEN not in text


def test_logs_are_the_jobs_own_not_every_library_request(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(world.stripe, world.moesif, world.now)

    assert main(["--since", world.since]) == 1

    err = capsys.readouterr().err
    assert "finished with exit 1" in err
    for chatter in ("Request to Stripe api", "HTTP Request:", "Context impl"):
        assert chatter not in err


def _watermarks(world: World) -> list[object]:
    engine = make_engine(world.database_url)
    try:
        with engine.connect() as connection:
            return list(connection.scalars(select(Run.watermark).order_by(Run.started_at)))
    finally:
        engine.dispose()


@pytest.mark.parametrize("extra", [["--dry-run"], ["--company", "acme"]])
def test_partial_runs_never_move_the_watermark(world: World, extra: list[str]) -> None:
    seed(world.stripe, world.moesif, world.now)

    main(["--since", world.since, *extra])

    assert _watermarks(world) == [None]


def test_a_full_run_moves_the_watermark_to_its_until(world: World) -> None:
    until = world.now - timedelta(hours=1)
    assert main(["--since", world.since, "--until", to_iso(until)]) == 0
    assert _watermarks(world) == [until]


def test_a_guardrail_run_does_not_move_the_watermark(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(world.stripe, world.moesif, world.now)
    monkeypatch.setenv("RECONCILE_MAX_POSTINGS", "1")

    assert main(["--since", world.since]) == 4

    assert _watermarks(world) == [None]


def test_a_posting_moesif_refuses_is_flagged_exit_1_and_keeps_the_watermark(world: World) -> None:
    seed(world.stripe, world.moesif, world.now)
    world.moesif.on_request = lambda exchange: "reject" if exchange.method == "POST" else None

    assert main(["--since", world.since]) == 1

    assert world.moesif.posts == []
    missing = [row for row in world.report_rows() if row["category"] == "missing_in_moesif"]
    assert {row["action"] for row in missing} == {"post_failed"}
    assert all("HTTP 400" in row["detail"] for row in missing)
    assert _watermarks(world) == [None]


def test_a_company_run_after_a_full_run_reports_only_that_company(world: World) -> None:
    seed(world.stripe, world.moesif, world.now)
    assert main(["--since", world.since]) == 1

    main(["--since", world.since, "--company", "initech"])

    assert {row["company_id"] for row in world.report_rows()} == {"initech"}


def test_a_confirmed_posting_that_reports_do_not_show_yet_is_flagged_not_resent(
    world: World,
) -> None:
    seed(world.stripe, world.moesif, world.now)
    assert main(["--since", world.since]) == 1
    posted = set(world.posted_ids())
    world.moesif.unlisted.update(posted)

    assert main(["--since", world.since]) == 1

    assert len(world.moesif.posts) == len(posted)
    assert world.moesif.applied_counts() == dict.fromkeys(posted, 1)
    rows = {row["transaction_id"]: row for row in world.report_rows()}
    assert {rows[tid]["action"] for tid in posted} == {"flagged"}
    assert all("not sent again" in rows[tid]["detail"] for tid in posted)


def test_an_unwritable_report_directory_stops_the_run_before_anything_is_posted(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(world.stripe, world.moesif, world.now)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    assert main(["--since", world.since, "--report-dir", str(blocker / "reports")]) == 2

    assert world.moesif.posts == []
    assert "cannot be written" in _one_error_line(capsys.readouterr().err)


def test_the_watermark_never_moves_past_the_runs_start(world: World) -> None:
    future = world.now + timedelta(days=30)

    assert main(["--since", world.since, "--until", to_iso(future)]) == 0

    [watermark] = _watermarks(world)
    assert isinstance(watermark, datetime)
    assert world.now <= watermark < world.now + timedelta(minutes=5)


def test_a_second_run_reads_again_only_the_subscription_whose_currency_disagrees(
    world: World,
) -> None:
    seed(world.stripe, world.moesif, world.now)
    assert main(["--since", world.since]) == 1
    before = len(world.moesif.exchanges)

    assert main(["--since", world.since]) == 1

    later = [e.path for e in world.moesif.exchanges[before:]]
    assert later
    assert [path for path in later if "/subscriptions/" in path] == [
        "/v1/search/~/subscriptions/sub_hooli"
    ]
