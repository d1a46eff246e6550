"""Per-subscription balance check: Stripe's net against Moesif's net and Moesif's own balance.

The nets are summed by the database (``GROUP BY``) from the snapshot; each subscription's current
balance, pending activity and available balance are read from Moesif, one request each, under
the rate limiter. Rows whose delta is not zero come first, and among them customers Moesif
blocks (available balance zero or less) while they are owed credit.
"""

from __future__ import annotations

import csv
import logging
import os
import secrets
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Literal

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from reconcile.config import Settings
from reconcile.db.balances import Key, confirmed_unseen_nets, moesif_nets, stripe_nets
from reconcile.db.engine import describe, make_engine, upgrade_to_head
from reconcile.db.finding_states import open_counts_by_subscription
from reconcile.domain.money import exponent, format_major
from reconcile.errors import DatabaseUnavailable
from reconcile.moesif.client import (
    MoesifClient,
    Subscription,
    open_http_client,
)
from reconcile.retry import RateLimiter

log = logging.getLogger(__name__)

BALANCE_COLUMNS = [
    "company_id",
    "subscription_id",
    "currency",
    "stripe_net",
    "moesif_net",
    "delta",
    "current_balance",
    "pending_activity",
    "available_balance",
    "open_findings",
]
"""Columns of ``balances-{run_id}.csv``, in the contract's order."""

_FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Balance:
    """Moesif's three figures of one subscription, in major units."""

    current_balance: Decimal
    pending_activity: Decimal
    available_balance: Decimal


@dataclass(frozen=True)
class BalanceRow:
    """One subscription and currency: the nets in minor units, Moesif's balance if known."""

    company_id: str
    subscription_id: str
    currency: str
    stripe_net_minor: int
    moesif_net_minor: int
    balance: Balance | None
    open_findings: int

    @property
    def delta_minor(self) -> int:
        """Return the correction the balance needs: positive when the customer is owed."""
        return self.stripe_net_minor - self.moesif_net_minor

    @property
    def blocked(self) -> bool:
        """Return whether Moesif shows no available credit (zero or less)."""
        return self.balance is not None and self.balance.available_balance <= 0

    @property
    def blocked_but_owed(self) -> bool:
        """Return whether the customer is blocked while Stripe says they are owed credit."""
        return self.blocked and self.delta_minor > 0


# Rules: plain values in, plain values out.


def merge_nets(
    stripe: Mapping[Key, int], moesif: Mapping[Key, int], confirmed: Mapping[Key, int]
) -> dict[Key, tuple[int, int]]:
    """Return (Stripe net, Moesif net) per key; confirmed postings count on Moesif's side."""
    keys = set(stripe) | set(moesif) | set(confirmed)
    return {key: (stripe.get(key, 0), moesif.get(key, 0) + confirmed.get(key, 0)) for key in keys}


def order_rows(rows: Iterable[BalanceRow]) -> list[BalanceRow]:
    """Return rows with a non-zero delta first, blocked customers first among them.

    Then by the size of the delta, largest first, then by company and subscription.
    """
    return sorted(
        rows,
        key=lambda row: (
            row.delta_minor == 0,
            not row.blocked,
            -abs(row.delta_minor),
            row.company_id,
            row.subscription_id,
            row.currency,
        ),
    )


def exit_code_of(rows: Sequence[BalanceRow]) -> int:
    """Return 1 when any delta is not zero, else 0."""
    return 1 if any(row.delta_minor for row in rows) else 0


def balance_from_moesif(
    subscription: Subscription, amount_unit: Literal["major", "minor"], currency: str
) -> Balance:
    """Return Moesif's figures in major units (they are minor units when Moesif keeps cents)."""
    places = exponent(currency) if amount_unit == "minor" else 0
    return Balance(
        current_balance=subscription.current_balance.scaleb(-places),
        pending_activity=subscription.pending_activity.scaleb(-places),
        available_balance=subscription.available_balance.scaleb(-places),
    )


def csv_cells(row: BalanceRow) -> list[str]:
    """Return one CSV row: decimal strings in major units, text safe from spreadsheets."""
    figures = row.balance
    return [
        _neutralise(row.company_id),
        _neutralise(row.subscription_id),
        _neutralise(row.currency),
        _major(row.stripe_net_minor, row.currency),
        _major(row.moesif_net_minor, row.currency),
        _major(row.delta_minor, row.currency),
        "" if figures is None else str(figures.current_balance),
        "" if figures is None else str(figures.pending_activity),
        "" if figures is None else str(figures.available_balance),
        str(row.open_findings),
    ]


def _major(minor: int, currency: str) -> str:
    return format_major(minor, currency) if _is_code(currency) else str(minor)


def _is_code(currency: str) -> bool:
    return len(currency) == 3 and currency.isascii() and currency.isalpha()


def _neutralise(cell: str) -> str:
    return "'" + cell if cell.startswith(_FORMULA_TRIGGERS) else cell


# The command's work.


def read_balances(
    moesif: MoesifClient,
    subscription_ids: Iterable[str],
    amount_unit: Literal["major", "minor"],
    currency_of: Mapping[str, str],
) -> dict[str, Balance | None]:
    """Read each subscription's balance from Moesif once; ``None`` when Moesif has no such id.

    Every request waits for the client's rate limiter, so the batch's share of Moesif's budget
    is never exceeded.
    """
    balances: dict[str, Balance | None] = {}
    for subscription_id in subscription_ids:
        found = moesif.subscription(subscription_id)
        currency = (found.currency if found else None) or currency_of[subscription_id]
        balances[subscription_id] = (
            None if found is None else balance_from_moesif(found, amount_unit, currency)
        )
    return balances


