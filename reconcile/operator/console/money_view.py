"""How the console shows money: major units with their currency, signed deltas, totals apart.

Plain values in, plain values out. Every amount a page shows is ``1,050.00 USD`` (major units,
grouped, with its currency); a delta carries its sign as section 7 gives it (positive: the
customer is owed credit; negative: Moesif holds too much). Amounts of different currencies are
never added or compared: totals are per currency, and balance rows are ordered within their
currency.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from reconcile.domain.money import is_iso_currency, readable_amount
from reconcile.domain.values import Entry

__all__ = [
    "BalanceView",
    "CurrencyTotals",
    "FindingMoney",
    "balance_view",
    "finding_money",
    "headline",
    "shown",
    "signed_text",
]


def _code(currency: str | None) -> str | None:
    return currency.lower() if currency and is_iso_currency(currency) else None


def shown(minor: int | None, currency: str | None) -> str:
    """Return an amount as a person reads it: ``1,050.00 USD``; minor units without a currency."""
    if minor is None:
        return ""
    code = _code(currency)
    if code is None:
        return f"{minor} (minor units, currency unknown)"
    return readable_amount(minor, code)


def signed_text(minor: int | None, currency: str | None) -> str:
    """Return a delta with its sign: ``+20.00 USD``, ``-1,039.50 USD``, ``0.00 USD``."""
    text = shown(minor, currency)
    return f"+{text}" if minor is not None and minor > 0 and _code(currency) else text


@dataclass(frozen=True)
class FindingMoney:
    """A finding's two sides and its difference, in the same units."""

    stripe: str
    moesif: str
    delta: str
    meaning: str


def finding_money(
    stripe_minor: int | None,
    moesif_minor: int | None,
    delta_minor: int | None,
    currency: str | None,
) -> FindingMoney:
    """Return what a finding's page shows at its top: both sides and the signed difference."""
    if delta_minor is None:
        meaning = "the difference is not known (an amount is missing or unreadable)"
    elif delta_minor > 0:
        meaning = f"the customer is owed {shown(delta_minor, currency)} of credit"
    elif delta_minor < 0:
        meaning = f"Moesif holds {shown(-delta_minor, currency)} too much"
    else:
        meaning = "the two sides agree in amount"
    return FindingMoney(
        stripe=shown(stripe_minor, currency) or "none",
        moesif=shown(moesif_minor, currency) or "none",
        delta=signed_text(delta_minor, currency) or "unknown",
        meaning=meaning,
    )


@dataclass(frozen=True)
class CurrencyTotals:
    """One currency's line of the front page's headline."""

    currency: str
    owed_to_customers: str
    over_credited: str
    posted: str
    blocked_owed: int
    """Open findings owing credit to a customer Moesif blocks."""


def headline(
    open_deltas: Iterable[tuple[str | None, int | None, bool]], posted: Sequence[Entry]
) -> list[CurrencyTotals]:
    """Return per currency what customers are owed, what Moesif holds too much, what was posted.

    Args:
        open_deltas: ``(currency, delta_minor, blocked)`` of each open finding; those without a
            currency code or delta are left out.
        posted: the entries the last run posted automatically (signed: a debit takes away).
    """
    owed: dict[str, int] = defaultdict(int)
    over: dict[str, int] = defaultdict(int)
    net: dict[str, int] = defaultdict(int)
    blocked_owed: dict[str, int] = defaultdict(int)
    for currency, delta, blocked in open_deltas:
        code = _code(currency)
        if code is None or delta is None:
            continue
        (owed if delta > 0 else over)[code] += delta
        blocked_owed[code] += 1 if blocked and delta > 0 else 0
    for entry in posted:
        code = _code(entry.currency)
        if code is not None:
            net[code] += -entry.amount_minor if entry.entry_type == "debit" else entry.amount_minor
    return [
        CurrencyTotals(
            currency=code.upper(),
            owed_to_customers=signed_text(owed[code], code),
            over_credited=signed_text(over[code], code),
            posted=signed_text(net[code], code),
            blocked_owed=blocked_owed[code],
        )
        for code in sorted(set(owed) | set(over) | set(net) | set(blocked_owed))
    ]


