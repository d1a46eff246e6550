"""The plain values the reconciliation core works on: entries, ledger rows, findings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

STRIPE_ID_PREFIXES = ("pi_", "re_", "txn_", "ch_", "py_", "dp_")
"""How the id of a Stripe movement begins, wherever one is recognised."""


def is_stripe_id(transaction_id: str | None) -> bool:
    """Return whether a ledger ``transaction_id`` looks like the id of a Stripe movement."""
    return bool(transaction_id) and str(transaction_id).startswith(STRIPE_ID_PREFIXES)


def names_stripe_id(text: str | None) -> bool:
    """Return whether a text (a row's description) names some Stripe movement's id."""
    return bool(text) and any(prefix in str(text) for prefix in STRIPE_ID_PREFIXES)


class EntryType(StrEnum):
    """The kind of a Moesif balance movement."""

    CREDIT = "credit"
    DEBIT = "debit"
    PROMOTION = "promotion"
    ADJUSTMENT = "adjustment"
    USAGE = "usage"


class Source(StrEnum):
    """Which Stripe movement an expected entry mirrors."""

    TOPUP = "topup"
    REFUND = "refund"
    DISPUTE = "dispute"
    DISPUTE_REVERSAL = "dispute_reversal"
    REFUND_FAILURE = "refund_failure"


class Category(StrEnum):
    """Drift categories of the report (contract section 6)."""

    MISSING_IN_MOESIF = "missing_in_moesif"
    AMOUNT_MISMATCH = "amount_mismatch"
    DUPLICATE_IN_MOESIF = "duplicate_in_moesif"
    MISSING_IN_STRIPE = "missing_in_stripe"
    CURRENCY_MISMATCH = "currency_mismatch"
    UNMAPPED_CUSTOMER = "unmapped_customer"
    MATCHED_BY_AMOUNT = "matched_by_amount"
    MISAPPLIED = "misapplied"
    UNREADABLE = "unreadable"
    BALANCE_BREAK = "balance_break"
    """Moesif's running balance of a subscription does not add up (contract section 11)."""


class Action(StrEnum):
    """What the run did about a finding."""

    POSTED = "posted"
    WOULD_POST = "would_post"
    POST_FAILED = "post_failed"
    FLAGGED = "flagged"
    NONE = "none"
    RESOLVED = "resolved"
    """A finding open before this run that it found settled: reported once more, then closed."""
    REOPENED = "reopened"
    """A finding closed before (an operator's ``resolve``, or a run) whose drift is there."""


REVIEW_ACTIONS = frozenset({Action.FLAGGED, Action.WOULD_POST, Action.POST_FAILED, Action.REOPENED})
"""Actions that leave a finding for someone to review: they count for exit 1 and are notified."""


@dataclass(frozen=True)
class ExpectedEntry:
    """A credit or debit Moesif should hold because of one Stripe movement.

    ``company_id`` and ``subscription_id`` are ``None`` when the customer does not map to exactly
    one Moesif subscription; ``unmapped_reason`` then says why.
    """

    transaction_id: str
    source: Source
    entry_type: EntryType
    amount_minor: int
    currency: str
    created_at: datetime
    stripe_object_id: str
    topup_id: str
    stripe_customer_id: str | None
    company_id: str | None
    subscription_id: str | None
    unmapped_reason: str | None = None


class UnreadableSource(StrEnum):
    """Which side an unreadable record came from."""

    STRIPE = "stripe"
    MOESIF = "moesif"


@dataclass(frozen=True)
class Unreadable:
    """A Stripe object or Moesif row the job cannot interpret safely (contract sections 4, 5).

    Never posted and never a reason to stop the run; it becomes an ``unreadable`` finding.
    Every text field is safe to store and show: NUL bytes and invalid Unicode are escaped.

    Attributes:
        source: ``stripe`` or ``moesif``.
        object_id: the Stripe object id or the Moesif row id.
        reason: one line saying what could not be interpreted.
        company_hint: the Moesif company it most likely concerns, when known.
        customer_id: the Stripe customer, when known.
        created_at: when the object was created, when known.
        excerpt: a short, safe excerpt of the raw record.
        transaction_id: the ledger transaction id it names or would have, when known; such an
            id is never posted while the record is unreadable.
        subscription_hint: the Moesif subscription it most likely concerns, when known.
    """

    source: UnreadableSource
    object_id: str
    reason: str
    company_hint: str | None = None
    customer_id: str | None = None
    created_at: datetime | None = None
    excerpt: str = ""
    transaction_id: str | None = None
    subscription_hint: str | None = None


@dataclass(frozen=True)
class LedgerRow:
    """One Moesif billing-report row, normalised.

    ``amount_minor`` is positive for every type; a debit is a debit by its ``entry_type``.
    ``amount_raw`` is the amount exactly as Moesif sent it, for the report.
    """

    moesif_id: str
    transaction_id: str | None
    entry_type: EntryType
    amount_minor: int
    amount_raw: str
    currency: str | None
    company_id: str | None
    subscription_id: str | None
    created_at: datetime
    description: str | None
    sequence_id: int | None = None
    """The ``sequence_id`` of the row's ending balance; ``None`` when it carries none."""
    beginning_current_minor: int | None = None
    beginning_pending_minor: int | None = None
    beginning_available_minor: int | None = None
    ending_current_minor: int | None = None
    ending_pending_minor: int | None = None
    ending_available_minor: int | None = None
    balance_changes: tuple[int, ...] | None = None
    """The amounts of the row's ``balance_changes`` in minor units; ``None`` when absent."""


BALANCE_COLUMNS = [
    "sequence_id",
    "beginning_current_minor",
    "beginning_pending_minor",
    "beginning_available_minor",
    "ending_current_minor",
    "ending_pending_minor",
    "ending_available_minor",
    "balance_changes",
]
"""Columns of ``ledger_rows`` holding a row's running balance (contract section 11)."""


EXPECTED_COLUMNS = [
    "transaction_id",
    "source",
    "entry_type",
    "amount_minor",
    "currency",
    "created_at",
    "stripe_object_id",
    "topup_id",
    "stripe_customer_id",
    "company_id",
    "subscription_id",
    "unmapped_reason",
]
"""Columns of the expected-entries frame the matcher takes."""

LEDGER_COLUMNS = [
    "moesif_id",
    "transaction_id",
    "entry_type",
    "amount_minor",
    "amount_raw",
    "currency",
    "company_id",
    "subscription_id",
    "created_at",
    "description",
]
"""Columns of the ledger frame the matcher takes."""

FINDING_COLUMNS = [
    "category",
    "action",
    "company_id",
    "subscription_id",
    "stripe_customer_id",
    "stripe_object_id",
    "transaction_id",
    "entry_type",
    "currency",
    "stripe_amount_minor",
    "moesif_amount_minor",
    "stripe_created_at",
    "moesif_created_at",
    "moesif_id",
    "detail",
]
"""Columns of the findings frame the matcher returns (amounts in minor units, times aware UTC)."""

FINDING_SCHEMA: dict[str, str] = {
    column: (
        "Int64"
        if column.endswith("_amount_minor")
        else "datetime64[us, UTC]"
        if column.endswith("_created_at")
        else "object"
    )
    for column in FINDING_COLUMNS
}
"""The findings frame's type, column by column: text (``str`` or ``None``), amounts, times."""

REPORT_COLUMNS = [
    "run_id",
    "category",
    "action",
    "company_id",
    "subscription_id",
    "stripe_customer_id",
    "stripe_object_id",
    "transaction_id",
    "entry_type",
    "currency",
    "stripe_amount",
    "moesif_amount",
    "delta",
    "stripe_created_at",
    "moesif_created_at",
    "detail",
    "finding_id",
    "first_seen_at",
]
"""Columns of the CSV drift report, in the contract's order."""
