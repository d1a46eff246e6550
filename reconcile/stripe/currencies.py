"""The currencies Stripe charges in: its presentment currencies, vendored with their source.

Source: Stripe, "Supported currencies", section "Presentment currencies",
https://docs.stripe.com/currencies#presentment-currencies. Not verified: the list was written
from memory, and the copies of that page searched on 2026-12-02 show its rules (the zero-decimal
currencies; three-decimal currencies charged only in amounts ending in 0) but not the table
itself; compare it with the page before relying on it. Stripe lists the codes in upper case and
takes them in lower case. ISO 4217 fund codes (``bov``, ``clf``, ``usn``, ``uyi``, ``che``,
``chw``, ``cou``, ``mxv``, ``xsu``, ``xua``), precious metals (``xau``...) and codes Stripe does
not charge in are not here; a currency Stripe adds is added here by hand.
"""

from __future__ import annotations

STRIPE_CURRENCIES = frozenset(
    """
    usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd bwp
    byn bzd cad cdf chf clp cny cop crc cve czk djf dkk dop dzd egp etb eur fjd fkp gbp gel gip
    gmd gnf gtq gyd hkd hnl htg huf idr ils inr isk jmd jod jpy kes kgs khr kmf krw kwd kyd kzt
    lak lbp lkr lrd lsl mad mdl mga mkd mmk mnt mop mur mvr mwk mxn myr mzn nad ngn nio nok npr
    nzd omr pab pen pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sek sgd shp sle sos srd
    std szl thb tjs tnd top try ttd twd tzs uah ugx uyu uzs vnd vuv wst xaf xcd xcg xof xpf yer
    zar zmw
    """.split()
)
"""Lower-case ISO 4217 codes of Stripe's presentment currencies."""

THREE_DECIMAL_CURRENCIES = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
"""Currencies with three decimals, which Stripe charges only in amounts whose last digit is 0
(its "Three-decimal currencies" rule on the same page): a charge of 5.124 KWD is refused."""


def tenth_of_minor_unit_problem(currency: str, minor: int) -> str | None:
    """Return why Stripe would refuse to charge ``minor`` units of ``currency``, or ``None``."""
    if currency.lower() in THREE_DECIMAL_CURRENCIES and minor % 10:
        return (
            f"Stripe charges {currency.upper()} only in amounts whose last decimal is 0 "
            "(such as 5.120, not 5.124)"
        )
    return None


def is_stripe_currency(code: object) -> bool:
    """Return whether ``code`` is a currency Stripe charges in, in any ASCII case."""
    return isinstance(code, str) and code.isascii() and code.lower() in STRIPE_CURRENCIES
