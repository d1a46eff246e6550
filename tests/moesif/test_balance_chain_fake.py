"""Running balances through the fake Moesif and the real client: breaks are found where injected.

Generated ledgers (several subscriptions, currencies of every exponent, usage included) are
stored in the fake in a random time order; breaks are injected at random rows. Reading them back
with :class:`MoesifClient`, normalising them with :func:`reconcile.moesif.rows.normalise` and
checking each chain with :func:`reconcile.rules.balance_chain.balance_breaks` must report every
injected break exactly where it is, with its gap, and nothing else.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile.config import Secret
from reconcile.domain.money import exponent, round_to_minor
from reconcile.domain.values import LedgerRow
from reconcile.fakes.moesif import FakeMoesif
from reconcile.moesif.client import MoesifClient
from reconcile.moesif.rows import normalise
from reconcile.retry import RetryPolicy
from reconcile.rules.balance_chain import (
    CARRIED,
    CHANGES,
    REPORTED,
    Balance,
    BalanceRow,
    balance_breaks,
)

TOKEN = "tok_chain"
T0 = datetime(2026, 11, 1, tzinfo=UTC)
SUBSCRIPTIONS = {"sub_usd": "usd", "sub_jpy": "jpy", "sub_kwd": "kwd", "sub_eur": "eur"}
KINDS = ("credit", "debit", "promotion", "adjustment", "usage")

rows_strategy = st.lists(
    st.tuples(
        st.sampled_from(sorted(SUBSCRIPTIONS)),
        st.sampled_from(KINDS),
        st.integers(min_value=1, max_value=10**7),
    ),
    min_size=1,
    max_size=25,
)
gap_strategy = st.integers(min_value=-(10**6), max_value=10**6).filter(bool)


def _major(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-exponent(currency))


def _balance_row(row: LedgerRow) -> BalanceRow:
    def figures(side: str) -> Balance | None:
        current = getattr(row, f"{side}_current_minor")
        if current is None:
            return None
        pending = getattr(row, f"{side}_pending_minor")
        available = getattr(row, f"{side}_available_minor")
        return Balance(current, pending, available)

    return BalanceRow(
        row.moesif_id,
        row.sequence_id,
        row.created_at,
        row.currency or "",
        figures("beginning"),
        figures("ending"),
        row.balance_changes or (),
    )


def _read_back(fake: FakeMoesif) -> tuple[dict[str, list[BalanceRow]], dict[str, int]]:
    """Read every row through the client, normalised, by subscription; and the balances."""
    with httpx.Client(base_url=fake.base_url, timeout=5.0) as http:
        client = MoesifClient(http, Secret(TOKEN), policy=RetryPolicy(max_attempts=1))
        rows: dict[str, list[BalanceRow]] = defaultdict(list)
        for raw in client.billing_reports(T0 - timedelta(days=1), T0 + timedelta(days=30)):
            row = normalise(raw, amount_unit="major", currency_for=SUBSCRIPTIONS.get)
            rows[str(row.subscription_id)].append(_balance_row(row))
        reported: dict[str, int] = {}
        for subscription_id, currency in SUBSCRIPTIONS.items():
            found = client.subscription(subscription_id)
            assert found is not None
            last = max((row.sequence_id or 0 for row in rows[subscription_id]), default=0)
            if rows[subscription_id] and found.sequence_id == last:
                reported[subscription_id] = round_to_minor(found.current_balance, currency)
    return dict(rows), reported


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    ledger=rows_strategy,
    seed=st.integers(min_value=0, max_value=2**32),
    breaks=st.lists(st.tuples(st.integers(min_value=0), gap_strategy, st.booleans()), max_size=4),
    misreported=st.dictionaries(st.sampled_from(sorted(SUBSCRIPTIONS)), gap_strategy, max_size=2),
)
def test_breaks_injected_at_random_rows_are_reported_exactly_there(
    ledger: list[tuple[str, str, int]],
    seed: int,
    breaks: list[tuple[int, int, bool]],
    misreported: dict[str, int],
) -> None:
    order = random.Random(seed)
    with FakeMoesif(token=TOKEN) as fake:
        for subscription_id, currency in SUBSCRIPTIONS.items():
            fake.add_subscription(subscription_id, "co", currency, pending_activity=Decimal(1))
        stored = []
        for subscription_id, kind, minor in ledger:
            currency = SUBSCRIPTIONS[subscription_id]
            usage = kind == "usage"
            stored.append(
                fake.add_row(
                    "co",
                    subscription_id,
                    "usage" if usage else kind,
                    _major(minor, currency),
                    T0 + timedelta(minutes=order.randrange(0, 20_000)),  # any time order
                    billing_meter_id="meter_1" if usage else None,
                )
            )
        expected: set[tuple[str, str, str, int]] = set()
        injected: set[str] = set()
        for position, gap, within in breaks:
            row = stored[position % len(stored)]
            chain = [each for each in stored if each.subscription_id == row.subscription_id]
            place = chain.index(row)
            if row.id in injected or (not within and place == 0):
                continue  # a first row's beginning has nothing before it to differ from
            injected.add(row.id)
            fake.break_balance(
                row.id, _major(gap, SUBSCRIPTIONS[row.subscription_id]), within=within
            )
            if within:
                expected.add((CHANGES, row.id, row.id, gap))
            else:
                expected.add((CARRIED, chain[place - 1].id, row.id, gap))
        for subscription_id, gap in misreported.items():
            chain = [each for each in stored if each.subscription_id == subscription_id]
            if chain:
                fake.misreport_balance(subscription_id, _major(gap, SUBSCRIPTIONS[subscription_id]))
                expected.add((REPORTED, chain[-1].id, REPORTED, gap))
        read, reported = _read_back(fake)

    assert set(reported) == {row.subscription_id for row in stored}
    found = set()
    for subscription_id, rows in read.items():
        check = balance_breaks(rows, reported.get(subscription_id))
        assert (check.checked, check.skipped) == (len(rows), 0)
        assert all(each.currency == SUBSCRIPTIONS[subscription_id] for each in check.breaks)
        found |= {(each.kind, each.earlier_id, each.later_id, each.gap) for each in check.breaks}
    assert found == expected


def test_rows_without_balances_take_no_part() -> None:
    with FakeMoesif(token=TOKEN, serve_balances=False) as fake:
        fake.add_subscription("sub_usd", "co", "usd")
        fake.add_row("co", "sub_usd", "credit", Decimal("5.00"), T0)
        with httpx.Client(base_url=fake.base_url, timeout=5.0) as http:
            client = MoesifClient(http, Secret(TOKEN), policy=RetryPolicy(max_attempts=1))
            [raw] = client.billing_reports(T0, T0 + timedelta(days=1))
    row = normalise(raw, amount_unit="major", currency_for=SUBSCRIPTIONS.get)
    assert (row.sequence_id, row.beginning_current_minor, row.balance_changes) == (None, None, None)
    assert balance_breaks([_balance_row(row)], 500).skipped == 1


def test_a_row_carries_its_balance_exactly_in_minor_units() -> None:
    with FakeMoesif(token=TOKEN) as fake:
        fake.add_subscription("sub_kwd", "co", "kwd", pending_activity=Decimal("0.250"))
        fake.add_row("co", "sub_kwd", "credit", Decimal("1.500"), T0)
        fake.add_row("co", "sub_kwd", "debit", Decimal("0.125"), T0 - timedelta(hours=1))
        with httpx.Client(base_url=fake.base_url, timeout=5.0) as http:
            client = MoesifClient(http, Secret(TOKEN), policy=RetryPolicy(max_attempts=1))
            raws = list(client.billing_reports(T0 - timedelta(days=1), T0 + timedelta(days=1)))
    rows = sorted(
        (normalise(raw, amount_unit="major", currency_for=SUBSCRIPTIONS.get) for raw in raws),
        key=lambda row: row.sequence_id or 0,
    )
    first, second = rows
    assert (first.sequence_id, first.beginning_current_minor, first.ending_current_minor) == (
        1,
        0,
        1500,
    )
    assert (first.ending_pending_minor, first.ending_available_minor) == (250, 1750)
    assert first.balance_changes == (1500,)
    assert (second.sequence_id, second.beginning_current_minor, second.ending_current_minor) == (
        2,
        1500,
        1375,
    )
    assert second.balance_changes == (-125,)


def test_usage_burns_the_balance_down() -> None:
    """A usage row Moesif posted moves the balance by minus its amount, as Moesif's burn-down."""
    with FakeMoesif(token=TOKEN) as fake:
        fake.add_subscription("sub_usd", "co", "usd", pending_activity=Decimal("-0.40"))
        fake.add_row("co", "sub_usd", "credit", Decimal("10.00"), T0)
        fake.add_row(
            "co", "sub_usd", "usage", Decimal("3.20"), T0 + timedelta(hours=1), billing_meter_id="m"
        )
        with httpx.Client(base_url=fake.base_url, timeout=5.0) as http:
            client = MoesifClient(http, Secret(TOKEN), policy=RetryPolicy(max_attempts=1))
            raws = list(client.billing_reports(T0 - timedelta(days=1), T0 + timedelta(days=1)))
            found = client.subscription("sub_usd")
    rows = {
        row.entry_type.value: row
        for row in (
            normalise(raw, amount_unit="major", currency_for=SUBSCRIPTIONS.get) for raw in raws
        )
    }
    usage = rows["usage"]
    assert usage.balance_changes == (-320,)
    assert (usage.beginning_current_minor, usage.ending_current_minor) == (1000, 680)
    assert found is not None
    assert (found.current_balance, found.available_balance) == (Decimal("6.80"), Decimal("6.40"))
    assert fake.balance("sub_usd") == Decimal("6.80")
