"""The matcher: each rule of contract section 6 on small hand-built frames."""

from __future__ import annotations

import ast
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import reconcile.matching
from reconcile.domain.times import Window
from reconcile.domain.values import EXPECTED_COLUMNS, FINDING_COLUMNS, LEDGER_COLUMNS
from reconcile.matching import finding_records, is_stripe_id, match, postable

T = datetime(2026, 11, 1, 12, tzinfo=UTC)
WINDOW = Window(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC))
HOURS_48 = timedelta(hours=48)


def entry(
    transaction_id: str,
    amount: int = 1000,
    *,
    at: datetime = T,
    entry_type: str = "credit",
    currency: str = "usd",
    company: str | None = "co_1",
    subscription: str | None = "sub_1",
    reason: str | None = None,
    stripe_object_id: str | None = None,
) -> dict[str, Any]:
    source = "topup" if entry_type == "credit" else "refund"
    return {
        "transaction_id": transaction_id,
        "source": source,
        "entry_type": entry_type,
        "amount_minor": amount,
        "currency": currency,
        "created_at": at,
        "stripe_object_id": stripe_object_id or transaction_id,
        "topup_id": transaction_id,
        "stripe_customer_id": "cus_1",
        "company_id": company,
        "subscription_id": subscription,
        "unmapped_reason": reason,
    }


def row(
    moesif_id: str,
    transaction_id: str | None,
    amount: int = 1000,
    *,
    at: datetime = T,
    entry_type: str = "credit",
    company: str | None = "co_1",
    subscription: str | None = "sub_1",
    currency: str | None = "usd",
    description: str | None = None,
) -> dict[str, Any]:
    return {
        "moesif_id": moesif_id,
        "transaction_id": transaction_id,
        "entry_type": entry_type,
        "amount_minor": amount,
        "amount_raw": str(amount),
        "currency": currency,
        "company_id": company,
        "subscription_id": subscription,
        "created_at": at,
        "description": description,
    }


def run(
    entries: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    *,
    window: Window = WINDOW,
    match_window: timedelta = HOURS_48,
    currencies: dict[str, str | None] | None = None,
    companies: dict[str, str | None] | None = None,
) -> pd.DataFrame:
    expected = pd.DataFrame(entries, columns=EXPECTED_COLUMNS)
    ledger = pd.DataFrame(rows, columns=LEDGER_COLUMNS)
    return match(
        expected,
        ledger,
        window=window,
        match_window=match_window,
        subscription_currency=currencies if currencies is not None else {},
        subscription_company=companies,
    )


def categories(findings: pd.DataFrame) -> list[str]:
    return findings["category"].tolist()


def only(findings: pd.DataFrame, category: str) -> dict[str, Any]:
    rows = findings[findings["category"] == category]
    assert len(rows) == 1, findings
    return finding_records(rows)[0]


# --- rule 1: exact -------------------------------------------------------------------------


def test_exact_match_with_equal_amount_is_no_finding() -> None:
    findings = run([entry("pi_1")], [row("m1", "pi_1")])
    assert list(findings.columns) == FINDING_COLUMNS
    assert findings.empty


def test_exact_match_holds_at_any_distance_in_time() -> None:
    far = T + timedelta(days=30)
    assert run([entry("pi_1")], [row("m1", "pi_1", at=far)]).empty


def test_same_id_different_amount_is_amount_mismatch_in_major_units() -> None:
    findings = run([entry("pi_1", 1050)], [row("m1", "pi_1", 105000)])
    found = only(findings, "amount_mismatch")
    assert found["action"] == "flagged"
    assert found["detail"] == "Moesif holds 1050.00, Stripe 10.50"
    assert (found["stripe_amount_minor"], found["moesif_amount_minor"]) == (1050, 105000)
    assert found["moesif_id"] == "m1"
    assert categories(findings) == ["amount_mismatch"]


def test_same_id_different_type_is_amount_mismatch() -> None:
    findings = run([entry("re_1", 500, entry_type="debit")], [row("m1", "re_1", 500)])
    found = only(findings, "amount_mismatch")
    assert found["detail"] == "Moesif has a credit, Stripe a debit"


