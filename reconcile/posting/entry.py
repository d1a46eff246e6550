"""How an entry's amount is written for Moesif: currency units, or minor units for old setups."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from reconcile.domain.money import to_major

AmountUnit = Literal["major", "minor"]
"""How Moesif amounts are written: currency units (10.50) or minor units (1050)."""


def moesif_amount(amount_minor: int, currency: str, unit: AmountUnit) -> Decimal:
    """Return the amount as Moesif expects it: currency units, or minor units for old setups."""
    return to_major(amount_minor, currency) if unit == "major" else Decimal(amount_minor)
