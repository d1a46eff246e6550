"""What the review page reads from the snapshot: runs, drift over time, a finding's records."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from reconcile.db.expected import movement_of
from reconcile.db.finding_states import drift_at_runs, open_at_runs, open_states
from reconcile.db.ledger import rows_naming
from reconcile.db.models import ExpectedRow, FindingState, LedgerEntry, Run
from reconcile.db.postings import confirmed_of_run
from reconcile.db.runs import recent_runs as latest_runs
from reconcile.db.subscriptions import kept_balances, kept_currencies
from reconcile.domain.money import is_iso_currency, to_major
from reconcile.operator.console.money_view import CurrencyTotals, headline, shown
from reconcile.operator.notify import posted_entry

RUNS_SHOWN = 30
"""Runs on the runs page and in the chart."""


def recent_runs(session: Session, limit: int = RUNS_SHOWN) -> list[Run]:
    """Return the latest runs, newest first."""
    return latest_runs(session, limit)


@dataclass(frozen=True)
class DriftOverTime:
    """Open findings at the end of each run: counts per category, amounts per category+currency."""

    moments: list[datetime]
    counts: dict[str, dict[datetime, Decimal]]
    amounts: dict[str, dict[datetime, Decimal]]


def drift_over_time(session: Session, runs: list[Run]) -> DriftOverTime:
    """Return what was open when each run ended, summed by the database per run and category.

    A finding is open at a moment when it was first seen by then and not closed before it.
    """
    at = {run.id: run.finished_at or run.started_at for run in runs}
    counts: dict[str, dict[datetime, Decimal]] = defaultdict(dict)
    amounts: dict[str, dict[datetime, Decimal]] = defaultdict(dict)
    for run_id, category, currency, count, amount in open_at_runs(session, list(at)):
        when = at[run_id]
        by_time = counts[category]
        by_time[when] = by_time.get(when, Decimal(0)) + count
        if currency and len(currency) == 3 and currency.isascii() and currency.isalpha():
            label = f"{category} ({currency.upper()})"
            amounts[label][when] = to_major(amount, currency)
    return DriftOverTime(sorted(at.values()), dict(counts), dict(amounts))


@dataclass(frozen=True)
class CurrencyDrift:
    """One currency's open drift at the end of each run, owed and over-credited apart.

    ``owed`` holds what customers were owed (positive), ``over`` what Moesif held too much
    (zero or negative), both in major units of ``currency``, by the moment the run ended.
    """

    currency: str
    owed: dict[datetime, Decimal]
    over: dict[datetime, Decimal]


def drift_per_currency(session: Session, runs: list[Run]) -> list[CurrencyDrift]:
    """Return, per currency (by code), what was owed and over-credited when each run ended.

    Amounts of two currencies are never added: each gets its own line-up. A currency shows when
    anything of it was open at any of ``runs``.
    """
    at = {run.id: run.finished_at or run.started_at for run in runs}
    owed: dict[str, dict[datetime, Decimal]] = defaultdict(dict)
    over: dict[str, dict[datetime, Decimal]] = defaultdict(dict)
    for run_id, currency, owed_minor, over_minor in drift_at_runs(session, list(at)):
        if not is_iso_currency(currency):
            continue
        code, when = currency.lower(), at[run_id]
        owed[code][when] = owed[code].get(when, Decimal(0)) + to_major(owed_minor, code)
        over[code][when] = over[code].get(when, Decimal(0)) + to_major(over_minor, code)
    return [
        CurrencyDrift(code, owed[code], over[code])
        for code in sorted(
            code for code in owed if any(owed[code].values()) or any(over[code].values())
        )
    ]


@dataclass(frozen=True)
class Records:
    """The Stripe movement and the Moesif rows a finding is about, as label/value pairs."""

    stripe: list[tuple[str, str]]
    moesif: list[list[tuple[str, str]]]


def records_of(session: Session, state: FindingState) -> Records:
    """Return the snapshot's Stripe movement and Moesif rows behind a finding.

    Both sides' amounts are shown the same way, in major units with their currency
    (``10.50 USD`` against ``1,050.00 USD``); Moesif's amount as written stays beside it.
    """
    stripe: list[tuple[str, str]] = []
    if state.transaction_id:
        movement = movement_of(session, state.transaction_id)
        if movement is not None:
            stripe = _pairs(movement, _STRIPE_FIELDS)
            stripe.insert(_after(stripe, "entry_type"), ("amount", _amount(movement, state)))
    moesif = []
    for row in rows_naming(session, state.moesif_id, state.transaction_id):
        pairs = [
            ("amount as Moesif wrote it" if label == "amount_raw" else label, value)
            for label, value in _pairs(row, _MOESIF_FIELDS)
        ]
        pairs.insert(_after(pairs, "entry_type"), ("amount", _amount(row, state)))
        moesif.append(pairs)
    return Records(stripe, moesif)


def _amount(row: ExpectedRow | LedgerEntry, state: FindingState) -> str:
    """Return a record's amount in major units and currency (the finding's if it names none)."""
    return shown(int(row.amount_minor), row.currency or state.currency)


def _after(pairs: list[tuple[str, str]], name: str) -> int:
    names = [label for label, _ in pairs]
    return names.index(name) + 1 if name in names else 0


_STRIPE_FIELDS = (
    "transaction_id", "source", "entry_type", "currency", "created_at",
    "stripe_object_id", "topup_id", "stripe_customer_id", "company_id", "subscription_id",
    "unmapped_reason",
)  # fmt: skip
_MOESIF_FIELDS = (
    "moesif_id", "transaction_id", "entry_type", "amount_raw", "currency", "company_id",
    "subscription_id", "created_at", "description", "first_seen_at", "last_seen_at",
)  # fmt: skip


def _pairs(row: object, fields: tuple[str, ...]) -> list[tuple[str, str]]:
    pairs = []
    for name in fields:
        value = getattr(row, name)
        if value is None:
            continue
        text = value.isoformat() if isinstance(value, datetime) else str(value)
        pairs.append((name, text))
    return pairs


def money_headline(session: Session, last_run: Run | None) -> Headline:
    """Return the front page's totals per currency: open findings, and the last run's postings.

    Owed and over-credited sum the signed deltas of the open findings; a finding owing a
    customer whose subscription Moesif last showed with no available credit counts as blocked.
    Posted is what ``last_run`` posted automatically (nothing for a dry run).
    """
    states = open_states(session)
    balances = kept_balances(session, {s.subscription_id for s in states if s.subscription_id})
    deltas = [
        (
            state.currency,
            state.delta_minor,
            state.subscription_id is not None and balances.get(state.subscription_id, 1) <= 0,
        )
        for state in states
    ]
    posted = (
        [posted_entry(posting) for posting in confirmed_of_run(session, last_run.id)]
        if last_run is not None and not last_run.dry_run
        else []
    )
    return Headline(last_run, headline(deltas, posted))


@dataclass(frozen=True)
class Headline:
    """The front page's money at a glance, and the run whose postings it counts."""

    run: Run | None
    totals: list[CurrencyTotals]


def subscription_currencies(session: Session) -> dict[str, str | None]:
    """Return each kept subscription's currency, by subscription id."""
    return {sid: kept.currency for sid, kept in kept_currencies(session).items()}
