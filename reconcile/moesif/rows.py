"""Moesif billing-report rows: exact JSON numbers, and normalising one row into a LedgerRow."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

from reconcile.domain.money import MAX_MINOR_UNITS, round_to_minor
from reconcile.domain.values import LedgerRow, Unreadable
from reconcile.domain.vocab import EntryType, UnreadableSource
from reconcile.safe_text import escaped, excerpt, text_problem

logger = logging.getLogger(__name__)

DEFAULT_CURRENCY = "usd"
"""The currency of a row that names none and whose subscription names none either."""

SIGNED_TYPE = "balance_transaction"
"""The ``type`` of a balance row whose ``amount`` carries the direction in its sign."""

_TYPED = {
    "credit": EntryType.CREDIT,
    "debit": EntryType.DEBIT,
    "promotion": EntryType.PROMOTION,
    "adjustment": EntryType.ADJUSTMENT,
}
_IDENTIFYING = (
    "company_id",
    "subscription_id",
    "type",
    "amount",
    "created_at",
    "usage_end_time",
    "transaction_id",
    "description",
    "billing_meter_id",
)
_MAX_RAW_LENGTH = 40
_MAX_EXPONENT = 15
"""Amounts of 10^15 or more are out of range before any unit conversion."""
_MAX_JSON_EXPONENT = 40
"""A stored raw row writes larger or tinier numbers in exponent form, as text."""
_TEXT_FIELDS = ("_id", "transaction_id", "company_id", "subscription_id", "description")


def parse_json(text: str) -> object:
    """Parse Moesif's JSON with every fractional number as an exact ``Decimal``."""
    return json.loads(text, parse_float=Decimal)


def dump_json(value: object) -> str:
    """Write ``value`` as JSON, each ``Decimal`` as the exact number it holds (never a float).

    Raises:
        TypeError: ``value`` holds a float or something JSON cannot carry.
        ValueError: a ``Decimal`` is not finite.
    """
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, float):
        raise TypeError("refusing to write a binary float into Moesif JSON; use Decimal")
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(key))}: {dump_json(item)}" for key, item in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(dump_json(item) for item in value) + "]"
    return json.dumps(value)


def decimal_text(amount: Decimal) -> str:
    """Return ``amount`` as a plain decimal string (``10.50``, ``-3``), never exponent notation."""
    if not amount.is_finite():
        raise ValueError(f"{amount} is not a finite amount")
    return format(amount, "f")


def normalise(
    row: Mapping[str, Any],
    *,
    amount_unit: Literal["major", "minor"],
    currency_for: Callable[[str], str | None],
) -> LedgerRow:
    """Turn one raw billing-report row into a :class:`LedgerRow`.

    Args:
        row: the row as Moesif sent it, parsed with :func:`parse_json`.
        amount_unit: ``major`` when Moesif amounts are currency units, ``minor`` when cents.
        currency_for: the currency of a subscription id, asked only when the row names no
            currency itself but names a subscription (a ``dict.get`` will do).

    Raises:
        ValueError: the row cannot be interpreted safely (no usable time, an amount that does
            not parse or is out of range, text the database cannot hold); the message names
            the row's id.
    """
    moesif_id = row_id(row)
    _check_texts(row, moesif_id)
    amount = _amount(row, moesif_id)
    entry_type, amount = _entry_type(row, amount, moesif_id)
    subscription_id = _text(row.get("subscription_id"))
    currency = _currency(row) or _subscription_currency(subscription_id, currency_for)
    minor = _minor(amount, amount_unit, currency)
    if minor > MAX_MINOR_UNITS:
        raise ValueError(f"Moesif row {moesif_id} has an amount with more than 12 digits")
    figures = _balance_figures(row, amount_unit, currency, moesif_id)
    return LedgerRow(
        moesif_id=moesif_id,
        transaction_id=_text(row.get("transaction_id")),
        entry_type=entry_type,
        amount_minor=minor,
        amount_raw=_raw(row.get("amount"), moesif_id),
        currency=currency,
        company_id=_text(row.get("company_id")),
        subscription_id=subscription_id,
        created_at=_created_at(row, moesif_id),
        description=_text(row.get("description")),
        **figures,
    )


