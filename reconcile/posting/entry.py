"""One balance transaction a caller asks the engine to post, and its amount as Moesif takes it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from reconcile.money import to_major

AmountUnit = Literal["major", "minor"]
"""How Moesif amounts are written: currency units (10.50) or minor units (1050)."""


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


def moesif_amount(amount_minor: int, currency: str, unit: AmountUnit) -> Decimal:
    """Return the amount as Moesif expects it: currency units, or minor units for old setups."""
    return to_major(amount_minor, currency) if unit == "major" else Decimal(amount_minor)