def test_amount_mismatch_uses_the_currency_exponent() -> None:
    findings = run([entry("pi_1", 1500, currency="kwd")], [row("m1", "pi_1", 1000)])
    assert only(findings, "amount_mismatch")["detail"] == "Moesif holds 1.000, Stripe 1.500"


# --- rule 2: by amount ---------------------------------------------------------------------


@pytest.mark.parametrize("ledger_id", [None, "", "5f0c2a7e-random", "manual top-up"])
def test_row_without_stripe_id_matches_by_amount(ledger_id: str | None) -> None:
    findings = run([entry("pi_1")], [row("m1", ledger_id, at=T + timedelta(hours=2, minutes=5))])
    found = only(findings, "matched_by_amount")
    assert found["action"] == "none"
    assert found["transaction_id"] == "pi_1"
    assert found["moesif_id"] == "m1"
    assert "2h05m apart" in found["detail"]
    assert postable(findings).empty


@pytest.mark.parametrize(
    "changes",
    [
        {"amount": 999},
        {"entry_type": "debit"},
        {"company": "co_2"},
        {"subscription": "sub_2"},
    ],
)
def test_by_amount_needs_company_subscription_type_and_amount(changes: dict[str, Any]) -> None:
    findings = run([entry("pi_1")], [row("m1", None, **changes)])
    assert categories(findings) == ["missing_in_moesif", "missing_in_stripe"]


def test_other_stripe_id_is_never_matched_by_amount() -> None:
    findings = run([entry("pi_1")], [row("m1", "pi_other")])
    assert categories(findings) == ["missing_in_moesif", "missing_in_stripe"]
    assert only(findings, "missing_in_stripe")["transaction_id"] == "pi_other"


@pytest.mark.parametrize("prefix", ["pi_", "re_", "txn_", "ch_", "py_", "dp_"])
def test_stripe_id_prefixes(prefix: str) -> None:
    assert is_stripe_id(prefix + "123")
    assert not is_stripe_id("x" + prefix + "123")
    assert not is_stripe_id(None)


def test_nearest_pairs_win_globally_not_in_entry_order() -> None:
    # pi_a at 0h, pi_b at 10h; rows at 9h and 20h. Taking entries in time order would pair
    # pi_a with the 9h row; globally nearest first pairs pi_b (1h) and leaves pi_a the 20h row.
    entries = [entry("pi_a"), entry("pi_b", at=T + timedelta(hours=10))]
    rows = [
        row("m9", None, at=T + timedelta(hours=9)),
        row("m20", None, at=T + timedelta(hours=20)),
    ]
    findings = run(entries, rows)
    pairs = dict(zip(findings["transaction_id"], findings["moesif_id"], strict=True))
    assert pairs == {"pi_a": "m20", "pi_b": "m9"}
    assert set(categories(findings)) == {"matched_by_amount"}


def test_one_row_matches_one_entry() -> None:
    entries = [entry("pi_a"), entry("pi_b", at=T + timedelta(hours=1))]
    findings = run(entries, [row("m1", None, at=T + timedelta(minutes=50))])
    assert only(findings, "matched_by_amount")["transaction_id"] == "pi_b"
    assert only(findings, "missing_in_moesif")["transaction_id"] == "pi_a"


def test_match_window_boundary_is_inclusive() -> None:
    window = timedelta(hours=6)
    inside = run([entry("pi_1")], [row("m1", None, at=T + window)], match_window=window)
    assert categories(inside) == ["matched_by_amount"]
    outside = run(
        [entry("pi_1")],
        [row("m1", None, at=T + window + timedelta(seconds=1))],
        match_window=window,
    )
    assert categories(outside) == ["missing_in_moesif", "missing_in_stripe"]