def _balance_figures(
    row: Mapping[str, Any], amount_unit: Literal["major", "minor"], currency: str, moesif_id: str
) -> dict[str, Any]:
    """Return the row's running balance as :class:`LedgerRow` fields, in minor units.

    Each figure Moesif leaves out (or sends as something that is not a number) stays ``None``;
    the row itself is read all the same, since matching never needs its balance.
    """

    def minor(value: object, name: str) -> int | None:
        amount = _balance_number(value)
        if amount is None:
            if value is not None:
                logger.warning("Moesif row %s has a %s that is not a number", moesif_id, name)
            return None
        figure = _minor(amount, amount_unit, currency)
        return figure if abs(figure) <= MAX_MINOR_UNITS else None

    figures: dict[str, Any] = {}
    for side in ("beginning", "ending"):
        balance = row.get(f"{side}_balance")
        balance = balance if isinstance(balance, Mapping) else {}
        for name in ("current", "pending", "available"):
            field = "pending_activity" if name == "pending" else f"{name}_balance"
            figures[f"{side}_{name}_minor"] = minor(balance.get(field), f"{side} {field}")
    ending = row.get("ending_balance")
    sequence = ending.get("sequence_id") if isinstance(ending, Mapping) else None
    valid = isinstance(sequence, int) and not isinstance(sequence, bool)
    figures["sequence_id"] = (
        sequence
        if isinstance(sequence, int) and valid and abs(sequence) <= MAX_MINOR_UNITS
        else None
    )
    changes = row.get("balance_changes")
    if isinstance(changes, list):
        amounts = [
            minor(change.get("amount") if isinstance(change, Mapping) else None, "change")
            for change in changes
        ]
        kept = [amount for amount in amounts if amount is not None]
        figures["balance_changes"] = tuple(kept) if len(kept) == len(amounts) else None
    return figures


def _balance_number(value: object) -> Decimal | None:
    """Return a balance figure as an exact ``Decimal``, or ``None`` when it is not a number."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        return None
    amount = Decimal(value)
    if not amount.is_finite() or (amount != 0 and amount.adjusted() >= _MAX_EXPONENT):
        return None
    return amount


def unreadable_row(row: Mapping[str, Any], reason: str) -> Unreadable:
    """Return a Moesif row that cannot be interpreted as an :class:`Unreadable`, safe to store."""
    transaction_id = _text(row.get("transaction_id"))
    company_id = _text(row.get("company_id"))
    subscription_id = _text(row.get("subscription_id"))
    return Unreadable(
        source=UnreadableSource.MOESIF,
        object_id=escaped(row_id(row)),
        reason=excerpt(reason, 500),
        company_hint=escaped(company_id) if company_id else None,
        created_at=row_time(row),
        excerpt=excerpt(raw_json_text(row)),
        transaction_id=escaped(transaction_id) if transaction_id else None,
        subscription_hint=escaped(subscription_id) if subscription_id else None,
    )


def raw_json_text(row: Mapping[str, Any]) -> str:
    """Return the row exactly as received, as JSON text every database can hold.

    Non-ASCII characters, NUL bytes and invalid Unicode are written as JSON escapes; exact
    numbers stay exact; a value that is not finite is written as text.
    """
    return dump_json(_jsonable(row))


def row_time(row: Mapping[str, Any]) -> datetime | None:
    """Return a row's time (``created_at``, else ``usage_end_time``), or ``None`` if unreadable."""
    try:
        return _created_at(row, "")
    except (ValueError, OverflowError):
        return None


def _jsonable(value: object) -> object:
    """Return ``value`` with what JSON cannot carry exactly (NaN, floats, objects) as text."""
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if (
        isinstance(value, Decimal)
        and value.is_finite()
        and abs(value.adjusted()) <= _MAX_JSON_EXPONENT
    ):
        return value
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)


def _check_texts(row: Mapping[str, Any], moesif_id: str) -> None:
    for name in _TEXT_FIELDS:
        value = row.get(name)
        problem = text_problem(value) if isinstance(value, str) else None
        if problem is not None:
            raise ValueError(
                f"Moesif row {escaped(moesif_id)} has a {name} the database cannot hold: {problem}"
            )


