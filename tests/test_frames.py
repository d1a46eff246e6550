"""The findings schema at the matcher's boundary, column-wide edits, totals and atomic writes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import pandas as pd
import pytest

from reconcile import frames
from reconcile.domain.values import FINDING_COLUMNS, FINDING_SCHEMA
from reconcile.domain.vocab import Action, Category
from reconcile.files import write_atomically
from reconcile.rules.orders import Decision
from reconcile.totals import category_sums

T = datetime(2026, 11, 24, 2, tzinfo=UTC)


def _findings() -> pd.DataFrame:
    rows = [
        {
            "category": Category.MISSING_IN_MOESIF.value,
            "action": Action.WOULD_POST.value,
            "transaction_id": "pi_1",
            "company_id": "co_1",
            "subscription_id": "sub_1",
            "stripe_object_id": "pi_1",
            "entry_type": "credit",
            "currency": "usd",
            "stripe_amount_minor": 1050,
            "stripe_created_at": T,
            "detail": "was",
        },
        {
            "category": Category.MISSING_IN_STRIPE.value,
            "action": Action.FLAGGED.value,
            "entry_type": "credit",
            "moesif_amount_minor": 200,
            "moesif_created_at": T,
        },
        {
            "category": Category.MISSING_IN_MOESIF.value,
            "action": Action.WOULD_POST.value,
            "transaction_id": "re_1",
            "company_id": "co_1",
            "subscription_id": "sub_1",
            "stripe_object_id": "re_1",
            "entry_type": "debit",
            "currency": "usd",
            "stripe_amount_minor": 300,
            "stripe_created_at": T,
        },
    ]
    return frames.typed_findings(pd.DataFrame(rows).reindex(columns=FINDING_COLUMNS))


def test_findings_take_the_declared_schema() -> None:
    findings = _findings()
    assert {column: str(dtype) for column, dtype in findings.dtypes.items()} == FINDING_SCHEMA
    assert findings.at[1, "transaction_id"] is None
    with pytest.raises(ValueError, match="lack columns: detail"):
        frames.typed_findings(findings.drop(columns="detail"))


def test_missing_findings_become_plain_values_and_decisions_set_whole_columns() -> None:
    findings = _findings()
    index, missing = frames.missing(findings)
    assert list(index) == [0, 2]
    assert [(m.transaction_id, m.amount_minor, m.action) for m in missing] == [
        ("pi_1", 1050, Action.WOULD_POST),
        ("re_1", 300, Action.WOULD_POST),
    ]
    decided = frames.decided(
        findings, index, [Decision(Action.POSTED, None), Decision(Action.FLAGGED, "why")]
    )
    assert decided["action"].tolist() == ["posted", "flagged", "flagged"]
    assert decided["detail"].tolist() == ["was", None, "why"]
    assert findings["action"].tolist()[0] == "would_post"


def test_totals_are_per_category_currency_and_type_never_netted() -> None:
    findings = _findings()
    assert frames.totals(findings) == {
        "missing_in_moesif:usd:credit": "10.50",
        "missing_in_moesif:usd:debit": "3.00",
        "missing_in_stripe:usd:credit": "2.00",
    }
    assert category_sums(findings, stripe_only=False) == {
        ("missing_in_moesif", "usd", "credit"): 1050,
        ("missing_in_moesif", "usd", "debit"): 300,
        ("missing_in_stripe", "usd", "credit"): 200,
    }


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "metrics.prom"
    write_atomically(path, lambda stream: stream.write("old") and None)
    assert path.read_text() == "old"

    def broken(stream: TextIO) -> None:
        stream.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, broken)
    assert path.read_text() == "old"
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.prom"]


def test_finding_records_keep_whole_minor_units_where_a_cell_is_missing() -> None:
    built = frames.from_records(
        [
            {"category": "missing_in_stripe", "moesif_amount_minor": 2000},
            {"category": "missing_in_moesif", "stripe_amount_minor": 2500, "finding_id": "F-1"},
        ],
        ["finding_id"],
    )

    assert dict(built.dtypes[["stripe_amount_minor", "moesif_amount_minor"]]) == {
        "stripe_amount_minor": "Int64",
        "moesif_amount_minor": "Int64",
    }
    cells = built.astype(object).where(built.notna(), None).to_dict("records")
    assert [(cell["stripe_amount_minor"], cell["moesif_amount_minor"]) for cell in cells] == [
        (None, 2000),
        (2500, None),
    ]
    assert all(type(cell["moesif_amount_minor"]) is int for cell in cells[:1])
    assert list(built["finding_id"]) == [None, "F-1"]


def test_present_answers_which_ids_either_column_or_a_later_check_holds() -> None:
    transactions = pd.Series(["credit_1", None, "credit_2"], dtype="string[pyarrow]")
    rows = pd.Series(["row_9", "row_8"], dtype=object)
    present = frames.Present((transactions, rows)) | {"credit_late"}

    asked = ["credit_2", "row_8", "credit_late", "credit_gone", "row_gone", "credit_2"]

    assert present.among(asked) == {"credit_2", "row_8", "credit_late"}
    assert present.among([]) == frozenset()
    assert frames.Present((transactions, rows)).among(["credit_late"]) == frozenset()