def test_unmapped_entries_do_not_match_rows_without_company() -> None:
    findings = run(
        [entry("pi_1", company=None, subscription=None, reason="no moesif_company_id")],
        [row("m1", None, company=None, subscription=None)],
    )
    assert categories(findings) == ["missing_in_stripe", "unmapped_customer"]


# --- rule 3: duplicates and missing_in_stripe ----------------------------------------------


def test_same_id_twice_is_one_duplicate() -> None:
    later = T + timedelta(minutes=1)
    findings = run([entry("pi_1")], [row("m1", "pi_1"), row("m2", "pi_1", at=later)])
    found = only(findings, "duplicate_in_moesif")
    assert found["action"] == "flagged"
    assert found["moesif_id"] == "m2"
    assert found["transaction_id"] == "pi_1"
    assert found["detail"] == "2 ledger rows for pi_1"
    assert categories(findings) == ["duplicate_in_moesif"]


def test_the_row_that_agrees_is_the_match_and_the_other_the_duplicate() -> None:
    rows = [row("m1", "pi_1", 5), row("m2", "pi_1", 1000, at=T + timedelta(minutes=1))]
    findings = run([entry("pi_1")], rows)
    assert categories(findings) == ["duplicate_in_moesif"]
    assert only(findings, "duplicate_in_moesif")["moesif_id"] == "m1"


def test_random_id_retry_of_an_exact_match_is_a_duplicate() -> None:
    refund = entry("re_1", 300, entry_type="debit", stripe_object_id="re_1")
    rows = [
        row("m1", "re_1", 300, entry_type="debit"),
        row("m2", "9b1d-retry", 300, entry_type="debit", at=T + timedelta(hours=3)),
    ]
    findings = run([refund], rows)
    found = only(findings, "duplicate_in_moesif")
    assert found["moesif_id"] == "m2"
    assert found["transaction_id"] == "re_1"
    assert found["stripe_object_id"] == "re_1"
    assert found["detail"] == "2 ledger rows for re_1; this row has transaction id 9b1d-retry"
    assert categories(findings) == ["duplicate_in_moesif"]


def test_duplicate_names_the_stripe_object_when_it_differs() -> None:
    dispute = entry("txn_1", 300, entry_type="debit", stripe_object_id="dp_1")
    rows = [row("m1", "txn_1", 300, entry_type="debit")] * 1 + [
        row("m2", None, 300, entry_type="debit", at=T + timedelta(hours=1))
    ]
    found = only(run([dispute], rows), "duplicate_in_moesif")
    assert (
        found["detail"] == "2 ledger rows for txn_1 (Stripe dp_1); this row has no transaction id"
    )


def test_second_anonymous_row_for_a_match_by_amount_is_a_duplicate() -> None:
    rows = [row("m1", None, at=T + timedelta(hours=1)), row("m2", None, at=T + timedelta(hours=2))]
    findings = run([entry("pi_1")], rows)
    assert categories(findings) == ["duplicate_in_moesif", "matched_by_amount"]
    assert only(findings, "matched_by_amount")["moesif_id"] == "m1"
    assert only(findings, "duplicate_in_moesif")["moesif_id"] == "m2"


def test_leftover_row_far_from_any_movement_is_missing_in_stripe() -> None:
    rows = [row("m1", "pi_1"), row("m2", None, at=T + timedelta(hours=5), description="gift")]
    findings = run([entry("pi_1")], rows, match_window=timedelta(hours=1))
    found = only(findings, "missing_in_stripe")
    assert found["moesif_id"] == "m2"
    assert found["transaction_id"] is None
    assert found["stripe_amount_minor"] is None
    assert found["moesif_amount_minor"] == 1000
    assert found["detail"] == "no Stripe movement for this credit; description: gift"


@pytest.mark.parametrize("kind", ["promotion", "adjustment", "usage"])
def test_moesif_own_entries_never_drift_and_never_match(kind: str) -> None:
    rows = [
        row("m1", None, entry_type=kind),
        row("m2", "pi_1", entry_type=kind),
        row("m3", None, 777, entry_type=kind),
    ]
    findings = run([entry("pi_1")], rows)
    assert categories(findings) == ["missing_in_moesif"]
    assert only(findings, "missing_in_moesif")["transaction_id"] == "pi_1"


