"""What a ``/top-up`` request asks for, validated strictly, and the answers it earns."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from reconcile.domain.money import MAX_MINOR_UNITS, exponent
from reconcile.serve.untrusted import MAX_ID_LENGTH, id_problem
from reconcile.stripe.currencies import is_stripe_currency, tenth_of_minor_unit_problem

MAX_AMOUNT_DIGITS = 12
"""An amount is at most 12 digits (before and after the point together)."""
_AMOUNT = re.compile(r"(?P<whole>[0-9]{1,12})(?:\.(?P<fraction>[0-9]+))?", re.ASCII)
"""ASCII digits with an optional point: no sign, exponent, underscore, space or other digits."""
_CUSTOMER = re.compile(r"cus_[A-Za-z0-9_]+", re.ASCII)


class InvalidTopUp(ValueError):
    """A request that is not a valid top-up; the message says which field and why."""


@dataclass(frozen=True)
class TopUpRequest:
    """A validated request to charge a customer's saved card and credit Moesif."""

    customer_id: str
    amount_minor: int
    currency: str


def parse_topup(body: object) -> TopUpRequest:
    """Return the request a JSON body makes.

    Raises:
        InvalidTopUp: a field is missing, of the wrong type, or out of range.
    """
    if not isinstance(body, Mapping):
        raise InvalidTopUp("the body must be a JSON object")
    extra = set(body) - {"customer_id", "amount", "currency"}
    if extra:
        raise InvalidTopUp(f"unknown fields: {', '.join(sorted(str(name)[:40] for name in extra))}")
    customer_id = body.get("customer_id")
    problem = id_problem(customer_id, "customer_id")
    if problem is not None:
        raise InvalidTopUp(problem)
    if not isinstance(customer_id, str) or not _CUSTOMER.fullmatch(customer_id):
        raise InvalidTopUp("customer_id must be a Stripe customer id (cus_…)")
    currency = body.get("currency")
    if not is_stripe_currency(currency) or not isinstance(currency, str):
        raise InvalidTopUp("currency must be an ISO 4217 code Stripe charges in, such as usd")
    return TopUpRequest(customer_id, amount_minor(body.get("amount"), currency), currency.lower())


def amount_minor(raw: object, currency: str) -> int:
    """Return the minor units of an amount string such as ``"25.00"`` in ``currency``.

    Raises:
        InvalidTopUp: not a string of at most 12 ASCII digits with an optional point, more
            decimals than the currency has, zero, more than 12 digits of minor units, or a
            three-decimal amount whose last digit is not 0 (Stripe refuses to charge it).
    """
    if not isinstance(raw, str):
        raise InvalidTopUp('amount must be a decimal string such as "25.00"')
    found = _AMOUNT.fullmatch(raw)
    if found is None:
        raise InvalidTopUp(
            'amount must be ASCII digits with an optional decimal point, such as "25.00"'
        )
    fraction = found["fraction"] or ""
    if len(found["whole"]) + len(fraction) > MAX_AMOUNT_DIGITS:
        raise InvalidTopUp(f"amount must be at most {MAX_AMOUNT_DIGITS} digits")
    places = exponent(currency)
    if len(fraction) > places:
        raise InvalidTopUp(
            f"amount {raw} has more decimal places than {currency.upper()} has ({places})"
        )
    minor = int(Decimal(raw).scaleb(places))
    if minor <= 0:
        raise InvalidTopUp("amount must be greater than zero")
    if minor > MAX_MINOR_UNITS:
        raise InvalidTopUp(f"amount must be at most {MAX_AMOUNT_DIGITS} digits of minor units")
    problem = tenth_of_minor_unit_problem(currency, minor)
    if problem is not None:
        raise InvalidTopUp(f"amount {raw}: {problem}")
    return minor


def request_hash(request: TopUpRequest) -> str:
    """Return the hash an ``Idempotency-Key`` is stored with: customer, amount and currency."""
    text = f"{request.customer_id}\0{request.amount_minor}\0{request.currency}"
    return hashlib.sha256(text.encode()).hexdigest()


def idempotency_key_problem(key: str) -> str | None:
    """Return why an ``Idempotency-Key`` header cannot be used, or ``None`` when it can."""
    problem = id_problem(key, "Idempotency-Key")
    return f"{problem} (1 to {MAX_ID_LENGTH} characters)" if problem else None


def stripe_idempotency_key(request: TopUpRequest, client_key: str) -> str:
    """Return the Stripe idempotency key of a client's ``Idempotency-Key`` for this customer.

    The same client key for the same customer is the same Stripe key (one PaymentIntent, one
    charge); Stripe refuses the key with other parameters, which is answered as a conflict.
    """
    digest = hashlib.sha256(f"{request.customer_id}\0{client_key}".encode()).hexdigest()
    return f"reconcile-topup-{digest[:48]}"
