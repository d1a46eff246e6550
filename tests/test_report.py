"""The CSV drift report and the terminal summary, held to golden files in tests/golden/.

Run with ``UPDATE_GOLDEN=1`` to rewrite the golden files deliberately, then review the diff.
"""

from __future__ import annotations

import csv
import io
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from reconcile import frames
from reconcile.db.balance_chains import Chain
from reconcile.domain.times import Window
from reconcile.domain.values import (
    EXPECTED_COLUMNS,
    FINDING_COLUMNS,
    LEDGER_COLUMNS,
    REPORT_COLUMNS,
    Unreadable,
)
from reconcile.domain.vocab import Category, UnreadableSource
from reconcile.matching import match
from reconcile.report import neutralise, summary, to_report_frame, write_report
from reconcile.rules.balance_chain import Balance, BalanceRow, balance_breaks
from reconcile.rules.control_totals import PagedTransaction, total_mismatches
from reconcile.steps.balance_chains import break_finding
from reconcile.steps.control_totals import findings_of
from reconcile.unreadable import unreadable_findings

GOLDEN = Path(__file__).parent / "golden"
T = datetime(2026, 11, 1, 12, tzinfo=UTC)
WINDOW = Window(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC))
RUN_ID = "run-20261102-0001"
CURRENCIES: dict[str, str | None] = {
    "sub_us": "usd",
    "sub_jp": "jpy",
    "sub_kw": "kwd",
    "sub_gone": None,
}


