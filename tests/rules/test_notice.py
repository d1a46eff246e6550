"""The notification a run sends (contract sections 10 and 10a): money signed, per currency."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconcile.domain.money import to_minor
from reconcile.domain.values import Entry
from reconcile.rules.notice import (
    MAX_FINDINGS,
    NoticeFinding,
    build_notice,
    finding_url,
    rank,
    signed,
    totals,
)

NOW = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)


def finding(
    finding_id: str,
    delta: int | None,
    currency: str | None = "usd",
    *,
    category: str = "amount_mismatch",
    action: str = "flagged",
    blocked: bool = False,
    status: str = "open",
    age: timedelta = timedelta(0),
    company: str = "acme",
) -> NoticeFinding:
    return NoticeFinding(
        finding_id=finding_id,
        category=category,
        company_id=company,
        subscription_id="sub_1",
        currency=currency,
        delta_minor=delta,
        action=action,
        blocked=blocked,
        first_seen=NOW - age,
        status=status,
    )


def posted(amount: int, currency: str = "usd", entry_type: str = "credit") -> Entry:
    kind = "debit" if entry_type == "debit" else "credit"
    return Entry(f"pi_{amount}", "acme", "sub_1", kind, amount, currency, "reconcile: credit")


def notice(
    findings: list[NoticeFinding],
    *,
    entries: tuple[Entry, ...] = (),
    dry_run: bool = False,
    console_url: str | None = None,
    exit_code: int = 1,
) -> dict[str, Any]:
    return build_notice(
        run_id="R1",
        exit_code=exit_code,
        findings=findings,
        posted=list(entries),
        dry_run=dry_run,
        report_path="reports/drift-R1.csv",
        now=NOW,
        console_url=console_url,
    )


def test_the_section_10_fields_are_kept_and_10a_adds_its_own() -> None:
    sent = notice([finding("F-1", -103950)])
    assert {"text", "run_id", "exit_code", "counts", "totals", "report_path", "findings"} <= set(
        sent
    )
    assert {"dry_run", "blocks"} <= set(sent)
    listed = sent["findings"][0]
    for key in ("delta", "currency", "priority", "due_at", "blocked", "url"):
        assert key in listed
    json.dumps(sent)  # plain JSON values only


def test_amounts_are_signed_deltas_in_major_units_with_their_currency() -> None:
    sent = notice([finding("F-1", -103950, "usd")])
    listed = sent["findings"][0]
    assert listed["delta"] == "-1039.50"
    assert listed["currency"] == "usd"
    assert "-1,039.50 USD" in sent["text"]
    assert "10.50" not in sent["text"]


def test_totals_per_currency_keep_owed_over_credited_and_posted_apart() -> None:
    sent = notice(
        [
            finding("F-1", 1050),
            finding("F-2", -103950),
            finding("F-3", 2500, "eur"),
            finding("F-4", 1000, category="missing_in_moesif", action="posted"),
        ],
        entries=(posted(1000), posted(250, entry_type="debit")),
    )
    assert sent["totals"] == {
        "eur": {"owed_to_customers": "25.00", "over_credited": "0.00", "posted": "0.00"},
        "usd": {"owed_to_customers": "10.50", "over_credited": "-1039.50", "posted": "7.50"},
    }
    assert "USD: owed to customers +10.50 USD, over-credited -1,039.50 USD" in sent["text"]


def test_zero_decimal_and_three_decimal_currencies_show_their_own_places() -> None:
    sent = notice([finding("F-1", -5000, "jpy"), finding("F-2", 1500, "kwd")])
    assert sent["totals"]["jpy"]["over_credited"] == "-5000"
    assert sent["totals"]["kwd"]["owed_to_customers"] == "1.500"
    assert "-5,000 JPY" in sent["text"]


def test_the_text_says_what_was_posted_and_what_needs_a_person() -> None:
    findings = [
        finding(f"F-{n}", 100, category="missing_in_moesif", action="posted") for n in range(4)
    ]
    findings.append(finding("F-9", 100, category="missing_in_moesif", action="post_failed"))
    sent = notice(findings, entries=tuple(posted(100) for _ in range(4)))
    assert "4 posted automatically; 1 needs a person." in sent["text"]
    assert "`missing_in_moesif` 5 (4 posted automatically, 1 needs a person)" in sent["text"]
    assert sent["automatic"] == 4
    assert sent["needs_person"] == 1
    assert [item["finding_id"] for item in sent["findings"]] == ["F-9"]


def test_a_dry_run_is_marked_and_says_nothing_was_posted() -> None:
    sent = notice(
        [
            finding("F-1", 100, category="missing_in_moesif", action="would_post"),
            finding("F-2", -100),
        ],
        dry_run=True,
    )
    assert sent["dry_run"] is True
    assert sent["text"].startswith("*[DRY RUN] reconcile run R1")
    assert "nothing was posted; 1 would be posted automatically; 1 needs a person" in sent["text"]
    assert sent["blocks"][0]["text"]["text"].startswith("[DRY RUN]")
    assert "posted +" not in sent["text"]
    assert "`missing_in_moesif` 1 (1 would be posted automatically)" in sent["text"]
    assert "A run without --dry-run posts what this one would have posted." in sent["text"]


def test_a_dry_run_that_posted_is_a_contradiction() -> None:
    with pytest.raises(ValueError, match="dry run"):
        notice([], entries=(posted(1),), dry_run=True)


def test_ignored_findings_are_never_sent_nor_counted() -> None:
    sent = notice([finding("F-1", 100), finding("F-2", -999_999, status="ignored")])
    assert [item["finding_id"] for item in sent["findings"]] == ["F-1"]
    assert sent["counts"] == {"amount_mismatch": 1}
    assert sent["totals"]["usd"]["over_credited"] == "0.00"
    assert "F-2" not in json.dumps(sent)


def test_only_findings_under_review_are_listed() -> None:
    sent = notice(
        [
            finding("F-1", 100, category="matched_by_amount", action="none"),
            finding("F-2", 100, category="missing_in_moesif", action="posted"),
            finding("F-3", 0, action="resolved"),
            finding("F-4", 100, action="reopened"),
        ],
        entries=(posted(100),),
    )
    assert [item["finding_id"] for item in sent["findings"]] == ["F-4"]
    assert "Reopened: 1 finding(s) marked resolved still drift: F-4" in sent["text"]
    assert sent["counts"] == {"amount_mismatch": 2, "matched_by_amount": 1, "missing_in_moesif": 1}


def test_blocked_but_owed_customers_come_first() -> None:
    sent = notice(
        [
            finding("F-big", -99_999_900),
            finding("F-blocked-over", -100, blocked=True),
            finding("F-blocked-owed", 100, blocked=True),
        ]
    )
    order = [item["finding_id"] for item in sent["findings"]]
    assert order == ["F-blocked-owed", "F-big", "F-blocked-over"]
    assert "BLOCKED while owed" in sent["text"]
    assert sent["findings"][0]["blocked"] is True


def test_raw_numbers_are_never_compared_across_currencies() -> None:
    # Today's payload put 5,000 JPY before every USD amount; ranked within each currency,
    # the largest of each come first, before any second largest.
    sent = notice(
        [
            finding("F-jpy-1", 5000, "jpy"),
            finding("F-jpy-2", 4000, "jpy"),
            finding("F-usd-1", 10_000),
            finding("F-usd-2", 5_000),
        ]
    )
    order = [item["finding_id"] for item in sent["findings"]]
    assert set(order[:2]) == {"F-jpy-1", "F-usd-1"}
    assert set(order[2:]) == {"F-jpy-2", "F-usd-2"}


def test_at_most_twenty_findings_are_listed_and_the_rest_are_counted() -> None:
    sent = notice([finding(f"F-{n:02}", n + 1) for n in range(25)])
    assert len(sent["findings"]) == MAX_FINDINGS
    assert sent["findings"][0]["delta"] == "0.25"
    assert "…and 20 more in the report" in sent["text"]
    assert sent["totals"]["usd"]["owed_to_customers"] == "3.25"  # all 25, not only those listed


def test_each_finding_carries_its_priority_due_time_and_link() -> None:
    sent = notice(
        [finding("F-1", -1_000_000, age=timedelta(days=2))], console_url="https://ops.example/"
    )
    listed = sent["findings"][0]
    assert listed["priority"] == "critical"
    assert listed["due_at"] == "2026-12-01T02:00:00Z"
    assert listed["overdue"] is True
    assert listed["url"] == "https://ops.example/findings/F-1"
    assert "<https://ops.example/findings/F-1|F-1>" in sent["text"]
    assert "OVERDUE" in sent["text"]


def test_without_a_console_url_no_link_is_made() -> None:
    sent = notice([finding("F-1", 100)])
    assert sent["findings"][0]["url"] is None
    assert "<" not in sent["text"]


def test_a_finding_url_quotes_the_id() -> None:
    assert (
        finding_url("https://ops.example/c/", "F-1 x") == "https://ops.example/c/findings/F-1%20x"
    )


def test_outside_values_are_escaped_in_text_and_blocks() -> None:
    sent = notice([finding("F-1", 100, company="<!channel> & co")])
    assert "<!channel>" not in sent["text"]
    assert "&lt;!channel&gt; &amp; co" in sent["text"]
    assert "<!channel>" not in json.dumps(sent["blocks"])


def test_blocks_carry_the_same_facts_as_the_text() -> None:
    sent = notice(
        [finding("F-1", -103950), finding("F-2", 100, blocked=True)],
        console_url="https://ops.example",
    )
    blocks = sent["blocks"]
    assert blocks[0]["type"] == "header"
    assert all(block["type"] in {"header", "section", "divider", "context"} for block in blocks)
    assert len(blocks) <= 50
    text = json.dumps(blocks)
    for fact in ("-1,039.50 USD", "+1.00 USD", "BLOCKED while owed", "F-2", "drift-R1.csv"):
        assert fact in text


def test_a_failed_run_says_why() -> None:
    sent = notice([], exit_code=3)
    assert sent["findings"] == []
    assert "the run failed (exit 3)" in sent["text"]


def test_unknown_amounts_and_currencies_are_listed_last_and_not_totalled() -> None:
    sent = notice(
        [
            finding("F-unreadable", None, None, category="unreadable"),
            finding("F-1", 1),
        ]
    )
    assert [item["finding_id"] for item in sent["findings"]] == ["F-1", "F-unreadable"]
    assert sent["findings"][1]["delta"] is None
    assert set(sent["totals"]) == {"usd"}
    assert "amount unknown" in sent["text"]


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("1039.50", "usd", "+1,039.50 USD"),
        ("-1039.50", "usd", "-1,039.50 USD"),
        ("0.00", "usd", "0.00 USD"),
        ("-5000", "jpy", "-5,000 JPY"),
        (None, "usd", "amount unknown"),
    ],
)
def test_signed_amounts_read_as_a_person_reads_them(
    amount: str | None, currency: str, expected: str
) -> None:
    assert signed(amount, currency) == expected


# Properties over any run's findings.

CURRENCIES = ["usd", "eur", "jpy", "kwd"]


@st.composite
def findings_of_a_run(draw: st.DrawFn) -> list[NoticeFinding]:
    count = draw(st.integers(0, 40))
    made = []
    for number in range(count):
        made.append(
            finding(
                f"F-{number:03}",
                draw(st.one_of(st.none(), st.integers(-(10**9), 10**9))),
                draw(st.sampled_from(CURRENCIES)),
                action=draw(st.sampled_from(["flagged", "post_failed", "reopened", "posted"])),
                blocked=draw(st.booleans()),
                status=draw(st.sampled_from(["open", "open", "assigned", "ignored"])),
                age=timedelta(hours=draw(st.integers(0, 24 * 10))),
            )
        )
    return made


@given(findings_of_a_run())
def test_ranking_never_puts_another_before_a_blocked_customer_owed_credit(
    findings: list[NoticeFinding],
) -> None:
    ranked = rank(findings, NOW)
    owed = [item.blocked_but_owed for item in ranked]
    assert owed == sorted(owed, reverse=True)
    listed = [item["finding_id"] for item in notice(findings)["findings"]]
    by_id = {item.finding_id: item for item in findings}
    flags = [by_id[finding_id].blocked_but_owed for finding_id in listed]
    assert flags == sorted(flags, reverse=True)


@given(findings_of_a_run())
def test_within_a_currency_the_larger_absolute_delta_comes_first(
    findings: list[NoticeFinding],
) -> None:
    ranked = rank(findings, NOW)
    last: dict[tuple[bool, str], float] = {}
    for item in ranked:
        key = (item.blocked_but_owed, str(item.currency))
        size = -1 if item.delta_minor is None else abs(item.delta_minor)
        assert size <= last.get(key, float("inf"))
        last[key] = size


@given(findings_of_a_run(), st.lists(st.tuples(st.integers(1, 10**9), st.booleans())))
def test_totals_per_currency_sum_exactly(
    findings: list[NoticeFinding], postings: list[tuple[int, bool]]
) -> None:
    entries = [posted(amount, "eur", "debit" if debit else "credit") for amount, debit in postings]
    sums = totals(findings, entries)
    expected: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for item in findings:
        if item.delta_minor is None or item.status == "ignored" or item.action == "posted":
            continue
        expected[str(item.currency)][0 if item.delta_minor > 0 else 1] += item.delta_minor
    for currency in CURRENCIES:
        owed, over = expected[currency]
        got = sums.get(currency)
        if got is None:
            assert (owed, over) == (0, 0)
            continue
        assert to_minor(Decimal(got["owed_to_customers"]), currency) == owed
        assert to_minor(Decimal(got["over_credited"]), currency) == over
    net = sum(-amount if debit else amount for amount, debit in postings)
    assert to_minor(Decimal(sums["eur"]["posted"] if entries else "0"), "eur") == net


def test_overdue_findings_are_counted_and_marked() -> None:
    sent = notice([finding("F-1", 1, age=timedelta(days=7)), finding("F-2", 1)])
    assert sent["overdue"] == 1
    assert "1 need" not in sent["text"]
    assert "2 need a person. 1 overdue." in sent["text"]
    assert [item["overdue"] for item in sent["findings"]] == [True, False]


def test_overdue_counts_the_runs_and_the_queues_findings_once_most_overdue_first() -> None:
    reported = [
        finding("F-run-late", 500, age=timedelta(days=7)),  # critical by age: due a day ago
        finding("F-run-fresh", 500),
    ]
    queued = [
        finding("F-queue-late", 200, age=timedelta(days=9)),
        finding("F-run-late", 500, age=timedelta(days=7)),  # the run's copy counts, once
        finding("F-queue-ignored", 200, age=timedelta(days=9), status="ignored"),
        finding("F-queue-fresh", 200),
    ]
    payload = build_notice(
        run_id="R1",
        exit_code=1,
        findings=reported,
        posted=[],
        dry_run=False,
        report_path=None,
        now=NOW,
        queued=queued,
    )
    assert payload["overdue"] == 2
    late = payload["overdue_findings"]
    assert [item["finding_id"] for item in late] == ["F-queue-late", "F-run-late"]
    assert all(item["overdue"] for item in late)
    # the queue's findings are not this run's: neither listed, counted nor added to the totals
    listed = sorted(item["finding_id"] for item in payload["findings"])
    assert listed == ["F-run-fresh", "F-run-late"]
    assert payload["counts"] == {"amount_mismatch": 2}
    assert payload["totals"]["usd"]["owed_to_customers"] == "10.00"
    assert "Overdue (2), past their due time:" in payload["text"]
    overdue_line = payload["text"].split("Overdue (2)")[1].splitlines()[1]
    assert "F-queue-late" in overdue_line
    assert "OVERDUE" in overdue_line
    assert "Overdue (2)" in json.dumps(payload["blocks"])


def test_a_run_without_overdue_findings_says_nothing_of_them() -> None:
    payload = notice([finding("F-1", 500)])
    assert payload["overdue"] == 0
    assert payload["overdue_findings"] == []
    assert "Overdue" not in payload["text"]


def test_a_run_that_ended_well_names_its_overdue_findings_in_the_headline() -> None:
    payload = build_notice(
        run_id="R1",
        exit_code=0,
        findings=[],
        posted=[],
        dry_run=False,
        report_path=None,
        now=NOW,
        queued=[finding("F-old", -900000, age=timedelta(days=4))],  # high, due a day ago
    )
    headline = "reconcile run R1: 1 overdue finding(s) need a person (exit 0)"
    assert payload["text"].splitlines()[0] == f"*{headline}*"
    assert payload["blocks"][0]["text"]["text"] == headline
    [late] = payload["overdue_findings"]
    assert late["delta"] == "-9000.00"
    assert late["priority"] == "high"
    assert "reconcile findings assign ID" in payload["text"]
