"""Connected accounts read in turn (SQLite's default): Stripe-Account, own watermark, own report."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from reconcile.cli import main
from reconcile.db.engine import make_engine
from reconcile.db.models import ExpectedRow, Run
from reconcile.domain.values import REPORT_COLUMNS
from tests.e2e.conftest import World


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


def seed_two_accounts(world: World) -> tuple[str, str, str, str]:
    """Two accounts whose customers share the id ``cus_shared`` and map to other companies."""
    first = world.stripe.add_account("acct_1first")
    second = world.stripe.add_account("acct_2second")
    for account, company in ((first, "alpha"), (second, "beta")):
        account.add_customer(
            "cus_shared",
            metadata={"moesif_company_id": company, "moesif_subscription_id": f"sub_{company}"},
        )
        world.moesif.add_subscription(f"sub_{company}", company, currency="usd")
    paid_first = first.add_payment_intent("cus_shared", 1000, created=world.now - timedelta(days=1))
    paid_second = second.add_payment_intent(
        "cus_shared", 2500, created=world.now - timedelta(days=1)
    )
    return first.id, second.id, paid_first, paid_second


def _runs(world: World) -> list[Run]:
    engine = make_engine(world.database_url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(select(Run).order_by(Run.started_at)).all())
    finally:
        engine.dispose()


def test_each_account_is_read_with_its_header_and_mapped_within_it(world: World) -> None:
    first, second, paid_first, paid_second = seed_two_accounts(world)

    assert main(["--since", world.since, "--accounts", f"{first},{second}"]) == 0

    posted = {body["transaction_id"]: body for body in world.moesif.posts}
    assert set(posted) == {paid_first, paid_second}
    assert (posted[paid_first]["company_id"], posted[paid_first]["subscription_id"]) == (
        "alpha",
        "sub_alpha",
    )
    assert (posted[paid_second]["company_id"], posted[paid_second]["subscription_id"]) == (
        "beta",
        "sub_beta",
    )
    assert str(posted[paid_first]["amount"]) in ("10.00", "10", "10.0")
    # Every request but the listing of accounts (none here) names the account it reads.
    read_with = {request.stripe_account for request in world.stripe.requests}
    assert read_with == {first, second}
    runs = _runs(world)
    assert sorted(run.stripe_account for run in runs) == [first, second]
    assert all(run.watermark is not None for run in runs)


def test_each_accounts_report_appends_its_stripe_account(world: World) -> None:
    first, second, paid_first, _ = seed_two_accounts(world)

    assert main(["--since", world.since, "--accounts", f"{first},{second}"]) == 0

    reports = world.reports()
    assert len(reports) == 2
    for path in reports:
        header = path.read_text(encoding="utf-8").splitlines()[0].split(",")
        assert header == [*REPORT_COLUMNS, "stripe_account"]
    by_account = {row["stripe_account"]: row for path in reports for row in world.report_rows(path)}
    assert by_account[first]["transaction_id"] == paid_first
    assert by_account[first]["company_id"] == "alpha"
    assert by_account[second]["company_id"] == "beta"


def test_all_lists_the_connected_accounts_and_each_keeps_its_own_watermark(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, _, _ = seed_two_accounts(world)
    monkeypatch.setenv("STRIPE_ACCOUNTS", "all")

    assert main(["--since", world.since]) == 0
    assert ("GET", "/v1/accounts") in {(r.method, r.path) for r in world.stripe.requests}
    late = world.stripe.account(second).add_payment_intent(
        "cus_shared", 700, created=world.now + timedelta(seconds=1)
    )
    # No --since: each account starts at its own watermark minus the lookback.
    assert main(["--until", _iso(world.now + timedelta(minutes=5))]) == 0

    assert late in [body["transaction_id"] for body in world.moesif.posts]
    runs = _runs(world)
    assert len(runs) == 4
    assert {run.stripe_account for run in runs[2:]} == {first, second}
    engine = make_engine(world.database_url)
    with engine.connect() as connection:
        accounts = {
            tid: account
            for tid, account in connection.execute(
                select(ExpectedRow.transaction_id, ExpectedRow.stripe_account)
            )
        }
    engine.dispose()
    assert accounts[late] == second


def test_an_account_the_key_cannot_reach_fails_alone(world: World) -> None:
    first, _, paid_first, _ = seed_two_accounts(world)

    # The key cannot reach it: a configuration error (2) for that account, the others go on.
    assert main(["--since", world.since, "--accounts", f"acct_unknown,{first}"]) == 2

    assert [body["transaction_id"] for body in world.moesif.posts] == [paid_first]


def test_a_malformed_account_list_is_a_usage_error(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["--since", world.since, "--accounts", "acct_1,cus_2"])
    assert ended.value.code == 2
    assert "cus_2" in capsys.readouterr().err


def _iso(moment: object) -> str:
    from reconcile.domain.times import to_iso

    return to_iso(moment)  # type: ignore[arg-type]


def test_the_worker_needs_postgresql(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "PostgreSQL" in err


def test_an_accounts_unmapped_customer_settles_once_it_is_mapped(world: World) -> None:
    account = world.stripe.add_account("acct_3unmapped")
    customer = account.add_customer("cus_shared")  # no Moesif company or subscription yet
    paid = account.add_payment_intent(customer, 900, created=world.now - timedelta(days=1))
    world.moesif.add_subscription("sub_gamma", "gamma", currency="usd")

    assert main(["--since", world.since, "--accounts", account.id]) == 1
    assert [row["category"] for row in world.report_rows()] == ["unmapped_customer"]

    # Mapped now, and the next run reads from outside the movement's time: the open finding
    # of the account's own movement is re-checked all the same, and settles.
    with account._state.lock:
        account._state.get("customer", customer)["metadata"] = {
            "moesif_company_id": "gamma",
            "moesif_subscription_id": "sub_gamma",
        }
    later = _iso(world.now - timedelta(hours=1))
    assert main(["--since", later, "--accounts", account.id]) == 0

    assert [body["transaction_id"] for body in world.moesif.posts] == [paid]