@dataclass(frozen=True)
class Snapshot:
    """What the snapshot says per subscription: the nets, and open findings."""

    nets: dict[Key, tuple[int, int]]
    open_counts: dict[tuple[str | None, str | None], int]

    def currency_of(self) -> dict[str, str]:
        """Return a currency per subscription id, to read Moesif's amounts in."""
        return {subscription: currency for _, subscription, currency in sorted(self.nets)}


def read_snapshot(session: Session, companies: Sequence[str] = ()) -> Snapshot:
    """Return the nets and open-finding counts, each summed by the database."""
    nets = merge_nets(
        stripe_nets(session, companies),
        moesif_nets(session, companies),
        confirmed_unseen_nets(session, companies),
    )
    return Snapshot(nets, open_counts_by_subscription(session))


def build_rows(snapshot: Snapshot, balances: Mapping[str, Balance | None]) -> list[BalanceRow]:
    """Return the ordered balance rows from the snapshot's nets and Moesif's balances."""
    rows = [
        BalanceRow(
            company_id=company,
            subscription_id=subscription,
            currency=currency,
            stripe_net_minor=stripe_net,
            moesif_net_minor=moesif_net,
            balance=balances.get(subscription),
            open_findings=snapshot.open_counts.get((company, subscription), 0),
        )
        for (company, subscription, currency), (stripe_net, moesif_net) in snapshot.nets.items()
    ]
    return order_rows(rows)


def balances_run_id(now: datetime) -> str:
    """Return a sortable, unique id for one balance check, like a run's."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def write_balances(rows: Sequence[BalanceRow], run_id: str, report_dir: Path) -> Path:
    """Write ``{report_dir}/balances-{run_id}.csv`` atomically and return its path."""
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / f"balances-{run_id}.csv"
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=report_dir)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            writer = csv.writer(stream, lineterminator="\n")
            writer.writerow(BALANCE_COLUMNS)
            writer.writerows(csv_cells(row) for row in rows)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def summary_line(rows: Sequence[BalanceRow], path: Path) -> str:
    """Return the one-paragraph terminal summary of a balance check."""
    drifted = sum(1 for row in rows if row.delta_minor)
    blocked = sum(1 for row in rows if row.delta_minor and row.blocked)
    unknown = sum(1 for row in rows if row.balance is None)
    lines = [
        f"subscriptions: {len(rows)}",
        f"with a non-zero delta: {drifted} (blocked in Moesif: {blocked})",
    ]
    if unknown:
        lines.append(f"not found in Moesif: {unknown}")
    lines.append(f"balances: {path}")
    return "\n".join(lines)


# The command: optionally fill the snapshot, then compute, read and write.

SnapshotFill = Callable[[Settings, datetime, Sequence[str], Path], int]
"""Fills the snapshot from a time to now for some companies (all when none), reports in a
folder, and returns the exit code; the command line passes a dry run of the job."""


@dataclass(frozen=True)
class BalanceCheck:
    """What one balance check found and where it wrote it."""

    rows: tuple[BalanceRow, ...]
    path: Path
    exit_code: int


def check_balances(
    settings: Settings,
    *,
    companies: Sequence[str] = (),
    report_dir: Path | None = None,
    since: datetime | None = None,
    clock: Callable[[], datetime],
    limiter: RateLimiter | None = None,
    fill: SnapshotFill | None = None,
) -> BalanceCheck:
    """Check every subscription's balance and write the CSV; exit code 1 if any delta is not 0.

    With ``since``, ``fill`` first fills the snapshot from then to now.

    Raises:
        ReconcileError: the database, Moesif or (while filling) Stripe failed; its exit code.
        ValueError: ``since`` without ``fill``.
    """
    directory = report_dir or settings.report_dir
    if since is not None:
        if fill is None:
            raise ValueError("filling the snapshot from `since` needs `fill`")
        fill(settings, since, companies, directory)
    engine = make_engine(settings.database_url)
    try:
        upgrade_to_head(engine)
        sessions = sessionmaker(engine, expire_on_commit=False)
        with open_http_client(settings) as http:
            moesif = MoesifClient(
                http,
                settings.moesif_token,
                policy=settings.retry_policy(),
                limiter=limiter or RateLimiter(settings.moesif_requests_per_minute, 60.0),
                read_cap=settings.moesif_read_cap,
            )
            with sessions() as session:
                snapshot = read_snapshot(session, companies)
            # Read outside the database transaction: at the rate limit this can take minutes.
            currency_of = snapshot.currency_of()
            balances = read_balances(
                moesif, sorted(currency_of), settings.moesif_amount_unit, currency_of
            )
            rows = build_rows(snapshot, balances)
    except SQLAlchemyError as error:
        raise DatabaseUnavailable(f"snapshot database failed: {describe(error)}") from None
    finally:
        engine.dispose()
    path = write_balances(rows, balances_run_id(clock()), directory)
    return BalanceCheck(tuple(rows), path, exit_code_of(rows))
