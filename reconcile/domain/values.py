"""The plain values the reconciliation core works on: entries, ledger rows, findings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from reconcile.domain.vocab import Action, EntryType, Source, UnreadableSource


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


@dataclass(frozen=True)
class Entry:
    """A credit or debit to post to Moesif, once, under its transaction id."""

    transaction_id: str
    company_id: str
    subscription_id: str
    entry_type: Literal["credit", "debit"]
    amount_minor: int
    currency: str
    description: str
    occurred_at: datetime | None = None
    """When the Stripe movement happened; before a first send, Moesif is read from then on
    (:mod:`reconcile.posting.first_read`). ``None``: from the posting's intent on."""


def entry_type_of(text: str) -> Literal["credit", "debit"]:
    """Return the entry type a stored or reported ``credit``/``debit`` text names."""
    return "debit" if text == "debit" else "credit"


class Sent(Protocol):
    """What became of one order sent to Moesif, as the rules read it (the engine's outcome)."""

    @property
    def transaction_id(self) -> str:
        """The order's transaction id."""
        ...

    @property
    def action(self) -> Action:
        """The drift report's action for it."""
        ...

    @property
    def detail(self) -> str:
        """What happened, in words for the report."""
        ...

    @property
    def unknown(self) -> bool:
        """Whether only a later read-back can tell if Moesif holds it."""
        ...
