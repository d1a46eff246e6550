"""``reconcile statement`` against the fakes: it ties out, or names each difference's finding."""

from __future__ import annotations

import csv
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from reconcile.cli import main
from reconcile.demo import seed, seed_review_cases
from reconcile.rules.statement import COLUMNS
from tests.e2e.conftest import World


def _acme(world: World) -> str:
    customer = world.stripe.add_customer(
        metadata={"moesif_company_id": "acme", "moesif_subscription_id": "sub_acme"}
    )
    world.moesif.add_subscription("sub_acme", "acme")
    return customer


def _statement(capsys: pytest.CaptureFixture[str]) -> tuple[Path, list[str]]:
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("statement: ")
    return Path(out[-1].removeprefix("statement: ")), out[:-1]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        return list(reader)


def test_a_statement_that_ties_out_exits_0(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    customer = _acme(world)
    paid = world.stripe.add_payment_intent(customer, 5000, created=world.now - timedelta(days=3))
    world.moesif.add_row(
        "acme",
        "sub_acme",
        "credit",
        Decimal("50.00"),
        world.now - timedelta(days=3),
        transaction_id=paid,
    )
    refund = world.stripe.add_refund(paid, 1250, created=world.now - timedelta(days=2))
    world.moesif.add_row(
        "acme",
        "sub_acme",
        "debit",
        Decimal("12.50"),
        world.now - timedelta(days=2),
        transaction_id=refund,
    )
    world.moesif.add_row(
        "acme",
        "sub_acme",
        "promotion",
        Decimal("5.00"),
        world.now - timedelta(days=1),
        description='=HYPERLINK("http://x")',
    )
    assert main(["--since", world.since]) == 0
    capsys.readouterr()

    code = main(["statement", "--company", "acme", "--since", world.since])

    path, tie_out = _statement(capsys)
    assert code == 0
    assert path.parent == world.report_dir
    assert path.name.startswith("statement-acme-")
    assert path.suffix == ".csv"
    rows = _rows(path)
    assert [(r["kind"], r["amount"], r["balance_after"]) for r in rows] == [
        ("opening", "", "0.00"),
        ("top_up", "50.00", "50.00"),
        ("refund", "-12.50", "37.50"),
        ("promotion", "5.00", "42.50"),
        ("closing", "", "42.50"),
    ]
    assert rows[1]["transaction_id"] == paid
    assert rows[3]["description"].startswith("'=")  # a formula is text, not run
    assert all(r["finding_id"] == "" and r["currency"] == "USD" for r in rows)
    assert tie_out == [
        "opening 0.00 USD + movements 42.50 USD = 42.50 USD; closing 42.50 USD; "
        "Moesif reports 42.50 USD"
    ]


def test_a_missing_credit_exits_1_and_names_its_finding(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    customer = _acme(world)
    lost = world.stripe.add_payment_intent(customer, 2000, created=world.now - timedelta(days=2))
    world.moesif.on_request = lambda exchange: "reject" if exchange.method == "POST" else None
    assert main(["--since", world.since]) == 1  # Moesif refuses the credit: it stays missing
    (finding,) = [row["finding_id"] for row in world.report_rows() if row["transaction_id"] == lost]
    capsys.readouterr()

    code = main(["statement", "--company", "acme", "--since", world.since, "--format", "csv"])

    path, tie_out = _statement(capsys)
    assert code == 1
    (line,) = [row for row in _rows(path) if row["transaction_id"] == lost]
    assert (line["kind"], line["amount"], line["finding_id"]) == ("top_up", "20.00", finding)
    assert (
        tie_out[1] == f"20.00 USD: the top-up {lost} of 20.00 USD is not in the ledger ({finding})"
    )

    # the next run posts it: Moesif confirms, the statement ties out
    world.moesif.on_request = None
    assert main(["--since", world.since]) == 0
    capsys.readouterr()
    assert main(["statement", "--company", "acme", "--since", world.since]) == 0


def test_an_html_statement_and_a_past_window(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    customer = _acme(world)
    paid = world.stripe.add_payment_intent(customer, 700, created=world.now - timedelta(days=3))
    world.moesif.add_row(
        "acme",
        "sub_acme",
        "credit",
        Decimal("7.00"),
        world.now - timedelta(days=3),
        transaction_id=paid,
    )
    assert main(["--since", world.since]) == 0
    capsys.readouterr()
    until = (world.now - timedelta(days=1)).isoformat()

    code = main(
        [
            "statement",
            "--company",
            "acme",
            "--since",
            world.since,
            "--until",
            until,
            "--format",
            "html",
        ]
    )

    path, tie_out = _statement(capsys)
    assert code == 0
    assert path.suffix == ".html"
    page = path.read_text(encoding="utf-8")
    assert paid in page
    assert "ties out" in page
    assert "Moesif reports" not in tie_out[0]  # a past window is not compared with now


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--company", "nobody", "--since", "2026-11-01"], "unknown company 'nobody'"),
        (
            ["--company", "acme", "--since", "2026-11-01", "--subscription", "sub_x"],
            "has no subscription 'sub_x'",
        ),
        (["--company", "acme"], "--since"),
        (["--company", "acme", "--since", "2026-11-01", "--format", "pdf"], "invalid choice"),
    ],
)
def test_unknown_companies_and_bad_arguments_exit_2_in_one_line(
    world: World, capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    _acme(world)
    world.moesif.add_row("acme", "sub_acme", "promotion", Decimal(1), world.now - timedelta(days=1))
    assert main(["--since", world.since]) == 0
    capsys.readouterr()

    try:
        code = main(["statement", *argv])
    except SystemExit as exit_:  # argparse's own usage errors
        code = int(exit_.code or 0)
    assert code == 2

    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert fragment in err[0]
    assert not list(world.report_dir.glob("statement-*"))


def test_a_company_with_two_subscriptions_names_one(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    _acme(world)
    world.moesif.add_row("acme", "sub_acme", "promotion", Decimal(1), world.now - timedelta(days=1))
    world.moesif.add_subscription("sub_acme_eur", "acme", currency="eur")
    world.moesif.add_row(
        "acme", "sub_acme_eur", "promotion", Decimal("3.00"), world.now - timedelta(days=1)
    )
    assert main(["--since", world.since]) == 0
    capsys.readouterr()

    assert main(["statement", "--company", "acme", "--since", world.since]) == 2
    assert "--subscription" in capsys.readouterr().err

    argv = ["--company", "acme", "--subscription", "sub_acme_eur", "--since", world.since]
    assert main(["statement", *argv]) == 0
    path, _ = _statement(capsys)
    assert [(r["kind"], r["currency"], r["balance_after"]) for r in _rows(path)][-1] == (
        "closing",
        "EUR",
        "3.00",
    )


def test_a_payment_credited_twice_under_random_ids_stands_twice_beside_it(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    customer = _acme(world)
    paid = world.stripe.add_payment_intent(customer, 10000, created=world.now - timedelta(days=2))
    for _ in range(2):
        world.moesif.add_row(
            "acme",
            "sub_acme",
            "credit",
            Decimal("100.00"),
            world.now - timedelta(days=2),
            description="webhook retry",
        )
    assert main(["--since", world.since]) == 1
    (duplicate,) = [
        row["finding_id"] for row in world.report_rows() if row["category"] == "duplicate_in_moesif"
    ]
    capsys.readouterr()

    assert main(["statement", "--company", "acme", "--since", world.since]) == 1

    path, tie_out = _statement(capsys)
    lines = [r for r in _rows(path) if r["transaction_id"] == paid]
    assert [(r["amount"], r["balance_after"], r["finding_id"]) for r in lines] == [
        ("100.00", "100.00", duplicate),
        ("0.00", "100.00", duplicate),
    ]
    assert tie_out[1] == (
        f"-100.00 USD: the ledger records the top-up {paid} again (100.00 USD) ({duplicate})"
    )


DEMO_COMPANIES = ("acme", "globex", "initech", "umbrella", "hooli", "soylent", "vandelay")


def test_every_demo_statement_ties_out_or_names_the_finding_of_each_difference(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo's history: usage burns Moesif's balance down, so only findings stand between."""
    seed(world.stripe, world.moesif, world.now)
    seed_review_cases(world.stripe, world.moesif, world.now)
    assert main(["--since", world.since]) == 1
    (goodwill,) = [
        row["finding_id"]
        for row in world.report_rows()
        if row["category"] == "missing_in_stripe" and row["company_id"] == "initech"
    ]
    capsys.readouterr()

    codes = {}
    for company in DEMO_COMPANIES:
        codes[company] = main(["statement", "--company", company, "--since", world.since])
        path, tie_out = _statement(capsys)
        differences = tie_out[1:]
        assert codes[company] == (1 if differences else 0), company
        for line in differences:
            assert re.search(r"\(F-[0-9a-f]{16}\)$", line), line  # never "(no open finding)"
        if company == "initech":
            # 10.50 top-up, 1050 in the ledger, 20.00 by support, 5.00 promotion, 3.20 of usage
            assert tie_out[0].endswith("closing 1071.80 USD; Moesif reports 1071.80 USD")
            [mismatch] = differences
            assert mismatch.startswith("-1039.50 USD: the ledger records 1050.00 USD")
            # support's credit is no difference, but its line names its open finding
            [manual] = [row for row in _rows(path) if row["kind"] == "manual_credit"]
            assert (manual["amount"], manual["finding_id"]) == ("20.00", goodwill)
    assert {company for company, code in codes.items() if code == 0} == {
        "acme",
        "umbrella",
        "hooli",
        "soylent",
    }
