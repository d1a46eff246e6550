"""The console's money: both sides in one unit, the headline per currency, balances marked."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from reconcile.db.models import LedgerEntry, Posting
from reconcile.db.subscriptions import keep_currency
from reconcile.domain.times import to_iso
from reconcile.operator.console import app as console_app
from tests.operator.conftest import NOW, add_finding, add_initech_records, add_run, add_state
from tests.operator.test_console import _login, clients, served  # noqa: F401

LATEST = "20261201T020000Z-bbbbbb"


def _cells(page: str, table: str) -> list[list[str]]:
    body = page.split(f'id="{table}"')[1].split("</table>")[0]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, flags=re.S)
    return [
        [
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
        ]
        for row in rows
        if "<td" in row
    ]


def test_finding_page_shows_both_sides_in_major_units_with_the_difference_on_top(
    clients: Callable[..., httpx.Client],  # noqa: F811
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        state = add_state(
            session,
            category="amount_mismatch",
            company_id="initech",
            subscription_id="sub_initech",
            transaction_id="pi_initech",
            moesif_id="m-initech",
            stripe_amount_minor=1050,
            moesif_amount_minor=105000,
            delta_minor=-103950,
        )
        add_run(session, "r-initech")
        add_finding(
            session,
            "r-initech",
            category="amount_mismatch",
            company_id="initech",
            subscription_id="sub_initech",
            transaction_id="pi_initech",
            stripe_amount_minor=1050,
            moesif_amount_minor=105000,
            finding_id=state.finding_id,
        )
        add_initech_records(session)
    client = clients()
    _login(client)
    page = client.get(f"/findings/{state.finding_id}").text
    top = page.index('id="delta"')
    assert top < page.index("<h2>Stripe</h2>")
    assert "-1,039.50 USD" in page[top : page.index("</p>", top)]
    assert "Moesif holds 1,039.50 USD too much" in page
    assert _cells(page, "amounts") == [["10.50 USD", "1,050.00 USD", "-1,039.50 USD"]]
    stripe = page.split("<h2>Stripe</h2>")[1].split("</div>")[0]
    moesif = page.split("<h2>Moesif</h2>")[1].split("</div>")[0]
    assert "<dt>amount</dt><dd>10.50 USD</dd>" in stripe
    assert "amount_minor" not in stripe
    assert "<dt>amount</dt><dd>1,050.00 USD</dd>" in moesif
    assert "<dt>amount as Moesif wrote it</dt><dd>1050</dd>" in moesif
    [seen] = _cells(page, "history")
    assert seen[3:5] == ["10.50 USD", "1,050.00 USD"]


def test_a_finding_whose_records_left_the_snapshot_says_so_not_that_stripe_has_none(
    clients: Callable[..., httpx.Client],  # noqa: F811
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        gone = add_state(
            session,
            category="amount_mismatch",
            transaction_id="pi_gone",
            moesif_id="m-gone",
            stripe_amount_minor=1050,
            moesif_amount_minor=105000,
            delta_minor=-103950,
        ).finding_id
        stray = add_state(
            session, category="missing_in_stripe", moesif_amount_minor=500, delta_minor=-500
        ).finding_id
    client = clients()
    _login(client)
    page = client.get(f"/findings/{gone}").text
    stripe = page.split("<h2>Stripe</h2>")[1].split("</div>")[0]
    moesif = page.split("<h2>Moesif</h2>")[1].split("</div>")[0]
    assert "<code>pi_gone</code> is no longer in the snapshot" in stripe
    assert "Moesif's own" not in stripe
    assert "<code>m-gone</code> is no longer in the snapshot" in moesif
    assert "<p>Correct the ledger row carrying that transaction_id" in page  # a sentence
    stray_page = client.get(f"/findings/{stray}").text
    assert "No Stripe movement (the drift is Moesif's own)." in stray_page


def test_front_page_headline_totals_per_currency(
    clients: Callable[..., httpx.Client],  # noqa: F811
    sessions: sessionmaker[Session],
    seeded: dict[str, str],
) -> None:
    with sessions.begin() as session:
        keep_currency(session, "sub_acme", "usd", NOW, "acme", available_balance_minor=0)
        for tid, kind, amount in (("pi_auto", "credit", 3700), ("re_auto", "debit", 500)):
            session.add(
                Posting(
                    transaction_id=tid, origin="run", run_id=LATEST, company_id="acme",
                    subscription_id="sub_acme", entry_type=kind, amount_minor=amount,
                    currency="usd", amount_sent=str(amount), description="reconcile",
                    status="confirmed", attempts=1, created_at=NOW, updated_at=NOW,
                    confirmed_at=NOW,
                )
            )  # fmt: skip
    client = clients()
    _login(client)
    page = client.get("/").text
    assert page.index('id="headline"') < page.index('id="runs"')
    # seeded: 25.00 USD owed on sub_acme (blocked), 20.00 USD over-credited, 5000 JPY owed on
    # sub_acme too; the latest run posted 37.00 USD and took back 5.00 USD.
    assert _cells(page, "totals") == [
        ["JPY", "+5,000 JPY", "0 JPY", "0 JPY", "1 blocked"],
        ["USD", "+25.00 USD", "-20.00 USD", "+32.00 USD", "1 blocked"],
    ]
    assert f"run {LATEST}" in page


def test_balances_are_marked_in_words_ordered_per_currency_and_mismatches_apart(
    clients: Callable[..., httpx.Client],  # noqa: F811
    sessions: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    with sessions.begin() as session:
        keep_currency(session, "sub_hooli", "usd", NOW, "hooli")
    (tmp_path / "balances-20261201T020000Z-cccccc.csv").write_text(
        "company_id,subscription_id,currency,stripe_net,moesif_net,delta,current_balance,"
        "pending_activity,available_balance,open_findings\n"
        "umbrella,sub_u,jpy,5000,0,5000,10,0,10,1\n"
        "initech,sub_i,usd,10.50,1050.00,'-1039.50,1050.00,0,1050.00,1\n"
        "acme,sub_acme,usd,60.00,23.00,37.00,0,0,0,1\n"
        "wayne,sub_w,usd,42.00,0,42.00,5.00,0,5.00,1\n"
        "hooli,sub_hooli,eur,30.00,0,30.00,12.00,0,12.00,1\n"
        "hooli,sub_hooli,usd,20.00,20.00,0,12.00,0,12.00,0\n",
        encoding="utf-8",
    )
    client = clients()
    _login(client)
    page = client.get("/balances").text
    rows = _cells(page, "balances")
    assert rows[2] == ["initech", "sub_i", "usd", "", "over-credited", "10.50", "1,050.00"] + [
        "-1,039.50",
        "1,050.00",
        "0",
        "1,050.00",
        "1",
        "",  # as_of: this older CSV has none
        "statements",
    ]  # grouped and signed as a person reads them (not the CSV's formula guard)
    assert rows[1][5:8] == ["5,000", "0", "+5,000"]  # yen: grouped, no decimals, owed signed
    assert [row[:5] for row in rows] == [
        ["acme", "sub_acme", "usd", "blocked", "owed"],  # blocked while owed: first
        ["umbrella", "sub_u", "jpy", "", "owed"],  # 5000 JPY is not weighed against USD
        ["initech", "sub_i", "usd", "", "over-credited"],
        ["wayne", "sub_w", "usd", "", "owed"],  # 42.00 USD
        ["hooli", "sub_hooli", "usd", "", ""],
    ]
    assert re.search(r'<tr class="blocked drift">\s*<td class="company_id">acme', page)
    [apart] = _cells(page, "currency_mismatch")
    assert apart[:5] == ["hooli", "sub_hooli", "eur", "USD", "owed"]
    assert "12.00" not in apart  # the USD subscription's balance is not shown as EUR


def test_front_page_lists_overdue_findings_most_overdue_first(
    clients: Callable[..., httpx.Client],  # noqa: F811
    sessions: sessionmaker[Session],
    seeded: dict[str, str],
) -> None:
    with sessions.begin() as session:
        due_two_days_ago = add_state(
            session,
            moesif_id="m-late",
            company_id="globex",
            delta_minor=-4200,
            owner="alice",
            status="assigned",
            first_seen_at=NOW - timedelta(days=8),  # critical at 5 days: due 2 days ago
        ).finding_id
        due_six_days_ago = add_state(
            session,
            moesif_id="m-due_two_days_ago",
            company_id="umbrella",
            currency="jpy",
            delta_minor=7000,
            first_seen_at=NOW - timedelta(days=12),  # due 6 days ago
        ).finding_id
        add_state(  # ignored: never overdue
            session, moesif_id="m-ign", status="ignored", first_seen_at=NOW - timedelta(days=20)
        )
    client = clients()
    _login(client)
    page = client.get("/").text
    assert page.index('id="overdue"') < page.index('id="runs"')
    assert "Overdue findings (2)" in page
    rows = _cells(page, "overdue-findings")
    assert [row[0] for row in rows] == [due_six_days_ago, due_two_days_ago]
    assert rows[0][3:] == ["nobody", "missing_in_stripe", "umbrella", "+7,000 JPY"]
    assert rows[1][3:] == ["alice", "missing_in_stripe", "globex", "-42.00 USD"]
    assert all("overdue" in row[1] for row in rows)
    assert seeded["hostile"] not in page.split('id="overdue"')[1].split("</section>")[0]


def test_sorting_by_amount_ranks_within_each_currency_blocked_but_owed_first(
    clients: Callable[..., httpx.Client],  # noqa: F811
    sessions: sessionmaker[Session],
    seeded: dict[str, str],
) -> None:
    # seeded: +25.00 USD owed (sub_acme), -20.00 USD, +5,000 JPY (sub_acme too)
    with sessions.begin() as session:
        keep_currency(session, "sub_blocked", "usd", NOW, "blocked", available_balance_minor=0)
        blocked = add_state(
            session,
            category="missing_in_moesif",
            company_id="blocked",
            subscription_id="sub_blocked",
            transaction_id="pi_blocked",
            moesif_id=None,
            delta_minor=300,
        ).finding_id
        small_jpy = add_state(
            session,
            category="missing_in_moesif",
            company_id="umbrella",
            transaction_id="pi_jpy_small",
            moesif_id=None,
            currency="jpy",
            delta_minor=100,
        ).finding_id
    client = clients()
    _login(client)
    page = client.get("/findings", params={"sort": "amount"}).text
    ids = [row[1] for row in _cells(page, "findings")]
    # by raw minor units: 5000 JPY, 2500, 2000, 300, 100; per currency: the blocked customer
    # owed 3.00 USD first, then the first of each currency, then the second of each
    assert ids == [blocked, seeded["jpy"], seeded["owed"], small_jpy, seeded["hostile"]]


def test_sorting_by_amount_lists_at_most_so_many_chosen_by_that_order(
    clients: Callable[..., httpx.Client],  # noqa: F811
    sessions: sessionmaker[Session],
    seeded: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # seeded: +25.00 USD owed, -20.00 USD, +5,000 JPY; two more yen findings, larger numbers
    # than any USD one
    with sessions.begin() as session:
        more_yen = [
            add_state(
                session,
                category="missing_in_moesif",
                company_id="umbrella",
                transaction_id=f"pi_jpy_{amount}",
                moesif_id=None,
                currency="jpy",
                delta_minor=amount,
            ).finding_id
            for amount in (4000, 3000)
        ]
    monkeypatch.setattr(console_app, "LISTED", 3)
    client = clients()
    _login(client)
    page = client.get("/findings", params={"sort": "amount"}).text
    ids = [row[1] for row in _cells(page, "findings")]
    # the 3 largest numbers are all yen; the 3 first by amount keep the largest USD finding
    assert ids == [seeded["jpy"], seeded["owed"], more_yen[0]]


def test_balances_before_any_check_show_each_latest_rows_figures_as_of_its_time(
    clients: Callable[..., httpx.Client],  # noqa: F811
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        keep_currency(session, "sub_acme", "usd", NOW, "acme")
        for number, (amount, ending, hours) in enumerate(((3000, 3000, 30), (2000, 0, 2))):
            session.add(
                LedgerEntry(
                    moesif_id=f"m{number}", transaction_id=f"pi_{number}",
                    entry_type="credit" if number == 0 else "debit", amount_minor=amount,
                    amount_raw=str(amount), currency="usd", company_id="acme",
                    subscription_id="sub_acme", created_at=NOW - timedelta(hours=hours),
                    first_seen_at=NOW, last_seen_at=NOW, sequence_id=number + 1,
                    ending_current_minor=ending + 1000, ending_pending_minor=-1000,
                    ending_available_minor=ending,
                )
            )  # fmt: skip
    client = clients()
    _login(client)
    page = client.get("/balances").text
    [row] = _cells(page, "balances")
    # The debit's row, the latest by sequence id: 10.00 current, -10.00 pending, 0 available.
    assert row[:8] == ["acme", "sub_acme", "usd", "blocked", "over-credited"] + [
        "0.00",
        "10.00",
        "-10.00",
    ]
    assert row[8:] == ["10.00", "-10.00", "0.00", "0", to_iso(NOW - timedelta(hours=2))] + [
        "statements"
    ]