@dataclass(frozen=True)
class BalanceView:
    """The balances page: ordered rows, and rows in another currency than their subscription."""

    rows: list[dict[str, Any]]
    currency_mismatch: list[dict[str, Any]]


_BALANCE_FIGURES = ("current_balance", "pending_activity", "available_balance")
_AMOUNTS = ("stripe_net", "moesif_net", "delta", *_BALANCE_FIGURES)


def balance_view(
    rows: Iterable[Mapping[str, Any]], subscription_currency: Mapping[str, str | None]
) -> BalanceView:
    """Return balance rows marked and ordered for the page.

    Each row gains ``blocked`` (``"blocked"`` when Moesif shows no available credit) and
    ``owed`` (``"owed"`` when the customer is owed credit, ``"over-credited"`` when Moesif holds
    too much) as text. Rows with a non-zero delta come first, blocked customers (available
    balance zero or less) first among them, then each currency's rows by the size of their delta
    in major units. Amounts are shown as a person reads them, grouped (``1,050.00``) in the row's
    own currency, the delta signed as section 7 gives it (``+25.00``, ``-1,039.50``). A row in a
    currency other than its subscription's (a ``currency_mismatch``;
    the subscription's currency is the row's own ``subscription_currency`` column when it has
    one, else the ``subscription_currency`` mapping's) is shown apart and without Moesif's
    figures, which are the subscription's, in its own currency.
    """
    kept: list[dict[str, Any]] = []
    apart: list[dict[str, Any]] = []
    for row in rows:
        marked = {name: _unquoted(value) for name, value in row.items()}
        currency = str(marked.get("currency") or "").lower()
        own = str(marked.get("subscription_currency") or "") or subscription_currency.get(
            str(marked.get("subscription_id") or "")
        )
        delta = _decimal(marked.get("delta"))
        if own and currency and own.lower() != currency:
            for figure in (*_BALANCE_FIGURES, "as_of"):
                marked[figure] = ""
            marked.update(
                blocked="",
                owed=_owed(delta),
                blocked_but_owed=False,
                subscription_currency=own.upper(),
                mismatch="currency_mismatch",
            )
            apart.append(marked)
            continue
        available = _decimal(marked.get("available_balance"))
        blocked = available is not None and available <= 0
        marked.update(
            blocked="blocked" if blocked else "",
            owed=_owed(delta),
            blocked_but_owed=blocked and delta is not None and delta > 0,
        )
        kept.append(marked)
    return BalanceView(
        [_readable(row) for row in sorted(kept, key=_balance_key)],
        [_readable(row) for row in sorted(apart, key=_balance_key)],
    )


def _readable(row: Mapping[str, Any]) -> dict[str, Any]:
    """Return a row with its amounts grouped and its delta signed; other cells as they are."""
    shown_row = dict(row)
    for name in _AMOUNTS:
        amount = _decimal(row.get(name))
        if amount is not None:
            text = format(amount, ",")
            shown_row[name] = f"+{text}" if name == "delta" and amount > 0 else text
    return shown_row


def _unquoted(value: object) -> object:
    """Return a CSV cell without the quote that kept a signed number from running as a formula."""
    if isinstance(value, str) and value.startswith("'") and _decimal(value) is not None:
        return value[1:]
    return value


def _owed(delta: Decimal | None) -> str:
    if delta is None or delta == 0:
        return ""
    return "owed" if delta > 0 else "over-credited"


def _balance_key(row: Mapping[str, Any]) -> tuple[bool, bool, str, Decimal, str, str]:
    delta = _decimal(row.get("delta")) or Decimal(0)
    return (
        delta == 0,
        not row.get("blocked"),
        str(row.get("currency") or ""),
        -abs(delta),
        str(row.get("company_id") or ""),
        str(row.get("subscription_id") or ""),
    )


def _decimal(value: object) -> Decimal | None:
    if isinstance(value, Decimal):
        return value
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return Decimal(value.strip().lstrip("'"))
    except InvalidOperation:
        return None