# --- rule 4: unmatched entries ---------------------------------------------------------------


def test_missing_in_moesif_would_post() -> None:
    findings = run([entry("pi_1", 1000, currency="jpy")], [], currencies={"sub_1": "jpy"})
    found = only(findings, "missing_in_moesif")
    assert found["action"] == "would_post"
    assert found["detail"] == "no ledger row; credit of 1000 JPY"
    assert found["moesif_id"] is None
    assert postable(findings)["transaction_id"].tolist() == ["pi_1"]


def test_unmapped_customer_carries_the_reason() -> None:
    findings = run([entry("pi_1", company=None, subscription=None, reason="2 subscriptions")], [])
    found = only(findings, "unmapped_customer")
    assert found["detail"] == "2 subscriptions"
    assert postable(findings).empty


def test_subscription_not_found_in_moesif_is_unmapped() -> None:
    findings = run([entry("pi_1")], [], currencies={"sub_1": None})
    found = only(findings, "unmapped_customer")
    assert found["detail"] == "subscription sub_1 not found in Moesif"
    assert postable(findings).empty


def test_another_companys_subscription_is_unmapped_not_posted() -> None:
    findings = run(
        [entry("pi_1")], [], currencies={"sub_1": "usd"}, companies={"sub_1": "co_other"}
    )
    found = only(findings, "unmapped_customer")
    assert "belongs to company co_other" in found["detail"]
    assert postable(findings).empty
    mine = run([entry("pi_1")], [], currencies={"sub_1": "usd"}, companies={"sub_1": "co_1"})
    assert categories(mine) == ["missing_in_moesif"]


def test_subscription_not_looked_up_is_not_checked() -> None:
    assert categories(run([entry("pi_1")], [], currencies={"sub_9": None})) == ["missing_in_moesif"]


def test_unmatched_entry_in_another_currency_is_flagged_not_posted() -> None:
    findings = run([entry("pi_1", currency="eur")], [], currencies={"sub_1": "usd"})
    found = only(findings, "currency_mismatch")
    assert found["detail"] == "payment in EUR, subscription sub_1 in USD; not posted"
    assert postable(findings).empty


def test_matched_entry_in_another_currency_is_flagged_too() -> None:
    findings = run(
        [entry("pi_1", currency="eur")], [row("m1", "pi_1")], currencies={"sub_1": "usd"}
    )
    found = only(findings, "currency_mismatch")
    assert found["moesif_id"] == "m1"
    assert found["detail"].endswith("ledger holds it")


def test_currency_comparison_ignores_case() -> None:
    assert run([entry("pi_1")], [row("m1", "pi_1")], currencies={"sub_1": "USD"}).empty


# --- rule 5: window edges -------------------------------------------------------------------


def test_entry_before_the_window_consumes_its_row_silently() -> None:
    before = WINDOW.since - timedelta(hours=1)
    findings = run([entry("pi_old", at=before)], [row("m1", None, at=WINDOW.since)])
    assert findings.empty


def test_entries_outside_the_window_produce_no_findings() -> None:
    entries = [
        entry("pi_before", at=WINDOW.since - timedelta(seconds=1)),
        entry("pi_until", at=WINDOW.until),
        entry("pi_since", at=WINDOW.since),
    ]
    findings = run(entries, [])
    assert findings["transaction_id"].tolist() == ["pi_since"]


def test_ledger_rows_outside_the_window_are_not_missing_in_stripe() -> None:
    rows = [
        row("m_before", None, at=WINDOW.since - timedelta(seconds=1)),
        row("m_until", None, at=WINDOW.until),
        row("m_inside", None, at=WINDOW.until - timedelta(seconds=1)),
    ]
    findings = run([], rows)
    assert findings["moesif_id"].tolist() == ["m_inside"]
    assert categories(findings) == ["missing_in_stripe"]


