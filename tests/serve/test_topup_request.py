"""Validation of ``/top-up`` bodies, decided without HTTP."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from reconcile.serve.topup_request import (
    InvalidTopUp,
    TopUpRequest,
    idempotency_key_problem,
    parse_topup,
    request_hash,
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
        parse_topup({"customer_id": "cus_1", "amount": "1.050", "currency": "kwd"}).amount_minor
        == 1050
    )
    assert (
        parse_topup({"customer_id": "cus_1", "amount": "2.5", "currency": "eur"}).amount_minor
        == 250
    )
    assert (
        parse_topup({"customer_id": "cus_1", "amount": "999999999999", "currency": "jpy"})
    ).amount_minor == 999_999_999_999


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ([], "JSON object"),
        ({"customer_id": "cus_1", "amount": "0", "currency": "usd"}, "greater than zero"),
        ({"customer_id": "cus_1", "amount": "-5", "currency": "usd"}, "ASCII digits"),
        ({"customer_id": "cus_1", "amount": "1.001", "currency": "usd"}, "decimal places"),
        ({"customer_id": "cus_1", "amount": "1.5", "currency": "jpy"}, "decimal places"),
        ({"customer_id": "cus_1", "amount": "NaN", "currency": "usd"}, "ASCII digits"),
        ({"customer_id": "cus_1", "amount": "ten", "currency": "usd"}, "ASCII digits"),
        ({"customer_id": "cus_1", "amount": True, "currency": "usd"}, "decimal string"),
        ({"customer_id": "cus_1", "amount": "1e20", "currency": "usd"}, "ASCII digits"),
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


@pytest.mark.parametrize(
    "amount",
    [
        "1e999990",
        "1e999999",
        "1E2",
        "1_000",
        "\u0661\u0660\u0660",  # Arabic-Indic digits
        "\uff12\uff15",  # full-width digits
        "\u00b2",  # a superscript two
        " 25",
        "25 ",
        "25\n",
        "+25",
        ".5",
        "5.",
        "1,000",
        "0x10",
        "Infinity",
        "",
    ],
)
def test_amounts_are_only_ascii_digits_with_an_optional_point(amount: str) -> None:
    started = time.perf_counter()
    with pytest.raises(InvalidTopUp, match="ASCII digits"):
        parse_topup({"customer_id": "cus_1", "amount": amount, "currency": "usd"})
    assert time.perf_counter() - started < 0.05


@pytest.mark.parametrize(
    ("amount", "currency", "says"),
    [
        (25, "usd", "decimal string"),
        (Decimal("25.00"), "usd", "decimal string"),
        (None, "usd", "decimal string"),
        ("9999999999999", "usd", "ASCII digits"),
        ("99999999999.99", "usd", "at most 12 digits"),
        ("999999999999", "usd", "12 digits of minor units"),
        ("5.0", "jpy", "decimal places"),
        ("1.000", "usd", "decimal places"),
        ("1.0000", "kwd", "decimal places"),
        ("5.124", "kwd", "KWD only in amounts whose last decimal is 0"),
        ("0.001", "bhd", "BHD only in amounts whose last decimal is 0"),
        ("1.005", "jod", "JOD only"),
        ("12.345", "omr", "OMR only"),
        ("7.777", "TND", "TND only"),
        ("0.00", "usd", "greater than zero"),
    ],
)
def test_amounts_keep_to_twelve_digits_and_the_currencys_decimals(
    amount: object, currency: str, says: str
) -> None:
    with pytest.raises(InvalidTopUp, match=says):
        parse_topup({"customer_id": "cus_1", "amount": amount, "currency": currency})


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("5.120", "kwd", 5120),
        ("5.12", "kwd", 5120),
        ("5", "bhd", 5000),
        ("0.010", "jod", 10),
        ("12.340", "omr", 12340),
        ("7.7", "tnd", 7700),
        ("5.125", "usd", None),
    ],
)
def test_three_decimal_amounts_ending_in_0_are_taken(
    amount: str, currency: str, minor: int | None
) -> None:
    if minor is None:  # two decimals: no three-decimal rule, the places rule refuses it
        with pytest.raises(InvalidTopUp, match="decimal places"):
            parse_topup({"customer_id": "cus_1", "amount": amount, "currency": currency})
        return
    request = parse_topup({"customer_id": "cus_1", "amount": amount, "currency": currency})
    assert request.amount_minor == minor


@pytest.mark.parametrize(
    "currency", ["bov", "usn", "clf", "uyi", "che", "xau", "xdr", "\uff35SD", "usd\x00", 840]
)
def test_only_currencies_stripe_charges_in_are_taken(currency: object) -> None:
    with pytest.raises(InvalidTopUp, match="ISO 4217 code Stripe charges in"):
        parse_topup({"customer_id": "cus_1", "amount": "1", "currency": currency})


@pytest.mark.parametrize(
    ("customer_id", "says"),
    [
        ("cus_" + "a" * 252, "at most 255 characters"),
        ("cus_1\x00", "NUL"),
        ("cus_\ud800", "not valid Unicode"),
        ("cus_1/../charges", "cus_"),
        ("cus_\u0661", "cus_"),
        ("", "non-empty string"),
        (7, "non-empty string"),
    ],
)
def test_customer_ids_are_bounded_and_storable(customer_id: object, says: str) -> None:
    with pytest.raises(InvalidTopUp, match=says):
        parse_topup({"customer_id": customer_id, "amount": "1", "currency": "usd"})
    assert parse_topup({"customer_id": "cus_" + "a" * 251, "amount": "1", "currency": "usd"})


def test_unknown_field_names_are_cut_in_the_message() -> None:
    with pytest.raises(InvalidTopUp) as raised:
        parse_topup({"customer_id": "cus_1", "amount": "1", "currency": "usd", "x" * 100_000: 1})
    assert len(str(raised.value)) < 100


def test_the_request_hash_is_customer_amount_and_currency() -> None:
    base = TopUpRequest("cus_1", 100, "usd")
    assert request_hash(base) == request_hash(TopUpRequest("cus_1", 100, "usd"))
    others = [
        TopUpRequest("cus_2", 100, "usd"),
        TopUpRequest("cus_1", 101, "usd"),
        TopUpRequest("cus_1", 100, "eur"),
    ]
    assert len({request_hash(base), *(request_hash(other) for other in others)}) == 4


def test_idempotency_keys_are_1_to_255_storable_characters() -> None:
    assert idempotency_key_problem("order-42") is None
    assert idempotency_key_problem("k" * 255) is None
    for bad in ("", "k" * 256, "a\x00b"):
        assert idempotency_key_problem(bad) is not None
