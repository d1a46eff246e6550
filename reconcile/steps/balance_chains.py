"""Checking Moesif's running balance of every subscription the run read (contract section 11).

For each subscription with a row in what the run read from Moesif, or whose balance was read
from Moesif since the run's Moesif span began, its snapshot rows are chained by ``sequence_id``
(in SQL, one subscription at a time) and handed to
:func:`reconcile.rules.balance_chain.balance_breaks` with the balance Moesif last reported for
it, as the snapshot keeps it: read by a run (with the subscription's currency, at most weekly),
by ``serve`` (each live decision reads it) or by ``reconcile balances``. That balance carries
the ``sequence_id`` it was reported at, so it is compared with the ending of the row of that
sequence, whenever it was read; a run asks Moesif for nothing more when they agree.

A balance kept from before the rows were last read may be older than their figures, so a
disagreement is confirmed first: the subscription is read again (one request for each such
subscription) and that balance, read after the rows, is compared instead
(:func:`reconcile.rules.balance_chain.read_again_first`).
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
from reconcile.rules.balance_chain import (
    REPORTED,
    BalanceBreak,
    ChainCheck,
    balance_breaks,
    read_again_first,
)
from reconcile.steps import Sessions
from reconcile.steps.begin import Begun
from reconcile.subscriptions import SubscriptionDirectory

log = logging.getLogger(__name__)

AmountUnit = Literal["major", "minor"]


@dataclass(frozen=True)
class ChainsChecked:
    """The breaks found, as findings, and what was checked.

    ``reported`` counts the subscriptions whose reported balance was compared, ``read_again``
    those Moesif was asked again to confirm a disagreement.
    """

    findings: pd.DataFrame
    subscriptions: int
    rows: int
    reported: int = 0
    read_again: int = 0


def check(
    sessions: Sessions,
    run: Begun,
    companies: Sequence[str],
    amount_unit: AmountUnit,
    directory: SubscriptionDirectory | None = None,
) -> ChainsChecked:
    """Return a ``balance_break`` finding for every place a read subscription's balance breaks.

    With ``directory``, a disagreement with a balance kept from before the rows were read is
    confirmed by reading the subscription again; without it, such a balance is not compared.
    """
    read = run.spans.moesif
    records: list[dict[str, object]] = []
    checked_rows = compared = 0
    doubtful: list[str] = []
    with sessions() as session:
        touched = touched_subscriptions(session, read.since, read.until, companies)
        linked = chained_subscriptions(session, touched)
        reported = reported_balances(session, linked)
        for chain in chains(session, linked):
            balance = reported.get(chain.subscription_id)
            found = _check(chain, balance, amount_unit)
            if read_again_first(found, read_after_rows=_read_after(chain, balance)):
                doubtful.append(chain.subscription_id)
                found = _check(chain, None, amount_unit)
            checked_rows += found.checked
            compared += found.reported
            records += [break_finding(chain, each) for each in found.breaks]
    if doubtful and directory is not None:
        confirmed = _confirm(sessions, directory, doubtful, amount_unit)
        compared += len(confirmed)
        records += [break_finding(chain, each) for chain, each in confirmed if each is not None]
    log.info(
        "checked the running balance of %d subscription(s), %d row(s); their reported balance "
        "compared for %d",
        len(touched),
        checked_rows,
        compared,
    )
    if records:
        log.warning("Moesif's running balance breaks in %d place(s)", len(records))
    findings = frames.from_records(records, ["finding_id"])
    read_again = len(doubtful) if directory is not None else 0
    return ChainsChecked(findings, len(touched), checked_rows, compared, read_again)


def _confirm(
    sessions: Sessions,
    directory: SubscriptionDirectory,
    subscription_ids: Sequence[str],
    amount_unit: AmountUnit,
) -> list[tuple[Chain, BalanceBreak | None]]:
    """Read these subscriptions' balances again; return each compared chain and its break.

    Only a balance read after the rows is compared (one Moesif no longer knows is not).
    """
    with sessions.begin() as session:
        for subscription_id in subscription_ids:
            directory.read_again(session, subscription_id)
    compared: list[tuple[Chain, BalanceBreak | None]] = []
    with sessions() as session:
        reported = reported_balances(session, subscription_ids)
        for chain in chains(session, subscription_ids):
            balance = reported.get(chain.subscription_id)
            if not _read_after(chain, balance):
                continue
            found = _check(chain, balance, amount_unit)
            if found.reported:
                mismatch = [each for each in found.breaks if each.kind == REPORTED]
                compared.append((chain, mismatch[0] if mismatch else None))
    log.info(
        "read %d subscription balance(s) again to confirm a disagreement with the rows",
        len(subscription_ids),
    )
    return compared


def _check(chain: Chain, balance: ReportedBalance | None, amount_unit: AmountUnit) -> ChainCheck:
    """Check the chain's rows, and its reported balance against the row of its sequence."""
    if balance is None or balance.sequence_id is None:
        return balance_breaks(chain.rows, None)
    minor = _minor(chain, balance, amount_unit)
    return balance_breaks(chain.rows, minor, reported_at=balance.sequence_id)


def _read_after(chain: Chain, balance: ReportedBalance | None) -> bool:
    """Whether the balance was read after the chain's rows were last read."""
    return balance is not None and balance.read_at >= chain.read_at


def break_finding(chain: Chain, found: BalanceBreak) -> dict[str, object]:
    """Return a break as a finding record: flagged, named by its two rows, never posted."""
    row = found.earlier_id if found.later_id == REPORTED else found.later_id
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


def _minor(chain: Chain, balance: ReportedBalance, amount_unit: AmountUnit) -> int:
    """Return the reported balance in minor units of the chain's currency."""
    currency = chain.rows[-1].currency or balance.currency or "usd"
    amount = Decimal(balance.current_balance)
    if amount_unit == "minor":
        return int(amount)
    return round_to_minor(amount, currency)