def assert_golden(actual: bytes, name: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_bytes(actual)
    assert path.is_file(), f"{path} is missing: run with UPDATE_GOLDEN=1 to create it"
    assert actual == path.read_bytes(), f"{name} differs: review, then UPDATE_GOLDEN=1 to accept"


def entry(
    transaction_id: str,
    amount: int,
    currency: str,
    subscription: str | None,
    *,
    minutes: int = 0,
    company: str | None = "co_1",
    entry_type: str = "credit",
    reason: str | None = None,
) -> dict[str, Any]:
    return {
        "transaction_id": transaction_id,
        "source": "topup" if entry_type == "credit" else "refund",
        "entry_type": entry_type,
        "amount_minor": amount,
        "currency": currency,
        "created_at": T + timedelta(minutes=minutes),
        "stripe_object_id": transaction_id,
        "topup_id": transaction_id,
        "stripe_customer_id": "cus_1",
        "company_id": company if subscription else None,
        "subscription_id": subscription,
        "unmapped_reason": reason,
    }


def row(
    moesif_id: str,
    transaction_id: str | None,
    amount: int,
    currency: str,
    subscription: str,
    *,
    minutes: int = 0,
    company: str = "co_1",
    description: str | None = None,
) -> dict[str, Any]:
    return {
        "moesif_id": moesif_id,
        "transaction_id": transaction_id,
        "entry_type": "credit",
        "amount_minor": amount,
        "amount_raw": str(amount),
        "currency": currency,
        "company_id": company,
        "subscription_id": subscription,
        "created_at": T + timedelta(minutes=minutes),
        "description": description,
    }


def every_category() -> pd.DataFrame:
    entries = [
        entry("pi_usd", 1050, "usd", "sub_us", minutes=1),
        entry("pi_jpy", 1000, "jpy", "sub_jp", minutes=2),
        entry("pi_kwd", 1500, "kwd", "sub_kw", minutes=3),
        entry("pi_evil", 500, "usd", "sub_us", minutes=4, company='=HYPERLINK("http://x","y")'),
        entry("pi_bad", 1050, "usd", "sub_us", minutes=5),
        entry("pi_dup", 1000, "jpy", "sub_jp", minutes=6),
        entry("re_dup", 250, "kwd", "sub_kw", minutes=7, entry_type="debit"),
        entry("pi_eur", 2000, "eur", "sub_us", minutes=8),
        entry("pi_lost", 700, "usd", None, minutes=9, reason="=cmd|' /C calc'!A0"),
        entry("pi_gone", 900, "usd", "sub_gone", minutes=10),
        entry("pi_anon", 4200, "usd", "sub_us", minutes=11),
        entry("pi_wrong", 800, "usd", "sub_us", minutes=12),
    ]
    rows = [
        row("m_bad", "pi_bad", 105000, "usd", "sub_us", minutes=5),
        row("m_dup1", "pi_dup", 1000, "jpy", "sub_jp", minutes=6),
        row("m_dup2", "pi_dup", 1000, "jpy", "sub_jp", minutes=16),
        row("m_gift", None, 999, "kwd", "sub_kw", minutes=30, company="-1+1", description="@gift"),
        row("m_anon", "manual", 4200, "usd", "sub_us", minutes=131),
        row("m_wrong", "pi_wrong", 800, "usd", "sub_other", minutes=12, company="co_2"),
    ]
    rows.append(row("m_re", "re_dup", 250, "kwd", "sub_kw", minutes=7) | {"entry_type": "debit"})
    rows.append(row("m_re2", "\tre_x", 250, "kwd", "sub_kw", minutes=8) | {"entry_type": "debit"})
    findings = match(
        pd.DataFrame(entries, columns=EXPECTED_COLUMNS),
        pd.DataFrame(rows, columns=LEDGER_COLUMNS),
        window=WINDOW,
        match_window=timedelta(hours=48),
        subscription_currency=CURRENCIES,
    )
    # What the run makes of would_post: one posted, one failed, the rest left as they are.
    findings.loc[findings["transaction_id"] == "pi_usd", "action"] = "posted"
    findings.loc[findings["transaction_id"] == "pi_jpy", "action"] = "post_failed"
    unreadable = Unreadable(
        source=UnreadableSource.MOESIF,
        object_id="m_nan",
        reason="amount 'NaN' is not a number",
        company_hint="co_1",
        created_at=T + timedelta(minutes=40),
        excerpt='{"amount": "NaN"}',
        transaction_id="pi_nan",
    )
    short = total_mismatches(
        [PagedTransaction("txn_ch1", "charge", "usd", 1050, 0, 1050)],
        [
            {"reporting_category": "charge", "currency": "usd", "count": "2"}
            | {"gross": "12.50", "fee": "0.00", "net": "12.50"}
        ],
    )
    found = frames.joined(
        frames.joined(
            frames.typed_findings(findings),
            frames.typed_findings(unreadable_findings([unreadable])),
        ),
        frames.typed_findings(findings_of([], short)),
    )
    return frames.joined(found, balance_break_findings())


def balance_break_findings() -> pd.DataFrame:
    """A KWD chain whose second row begins 0.125 KWD above where the first ended."""
    first = BalanceRow("m_b1", 1, T, "kwd", Balance(0, 0, 0), Balance(1500, 0, 1500), (1500,))
    second = BalanceRow(
        "m_b2", 2, T + timedelta(minutes=50), "kwd", Balance(1625, 0, 1625), Balance(1625, 0, 1625)
    )
    chain = Chain("sub_kw", "co_1", (first, second), T + timedelta(hours=1))
    checked = balance_breaks(chain.rows, None)
    records = [break_finding(chain, each) for each in checked.breaks]
    return frames.from_records(records, ["finding_id"])


def empty_findings() -> pd.DataFrame:
    return match(
        pd.DataFrame([], columns=EXPECTED_COLUMNS),
        pd.DataFrame([], columns=LEDGER_COLUMNS),
        window=WINDOW,
        match_window=timedelta(hours=48),
        subscription_currency={},
    )


def test_scenario_covers_every_category() -> None:
    found = set(every_category()["category"])
    assert found == {category.value for category in Category}


def test_report_of_every_category_matches_golden(tmp_path: Path) -> None:
    path = write_report(every_category(), RUN_ID, tmp_path / "reports")
    assert path == tmp_path / "reports" / f"drift-{RUN_ID}.csv"
    assert_golden(path.read_bytes(), "drift-every-category.csv")


def test_empty_report_has_the_header_and_matches_golden(tmp_path: Path) -> None:
    path = write_report(empty_findings(), RUN_ID, tmp_path)
    assert path.read_text(encoding="utf-8") == ",".join(REPORT_COLUMNS) + "\n"
    assert_golden(path.read_bytes(), "drift-empty.csv")


def test_summary_matches_golden(tmp_path: Path) -> None:
    text = summary(
        every_category(),
        posted=1,
        post_failed=1,
        report_path=Path("reports") / f"drift-{RUN_ID}.csv",
        window=WINDOW,
        dry_run=False,
    )
    assert_golden((text + "\n").encode("utf-8"), "summary-every-category.txt")


def test_delta_is_the_correction_the_balance_needs() -> None:
    frame = to_report_frame(every_category(), RUN_ID)
    delta = {
        (record["category"], record["transaction_id"]): record["delta"]
        for record in frame.to_dict("records")
    }
    assert delta["missing_in_moesif", "pi_kwd"] == "1.500"
    assert delta["duplicate_in_moesif", "pi_dup"] == "-1000"
    assert delta["duplicate_in_moesif", "re_dup"] == "0.250"
    assert delta["misapplied", "pi_wrong"] == "-8.00"
    assert delta["unreadable", "pi_nan"] == ""


def test_report_columns_amounts_and_delta() -> None:
    frame = to_report_frame(every_category(), RUN_ID)
    assert list(frame.columns) == REPORT_COLUMNS
    cells = {record["transaction_id"]: record for record in frame.to_dict("records")}
    assert (cells["pi_jpy"]["stripe_amount"], cells["pi_jpy"]["delta"]) == ("1000", "1000")
    assert (cells["pi_kwd"]["stripe_amount"], cells["pi_kwd"]["moesif_amount"]) == ("1.500", "")
    bad = cells["pi_bad"]
    assert (bad["stripe_amount"], bad["moesif_amount"], bad["delta"]) == (
        "10.50",
        "1050.00",
        "-1039.50",
    )
    assert bad["stripe_created_at"] == "2026-11-01T12:05:00Z"
    assert bad["run_id"] == RUN_ID
    gift = frame[frame["category"] == "missing_in_stripe"].iloc[0]
    assert (gift["stripe_amount"], gift["moesif_amount"], gift["delta"]) == ("", "0.999", "-0.999")
    assert gift["stripe_created_at"] == ""


def test_formula_cells_are_neutralised_but_amounts_stay_numbers() -> None:
    frame = to_report_frame(every_category(), RUN_ID)
    assert frame.loc[frame["category"] == "missing_in_stripe", "company_id"].item() == "'-1+1"
    evil = frame[frame["transaction_id"] == "pi_evil"].iloc[0]
    assert evil["company_id"] == '\'=HYPERLINK("http://x","y")'
    unmapped = frame[frame["transaction_id"] == "pi_lost"].iloc[0]
    assert unmapped["detail"] == "'=cmd|' /C calc'!A0"
    assert frame.loc[frame["transaction_id"] == "pi_bad", "delta"].item() == "-1039.50"
    for column in REPORT_COLUMNS:
        if column not in ("stripe_amount", "moesif_amount", "delta"):
            assert not frame[column].str.match(r"^[=+\-@\t\r]").any(), column


@pytest.mark.parametrize("trigger", ["=", "+", "-", "@", "\t", "\r"])
def test_every_formula_trigger_is_neutralised(trigger: str) -> None:
    assert neutralise(trigger + "1+1") == "'" + trigger + "1+1"
    assert neutralise("a" + trigger) == "a" + trigger
    assert neutralise("") == ""


def test_report_is_utf8_with_lf_endings_and_quotes_embedded_newlines(tmp_path: Path) -> None:
    findings = empty_findings()
    record = {column: None for column in FINDING_COLUMNS} | {
        "category": "missing_in_stripe",
        "action": "flagged",
        "company_id": "Zürich AG",
        "currency": None,
        "moesif_amount_minor": 500,
        "detail": "line one\nline two",
    }
    findings = pd.DataFrame([record], columns=FINDING_COLUMNS)
    path = write_report(findings, RUN_ID, tmp_path)
    raw = path.read_bytes()
    assert b"\r\n" not in raw
    assert "Zürich AG".encode() in raw
    parsed = list(csv.DictReader(io.StringIO(raw.decode("utf-8"), newline="")))
    assert parsed[0]["detail"] == "line one\nline two"
    assert parsed[0]["moesif_amount"] == "5.00"  # no currency: two decimal places
    assert parsed[0]["delta"] == "-5.00"


def test_write_replaces_the_old_report_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / f"drift-{RUN_ID}.csv"
    target.write_text("stale content that is longer than a header row, to be sure\n" * 50)
    write_report(empty_findings(), RUN_ID, tmp_path)
    assert target.read_text(encoding="utf-8") == ",".join(REPORT_COLUMNS) + "\n"
    assert [path.name for path in tmp_path.iterdir()] == [target.name]


def test_failed_write_keeps_the_old_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / f"drift-{RUN_ID}.csv"
    target.write_text("old\n")

    def refuse(source: str, destination: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_report(every_category(), RUN_ID, tmp_path)
    assert target.read_text() == "old\n"
    assert [path.name for path in tmp_path.iterdir()] == [target.name]


@pytest.mark.parametrize("run_id", ["../escape", "a/b", "", ".hidden"])
def test_unsafe_run_ids_are_refused(run_id: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not safe"):
        write_report(empty_findings(), run_id, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_summary_of_a_dry_run_says_nothing_was_posted() -> None:
    text = summary(
        every_category(),
        posted=0,
        post_failed=0,
        report_path=None,
        window=WINDOW,
        dry_run=True,
    )
    lines = text.splitlines()
    assert lines[0] == "reconcile 2026-11-01T00:00:00Z .. 2026-11-02T00:00:00Z (dry run)"
    # Of the four missing movements, the scenario marks one posted and one failed.
    assert "would post: 2 (dry run, nothing posted)" in lines
    assert lines[-1] == "report: not written"
    assert "flagged for review: 12" in lines
    missing = next(line for line in lines if line.startswith("missing_in_moesif"))
    assert missing.split()[1] == "5"
    assert "1000 JPY" in missing
    assert "1.500 KWD" in missing
    assert "23.50 USD" in missing


def test_summary_of_no_findings_lists_zero_counts() -> None:
    text = summary(
        empty_findings(),
        posted=0,
        post_failed=0,
        report_path=Path("r.csv"),
        window=WINDOW,
        dry_run=False,
    )
    assert re.search(r"^matched_by_amount +0$", text, re.MULTILINE)
    assert "flagged for review: 0" in text
    assert "posted: 0" in text
    assert text.endswith("report: r.csv")
