"""Checking Moesif's running balance of every subscription the run read (contract section 11).

For each subscription with a row in what the run read from Moesif, its snapshot rows are
chained by ``sequence_id`` (in SQL, one subscription at a time) and handed to
:func:`reconcile.rules.balance_chain.balance_breaks`. The subscription's reported balance takes
part only when the snapshot keeps one read after the chain's rows were (the rows' balances as
last read) and that Moesif reported as the ending of the chain's last row (the same
``sequence_id``): a balance read before or after other rows, or before the rows were corrected,
would differ by them. Subscriptions' balances are read with their currencies, at most weekly,
so most nightly runs check the rows only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

import pandas as pd

from reconcile import frames
from reconcile.db.balance_chains import (
    Chain,
    ReportedBalance,
    chained_subscriptions,
    chains,
    reported_balances,
    touched_subscriptions,
)
from reconcile.domain.ids import pair_finding_id
from reconcile.domain.money import round_to_minor
from reconcile.domain.vocab import Action, Category
from reconcile.rules.balance_chain import BalanceBreak, balance_breaks
from reconcile.steps import Sessions
from reconcile.steps.begin import Begun

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChainsChecked:
    """The breaks found, as findings, and how many subscriptions and rows were checked."""

    findings: pd.DataFrame
    subscriptions: int
    rows: int


def check(
    sessions: Sessions,
    run: Begun,
    companies: Sequence[str],
    amount_unit: Literal["major", "minor"],
) -> ChainsChecked:
    """Return a ``balance_break`` finding for every place a read subscription's balance breaks."""
    read = run.spans.moesif
    records: list[dict[str, object]] = []
    checked_rows = 0
    with sessions() as session:
        touched = touched_subscriptions(session, read.since, read.until, companies)
        linked = chained_subscriptions(session, touched)
        reported = reported_balances(session, linked)
        for chain in chains(session, linked):
            found = balance_breaks(
                chain.rows, _reported(chain, reported.get(chain.subscription_id), amount_unit)
            )
            checked_rows += found.checked
            records += [break_finding(chain, each) for each in found.breaks]
    if records:
        log.warning("Moesif's running balance breaks in %d place(s)", len(records))
    findings = frames.from_records(records, ["finding_id"])
    return ChainsChecked(findings, len(touched), checked_rows)


def break_finding(chain: Chain, found: BalanceBreak) -> dict[str, object]:
    """Return a break as a finding record: flagged, named by its two rows, never posted."""
    row = found.earlier_id if found.later_id == "reported" else found.later_id
    return {
        "category": Category.BALANCE_BREAK.value,
        "action": Action.FLAGGED.value,
        "company_id": chain.company_id,
        "subscription_id": chain.subscription_id,
        "currency": found.currency or None,
        "moesif_id": row,
        "detail": f"Moesif's running balance breaks: {found.detail}",
        "finding_id": pair_finding_id(
            Category.BALANCE_BREAK.value, found.earlier_id, found.later_id
        ),
    }


def _reported(
    chain: Chain, balance: ReportedBalance | None, amount_unit: Literal["major", "minor"]
) -> int | None:
    """Return the subscription's reported balance in minor units, when it can be compared."""
    sequenced = [row.sequence_id for row in chain.rows if row.sequence_id is not None]
    if balance is None or balance.sequence_id is None or not sequenced:
        return None
    if balance.sequence_id != max(sequenced) or balance.read_at < chain.read_at:
        return None
    currency = chain.rows[-1].currency or balance.currency or "usd"
    amount = Decimal(balance.current_balance)
    if amount_unit == "minor":
        return int(amount)
    return round_to_minor(amount, currency)