def row_id(row: Mapping[str, Any]) -> str:
    """Return the row's ``_id``, or a stable ``sha256:`` id of its identifying fields."""
    given = _text(row.get("_id"))
    if given is not None:
        return given
    fields = {name: _canonical(row.get(name)) for name in _IDENTIFYING}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _canonical(value: object) -> object:
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, str | int | bool) or value is None:
        return value
    return str(value)


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _amount(row: Mapping[str, Any], moesif_id: str) -> Decimal:
    value = row.get("amount")
    if value is None and _is_usage(row):
        return Decimal(0)
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int) and not isinstance(value, bool):
        amount = Decimal(value)
    elif isinstance(value, str | float) and not isinstance(value, bool):
        amount = _decimal_from_text(str(value), moesif_id)
    else:
        raise ValueError(f"Moesif row {moesif_id} has no numeric amount ({value!r})")
    if not amount.is_finite():
        raise ValueError(f"Moesif row {moesif_id} has a non-finite amount ({value!r})")
    if amount != 0 and amount.adjusted() >= _MAX_EXPONENT:
        raise ValueError(f"Moesif row {moesif_id} has an amount out of range ({str(value)[:20]})")
    return amount


def _decimal_from_text(text: str, moesif_id: str) -> Decimal:
    try:
        return Decimal(text.strip())
    except ArithmeticError:
        raise ValueError(f"Moesif row {moesif_id} has an amount that is not a number") from None


def _is_usage(row: Mapping[str, Any]) -> bool:
    return _text(row.get("billing_meter_id")) is not None


def _entry_type(
    row: Mapping[str, Any], amount: Decimal, moesif_id: str
) -> tuple[EntryType, Decimal]:
    """Return the entry type and the positive amount of a row."""
    kind = (_text(row.get("type")) or "").lower()
    if _is_usage(row):
        return EntryType.USAGE, abs(amount)
    if kind == SIGNED_TYPE and amount != 0:
        return (EntryType.DEBIT if amount < 0 else EntryType.CREDIT), abs(amount)
    typed = _TYPED.get(kind)
    if typed is None:
        logger.warning(
            "Moesif row %s has type %r and amount %s, which is no balance movement the job "
            "knows; it is kept in the snapshot as usage and never counted as drift",
            moesif_id,
            kind,
            decimal_text(amount),
        )
        return EntryType.USAGE, abs(amount)
    if amount < 0:
        logger.warning(
            "Moesif row %s is a %s with a negative amount %s; read as a %s of %s (the type "
            "says the direction, the sign only repeats it)",
            moesif_id,
            typed.value,
            decimal_text(amount),
            typed.value,
            decimal_text(abs(amount)),
        )
    return typed, abs(amount)


def _currency(row: Mapping[str, Any]) -> str | None:
    return _currency_code(row.get("currency"))


def _subscription_currency(
    subscription_id: str | None, currency_for: Callable[[str], str | None]
) -> str:
    if subscription_id is None:
        return DEFAULT_CURRENCY
    return _currency_code(currency_for(subscription_id)) or DEFAULT_CURRENCY


def _currency_code(value: object) -> str | None:
    code = _text(value)
    if code is None or len(code) != 3 or not code.isalpha():
        return None
    return code.lower()


def _minor(amount: Decimal, amount_unit: Literal["major", "minor"], currency: str) -> int:
    if amount_unit == "major":
        return round_to_minor(amount, currency)
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _raw(value: object, moesif_id: str) -> str:
    if value is None:
        return "0"
    raw = decimal_text(value) if isinstance(value, Decimal) else str(value).strip()
    if len(raw) > _MAX_RAW_LENGTH:
        raise ValueError(f"Moesif row {moesif_id} has an amount with too many digits ({raw[:20]}…)")
    return raw


def _created_at(row: Mapping[str, Any], moesif_id: str) -> datetime:
    text = _text(row.get("created_at")) or _text(row.get("usage_end_time"))
    if text is None:
        raise ValueError(f"Moesif row {moesif_id} has neither created_at nor usage_end_time")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"Moesif row {moesif_id} has a time that is not ISO 8601: {text!r}"
        ) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
