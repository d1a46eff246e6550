"""What a ``/top-up`` request asks for, validated strictly, and the answers it earns."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from reconcile.money import to_minor

ISO_4217 = frozenset(
    """aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob bov brl bsd
    btn bwp byn bzd cad cdf che chf chw clf clp cny cop cou crc cuc cup cve czk djf dkk dop dzd
    egp ern etb eur fjd fkp gbp gel ghs gip gmd gnf gtq gyd hkd hnl htg huf idr ils inr iqd irr
    isk jmd jod jpy kes kgs khr kmf kpw krw kwd kyd kzt lak lbp lkr lrd lsl lyd mad mdl mga mkd
    mmk mnt mop mru mur mvr mwk mxn mxv myr mzn nad ngn nio nok npr nzd omr pab pen pgk php pkr
    pln pyg qar ron rsd rub rwf sar sbd scr sdg sek sgd shp sle sll sos srd ssp stn svc syp szl
    thb tjs tmt tnd top try ttd twd tzs uah ugx usd usn uyi uyu uyw uzs ved ves vnd vuv wst xaf
    xcd xof xpf yer zar zmw zwg zwl""".split()
)
"""Active ISO 4217 currency codes (funds and precious metals left out), lower case as Stripe."""

MAX_MINOR_DIGITS = 12
"""Amounts over 12 digits of minor units are refused, as the nightly run refuses them."""


class InvalidTopUp(ValueError):
    """A request that is not a valid top-up; the message says which field and why."""


@dataclass(frozen=True)
class TopUpRequest:
    """A validated request to charge a customer's saved card and credit Moesif."""

    customer_id: str
    amount_minor: int
    currency: str


def parse_topup(body: object) -> TopUpRequest:
    """Return the request a JSON body (parsed with exact decimals) makes.

    Raises:
        InvalidTopUp: a field is missing, of the wrong type, or out of range.
    """
    if not isinstance(body, Mapping):
        raise InvalidTopUp("the body must be a JSON object")
    extra = set(body) - {"customer_id", "amount", "currency"}
    if extra:
        raise InvalidTopUp(f"unknown fields: {', '.join(sorted(map(str, extra)))}")
    customer_id = body.get("customer_id")
    if not isinstance(customer_id, str) or not customer_id.startswith("cus_"):
        raise InvalidTopUp("customer_id must be a Stripe customer id (cus_…)")
    currency = body.get("currency")
    if not isinstance(currency, str) or currency.lower() not in ISO_4217:
        raise InvalidTopUp("currency must be an ISO 4217 code such as usd")
    return TopUpRequest(
        customer_id, _amount(body.get("amount"), currency.lower()), currency.lower()
    )


def _amount(raw: Any, currency: str) -> int:  # noqa: ANN401 - any JSON value
    if isinstance(raw, bool) or not isinstance(raw, str | int | Decimal):
        raise InvalidTopUp('amount must be a decimal string such as "25.00"')
    try:
        major = Decimal(raw.strip() if isinstance(raw, str) else raw)
    except InvalidOperation:
        raise InvalidTopUp(f"amount {raw!s} is not a number") from None
    if not major.is_finite() or major <= 0:
        raise InvalidTopUp("amount must be greater than zero")
    try:
        minor = to_minor(major, currency)
    except ValueError as error:
        raise InvalidTopUp(str(error)) from None
    if len(str(minor)) > MAX_MINOR_DIGITS:
        raise InvalidTopUp(f"amount must be at most {MAX_MINOR_DIGITS} digits of minor units")
    return minor


def stripe_idempotency_key(request: TopUpRequest, client_key: str) -> str:
    """Return the Stripe idempotency key of a client's ``Idempotency-Key`` for this customer.

    The same client key for the same customer is the same Stripe key (one PaymentIntent, one
    charge); Stripe refuses the key with other parameters, which is answered as a conflict.
    """
    digest = hashlib.sha256(f"{request.customer_id}\0{client_key}".encode()).hexdigest()
    return f"reconcile-topup-{digest[:48]}"
