"""Validation of ``/top-up`` bodies, decided without HTTP."""

from __future__ import annotations

from decimal import Decimal

import pytest

from reconcile.serve.topup_request import (
    InvalidTopUp,
    TopUpRequest,
    parse_topup,
    stripe_idempotency_key,
)


def test_a_valid_body_becomes_minor_units() -> None:
    assert parse_topup({"customer_id": "cus_1", "amount": "25.00", "currency": "USD"}) == (
        TopUpRequest("cus_1", 2500, "usd")
    )
    assert (
        parse_topup({"customer_id": "cus_1", "amount": "500", "currency": "jpy"}).amount_minor
        == 500
    )
    assert (
        parse_topup({"customer_id": "cus_1", "amount": "1.005", "currency": "kwd"}).amount_minor
        == 1005
    )
    assert (
        parse_topup(
            {"customer_id": "cus_1", "amount": Decimal("2.5"), "currency": "eur"}
        ).amount_minor
        == 250
    )


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ([], "JSON object"),
        ({"customer_id": "cus_1", "amount": "0", "currency": "usd"}, "greater than zero"),
        ({"customer_id": "cus_1", "amount": "-5", "currency": "usd"}, "greater than zero"),
        ({"customer_id": "cus_1", "amount": "1.001", "currency": "usd"}, "decimal places"),
        ({"customer_id": "cus_1", "amount": "1.5", "currency": "jpy"}, "decimal places"),
        ({"customer_id": "cus_1", "amount": "NaN", "currency": "usd"}, "greater than zero"),
        ({"customer_id": "cus_1", "amount": "ten", "currency": "usd"}, "not a number"),
        ({"customer_id": "cus_1", "amount": True, "currency": "usd"}, "decimal string"),
        ({"customer_id": "cus_1", "amount": "1e20", "currency": "usd"}, "12 digits"),
        ({"customer_id": "cus_1", "amount": "1", "currency": "xyz"}, "ISO 4217"),
        ({"customer_id": "cus_1", "amount": "1"}, "ISO 4217"),
        ({"customer_id": "acct_1", "amount": "1", "currency": "usd"}, "cus_"),
        ({"customer_id": "cus_1", "amount": "1", "currency": "usd", "x": 1}, "unknown fields"),
    ],
)
def test_invalid_bodies_say_what_is_wrong(body: object, says: str) -> None:
    with pytest.raises(InvalidTopUp, match=says):
        parse_topup(body)


def test_the_stripe_key_is_stable_per_customer_and_client_key() -> None:
    one = TopUpRequest("cus_1", 100, "usd")
    other = TopUpRequest("cus_2", 100, "usd")
    assert stripe_idempotency_key(one, "k") == stripe_idempotency_key(one, "k")
    assert stripe_idempotency_key(one, "k") != stripe_idempotency_key(one, "k2")
    assert stripe_idempotency_key(one, "k") != stripe_idempotency_key(other, "k")