def test_exact_row_outside_the_window_is_fine() -> None:
    assert run([entry("pi_1")], [row("m1", "pi_1", at=WINDOW.since - timedelta(days=9))]).empty


def test_duplicate_row_inside_the_window_of_an_earlier_entry_is_reported() -> None:
    before = WINDOW.since - timedelta(hours=2)
    rows = [row("m1", "pi_1", at=before), row("m2", None, at=WINDOW.since)]
    findings = run([entry("pi_1", at=before)], rows)
    assert categories(findings) == ["duplicate_in_moesif"]


# --- the frame as a whole -------------------------------------------------------------------


def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    entries = [
        entry("pi_ok"),
        entry("pi_missing", 2500, at=T + timedelta(hours=1)),
        entry("pi_jpy", 1000, currency="jpy", subscription="sub_jp"),
        entry("pi_bad", 1050, at=T - timedelta(hours=1)),
        entry("pi_anon", 4200, at=T + timedelta(hours=2)),
        entry("re_1", 300, entry_type="debit", at=T + timedelta(hours=3)),
        entry("pi_lost", company=None, subscription=None, reason="no moesif_company_id"),
        entry("pi_tie_a", 10, at=T + timedelta(hours=4)),
        entry("pi_tie_b", 10, at=T + timedelta(hours=4)),
    ]
    rows = [
        row("m_ok", "pi_ok"),
        row("m_dup", "pi_ok", at=T + timedelta(minutes=3)),
        row("m_bad", "pi_bad", 105000),
        row("m_anon", None, 4200, at=T + timedelta(hours=3)),
        row("m_retry", "uuid-1", 300, entry_type="debit", at=T + timedelta(hours=3)),
        row("m_re", "re_1", 300, entry_type="debit", at=T + timedelta(hours=3)),
        row("m_gift", None, 999, at=T + timedelta(hours=5)),
        row("m_promo", None, 100, entry_type="promotion"),
        row("m_tie_1", None, 10, at=T + timedelta(hours=5)),
        row("m_tie_2", None, 10, at=T + timedelta(hours=5)),
    ]
    return entries, rows


