"""Money at the edges: Stripe minor units to exact decimal major units and back."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from functools import cache

import pycountry

ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())

MAX_MINOR_UNITS = 10**12 - 1
"""The largest amount the job handles, in minor units (12 digits): anything larger is a typo
or an attack, never a top-up, and stays far below the database's 64-bit integers."""


@cache
def _iso_codes() -> frozenset[str]:
    return frozenset(currency.alpha_3.lower() for currency in pycountry.currencies)


def is_iso_currency(code: object) -> bool:
    """Return whether ``code`` is an ISO 4217 currency code (any case), per ``pycountry``."""
    return isinstance(code, str) and code.isascii() and code.lower() in _iso_codes()


def minor_amount_problem(value: object) -> str | None:
    """Return why ``value`` is no usable Stripe amount in minor units, or ``None`` when it is.

    Usable means a whole number (not a bool, not a fraction), not negative, at most 12 digits.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        return f"the amount {str(value)[:40]!r} is not a whole number of minor units"
    if value < 0:
        return f"the amount {value} is negative"
    if value > MAX_MINOR_UNITS:
        return f"the amount {str(value)[:40]} has more than 12 digits"
    return None


def exponent(currency: str) -> int:
    """Return how many decimal places a currency's major unit has (ISO 4217 as Stripe uses it)."""
    code = currency.lower()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def to_major(minor: int, currency: str) -> Decimal:
    """Return the exact major-unit amount of ``minor`` units, with the currency's decimal places."""
    places = exponent(currency)
    return Decimal(minor).scaleb(-places).quantize(Decimal(1).scaleb(-places))


def format_major(minor: int, currency: str) -> str:
    """Return a major-unit amount as the decimal string the report shows (``10.50``, ``1000``)."""
    return str(to_major(minor, currency))


def readable_amount(minor: int, currency: str) -> str:
    """Return an amount as a person reads it: major units grouped, with its code (``1,050.00 USD``).

    The console and the CLI's words for a person use this; the report keeps :func:`format_major`.
    """
    return f"{format(to_major(minor, currency), ',')} {currency.upper()}"


def to_minor(major: Decimal, currency: str) -> int:
    """Return the minor units of an exact major amount; raise ValueError if it has more places."""
    scaled = major.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{major} {currency.upper()} has more decimal places than the currency")
    return int(scaled)


def round_to_minor(major: Decimal, currency: str) -> int:
    """Return the nearest minor units of a major amount (half-even), for Moesif amounts."""
    return int(major.scaleb(exponent(currency)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
