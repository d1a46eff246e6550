"""Generated histories through the fakes and the CLI: after a run, each statement ties out.

Top-ups (some lost by the webhook), partial refunds (some never debited), promotions and usage,
in USD, EUR, JPY and KWD, are seeded into the fake Stripe and the fake Moesif (which burns usage
down from its balance as Moesif does). A run posts what is missing; then ``reconcile statement``
must tie out to the cent: its running balance follows every line, it closes at exactly the
balance Moesif reports, and it exits 0.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile.cli import main
from reconcile.domain.money import exponent
from reconcile.domain.times import to_iso
from reconcile.fakes.moesif import FakeMoesif
from reconcile.fakes.stripe import FakeStripe
from tests.e2e.conftest import MOESIF_TOKEN, STRIPE_KEY

CURRENCIES = ("usd", "eur", "jpy", "kwd")
HOURS = st.integers(1, 6 * 24 - 1)


@st.composite
def histories(draw: st.DrawFn) -> tuple[str, list[tuple[int, int, bool, int, bool]], list, list]:
    """A currency; top-ups (minor, hours ago, recorded?, refunded minor, refund recorded?);
    promotions and usage (minor, hours ago)."""
    currency = draw(st.sampled_from(CURRENCIES))
    step = 10 if currency == "kwd" else 1  # Stripe charges three-decimal currencies in tens
    minor = st.integers(1, 10**6).map(lambda amount: amount * step)
    topups = []
    for amount, ago, recorded in draw(
        st.lists(st.tuples(minor, HOURS, st.booleans()), min_size=1, max_size=5)
    ):
        refunded = draw(st.sampled_from((0, amount // step // 2 * step)))
        topups.append((amount, ago, recorded, refunded, draw(st.booleans())))
    promotions = draw(st.lists(st.tuples(minor, HOURS), max_size=2))
    usage = draw(st.lists(st.tuples(st.integers(1, 10**5), HOURS), max_size=4))
    return currency, topups, promotions, usage


def _major(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-exponent(currency))


def _seed(stripe: FakeStripe, moesif: FakeMoesif, history, now: datetime) -> None:
    currency, topups, promotions, usage = history
    moesif.add_subscription("sub_co", "co", currency=currency)
    customer = stripe.add_customer(
        metadata={"moesif_company_id": "co", "moesif_subscription_id": "sub_co"}
    )
    for amount, ago, recorded, refunded, refund_recorded in topups:
        at = now - timedelta(hours=ago)
        paid = stripe.add_payment_intent(customer, amount, currency=currency, created=at)
        if recorded:
            moesif.add_row("co", "sub_co", "credit", _major(amount, currency), at, paid)
        if refunded:
            later = at + timedelta(minutes=30)
            refund = stripe.add_refund(paid, amount=refunded, created=later)
            if refund_recorded:
                moesif.add_row("co", "sub_co", "debit", _major(refunded, currency), later, refund)
    for amount, ago in promotions:
        moesif.add_row(
            "co", "sub_co", "promotion", _major(amount, currency), now - timedelta(hours=ago)
        )
    for amount, ago in usage:
        moesif.add_row(
            "co",
            "sub_co",
            "usage",
            _major(amount, currency),
            now - timedelta(hours=ago),
            billing_meter_id="meter_api_calls",
        )


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories())
def test_after_a_run_statements_of_generated_histories_tie_out_to_the_cent(
    history, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    scratch = tmp_path_factory.mktemp("history")
    now = datetime.now(UTC).replace(microsecond=0)
    since = to_iso(now - timedelta(days=7))
    currency = history[0]
    with FakeStripe(api_key=STRIPE_KEY) as stripe, FakeMoesif(token=MOESIF_TOKEN) as moesif:
        _seed(stripe, moesif, history, now)
        environment = {
            "STRIPE_API_KEY": STRIPE_KEY,
            "STRIPE_API_BASE": stripe.base_url,
            "MOESIF_MANAGEMENT_TOKEN": MOESIF_TOKEN,
            "MOESIF_API_BASE": moesif.base_url,
            "RECONCILE_DATABASE_URL": f"sqlite:///{scratch / 'snapshot.db'}",
            "RECONCILE_REPORT_DIR": str(scratch / "reports"),
            "STRIPE_MAX_REQUESTS_PER_SECOND": "1000",
            "RECONCILE_RETRY_BASE_DELAY": "0.001",
            "RECONCILE_STRIPE_REPORT_POLL_SECONDS": "0.001",
        }
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        assert main(["--since", since]) == 0  # every lost credit and debit is posted
        capsys.readouterr()

        code = main(["statement", "--company", "co", "--since", since])
        reported = moesif.balance("sub_co")

    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0, out
    with Path(out[-1].removeprefix("statement: ")).open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    places = exponent(currency)
    running = Decimal(rows[0]["balance_after"])
    for row in rows[1:-1]:
        assert -Decimal(row["amount"]).as_tuple().exponent == places
        running += Decimal(row["amount"])
        assert Decimal(row["balance_after"]) == running
        assert row["finding_id"] == ""
    assert rows[-1]["kind"] == "closing"
    assert Decimal(rows[-1]["balance_after"]) == running == reported
    assert {row["currency"] for row in rows} == {currency.upper()}