def test_findings_sort_by_category_then_time() -> None:
    entries, rows = scenario()
    findings = run(entries, rows, currencies={"sub_1": "usd", "sub_jp": "usd"})
    assert categories(findings) == [
        "missing_in_moesif",
        "amount_mismatch",
        "duplicate_in_moesif",
        "duplicate_in_moesif",
        "missing_in_stripe",
        "currency_mismatch",
        "unmapped_customer",
        "matched_by_amount",
        "matched_by_amount",
        "matched_by_amount",
    ]
    duplicates = findings[findings["category"] == "duplicate_in_moesif"]
    assert duplicates["transaction_id"].tolist() == ["pi_ok", "re_1"]
    ties = findings[findings["transaction_id"].isin(["pi_tie_a", "pi_tie_b"])]
    assert ties["moesif_id"].tolist() == ["m_tie_1", "m_tie_2"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shuffled_input_gives_the_same_findings(seed: int) -> None:
    entries, rows = scenario()
    currencies: dict[str, str | None] = {"sub_1": "usd", "sub_jp": "usd"}
    expected = run(entries, rows, currencies=currencies)
    shuffled = match(
        pd.DataFrame(entries, columns=EXPECTED_COLUMNS).sample(frac=1, random_state=seed),
        pd.DataFrame(rows, columns=LEDGER_COLUMNS).sample(frac=1, random_state=seed),
        window=WINDOW,
        match_window=HOURS_48,
        subscription_currency=currencies,
    )
    pd.testing.assert_frame_equal(shuffled, expected)


def test_findings_types_and_plain_records() -> None:
    findings = run([entry("pi_1")], [row("m1", None, 5, at=T + timedelta(hours=1))])
    assert str(findings["stripe_amount_minor"].dtype) == "Int64"
    assert str(findings["stripe_created_at"].dtype) == "datetime64[us, UTC]"
    records = finding_records(findings)
    missing = next(record for record in records if record["category"] == "missing_in_moesif")
    assert missing["stripe_created_at"] == T
    assert missing["stripe_created_at"].tzinfo is not None
    assert type(missing["stripe_amount_minor"]) is int
    assert missing["moesif_amount_minor"] is None
    assert missing["moesif_created_at"] is None


def test_empty_inputs_give_an_empty_findings_frame() -> None:
    findings = run([], [])
    assert list(findings.columns) == FINDING_COLUMNS
    assert findings.empty
    assert postable(findings).empty


def test_timestamps_as_datetime64_columns_are_accepted() -> None:
    expected = pd.DataFrame([entry("pi_1")], columns=EXPECTED_COLUMNS)
    expected["created_at"] = pd.to_datetime(expected["created_at"]).astype("datetime64[ns, UTC]")
    ledger = pd.DataFrame([row("m1", "pi_1")], columns=LEDGER_COLUMNS)
    assert match(
        expected, ledger, window=WINDOW, match_window=HOURS_48, subscription_currency={}
    ).empty


def test_missing_columns_and_naive_times_are_refused() -> None:
    ledger = pd.DataFrame([], columns=LEDGER_COLUMNS)
    with pytest.raises(ValueError, match="lacks columns: currency"):
        match(
            pd.DataFrame([entry("pi_1")]).drop(columns=["currency"]),
            ledger,
            window=WINDOW,
            match_window=HOURS_48,
            subscription_currency={},
        )
    naive = pd.DataFrame([entry("pi_1", at=T.replace(tzinfo=None))], columns=EXPECTED_COLUMNS)
    with pytest.raises(ValueError, match="naive"):
        match(naive, ledger, window=WINDOW, match_window=HOURS_48, subscription_currency={})


# --- purity ---------------------------------------------------------------------------------


def test_matcher_imports_no_io() -> None:
    package = Path(reconcile.matching.__file__).parent
    imported: set[str] = set()
    for module in sorted(package.glob("*.py")):
        source = module.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
    own = {name for name in imported if name.startswith("reconcile.matching.")}
    assert own == {f"reconcile.matching.{module.stem}" for module in package.glob("*.py")} - {
        "reconcile.matching.__init__"
    }
    assert imported - own == {
        "__future__",
        "collections.abc",
        "datetime",
        "typing",
        "numpy",
        "numpy.typing",
        "pandas",
        "pyarrow",  # computing on Arrow columns in memory (pyarrow.fs and the formats unused)
        "pyarrow.compute",
        "reconcile.domain.ids",
        "reconcile.domain.values",
        "reconcile.domain.vocab",
        "reconcile.domain.money",
        "reconcile.rules.correction",
        "reconcile.rules.delta",
        "reconcile.rules.destination",
        "reconcile.domain.times",
    }


def test_importing_the_matcher_loads_no_io_library() -> None:
    probe = (
        "import sys, reconcile.matching; "
        "print(sorted(m for m in ('sqlalchemy', 'httpx', 'stripe', 'psycopg') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


# --- content order and keys (the matcher works on integer codes) ----------------------------


def test_ties_in_time_resolve_by_id_whatever_the_input_order() -> None:
    entries = [entry(f"pi_{n}", 10) for n in "dcba"]
    rows = [row(f"m_{n}", None, 10, at=T + timedelta(hours=1)) for n in "zyx"]
    findings = run(entries, rows)
    pairs = findings[findings["category"] == "matched_by_amount"]
    assert pairs["transaction_id"].tolist() == ["pi_a", "pi_b", "pi_c"]
    assert pairs["moesif_id"].tolist() == ["m_x", "m_y", "m_z"]
    assert only(findings, "missing_in_moesif")["transaction_id"] == "pi_d"
    for seed in range(3):
        shuffled = match(
            pd.DataFrame(entries, columns=EXPECTED_COLUMNS).sample(frac=1, random_state=seed),
            pd.DataFrame(rows, columns=LEDGER_COLUMNS).sample(frac=1, random_state=seed),
            window=WINDOW,
            match_window=HOURS_48,
            subscription_currency={},
        )
        pd.testing.assert_frame_equal(shuffled, findings)


def test_repeated_ids_keep_the_earliest_entry_and_row() -> None:
    entries = [entry("pi_1", 500, at=T + timedelta(hours=1)), entry("pi_1", 700)]
    rows = [row("m1", "pi_x", 5, at=T + timedelta(hours=2)), row("m1", "pi_y", 6)]
    findings = run(entries, rows)
    assert only(findings, "missing_in_moesif")["stripe_amount_minor"] == 700
    assert only(findings, "missing_in_stripe")["moesif_amount_minor"] == 6


def test_string_dtype_columns_match_like_object_columns() -> None:
    entries, rows = scenario()
    currencies: dict[str, str | None] = {"sub_1": "usd", "sub_jp": "usd"}
    expected = pd.DataFrame(entries, columns=EXPECTED_COLUMNS)
    ledger = pd.DataFrame(rows, columns=LEDGER_COLUMNS)
    as_objects = run(entries, rows, currencies=currencies)
    for frame in (expected, ledger):
        for column in frame.columns:
            if column not in ("amount_minor", "created_at"):
                frame[column] = frame[column].astype("str").where(frame[column].notna())
    as_strings = match(
        expected, ledger, window=WINDOW, match_window=HOURS_48, subscription_currency=currencies
    )
    pd.testing.assert_frame_equal(as_strings, as_objects)


def test_empty_and_non_text_keys_count_as_text() -> None:
    rows = [row("m1", "", company="", at=T + timedelta(hours=1)), row(7, None, 900)]  # type: ignore[arg-type]
    findings = run([entry("pi_1")], rows)
    assert categories(findings) == ["missing_in_moesif", "missing_in_stripe", "missing_in_stripe"]
    assert sorted(findings["moesif_id"].dropna().tolist()) == ["7", "m1"]
    assert findings.loc[findings["moesif_id"] == "m1", "company_id"].tolist() == [None]


# --- corrections posted from the exception queue (section 10a) ------------------------------


def _fid(category: str, transaction_id: str | None, moesif_id: str | None) -> str:
    from reconcile.domain.ids import finding_id

    return finding_id(category, transaction_id, moesif_id)


def test_a_correction_row_settles_its_amount_mismatch_and_is_no_missing_in_stripe() -> None:
    mismatch = _fid("amount_mismatch", "pi_1", "m1")
    cents = [entry("pi_1", 1050)], [row("m1", "pi_1", 105000)]
    assert categories(run(*cents)) == ["amount_mismatch"]

    corrected = run(
        cents[0], [*cents[1], row("m2", f"corr_{mismatch}", 103950, entry_type="debit")]
    )

    assert categories(corrected) == []


def test_a_partial_or_unknown_correction_settles_nothing() -> None:
    mismatch = _fid("amount_mismatch", "pi_1", "m1")
    partial = run(
        [entry("pi_1", 1050)],
        [
            row("m1", "pi_1", 105000),
            row("m2", f"corr_{mismatch}", 1000, entry_type="debit"),
            row("m3", "corr_F-0123456789abcdef", 500),
        ],
    )
    assert categories(partial) == ["amount_mismatch"]


def test_a_moved_misapplied_row_settles_both_findings() -> None:
    entries = [entry("pi_1", 1200, company="co_2", subscription="sub_2")]
    rows = [row("m1", "pi_1", 1200)]
    before = run(entries, rows, companies={"sub_1": "co_1", "sub_2": "co_2"})
    assert sorted(categories(before)) == ["misapplied", "missing_in_moesif"]
    moved = _fid("misapplied", "pi_1", "m1")
    legs = [
        row("m2", f"corr_{moved}", 1200, entry_type="debit"),
        row("m3", f"corr_{moved}_2", 1200, company="co_2", subscription="sub_2"),
    ]

    after = run(entries, [*rows, *legs], companies={"sub_1": "co_1", "sub_2": "co_2"})

    assert categories(after) == []
