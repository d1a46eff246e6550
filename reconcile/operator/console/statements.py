"""A company's page and its statement on the review page: what to show, read from the snapshot.

The console states a subscription from the snapshot alone (it holds no Moesif client), so its
tie-out compares the movements with the ledger; ``reconcile statement`` adds the balance Moesif
reports now.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from reconcile.db.statements import company_subscriptions
from reconcile.domain.times import parse_when
from reconcile.operator.statement import (
    Heading,
    StatementRequest,
    csv_rows,
    read_statement,
    write_csv,
)
from reconcile.rules.statement import AMOUNT_COLUMNS, COLUMNS, Statement, tie_out_lines

DEFAULT_SPAN = timedelta(days=30)
"""How far back a statement opens when the page names no start."""


@dataclass(frozen=True)
class Window:
    """The statement's window as the page asked for it, or why it cannot be had."""

    since: datetime
    until: datetime
    error: str = ""


def window_of(since: str, until: str, now: datetime) -> Window:
    """Return the window the query asks for: ``[now - 30 days, now)`` by default."""
    try:
        end = parse_when(until) if until.strip() else now
        start = parse_when(since) if since.strip() else end - DEFAULT_SPAN
    except ValueError as error:
        return Window(now - DEFAULT_SPAN, now, str(error))
    if start >= end:
        return Window(now - DEFAULT_SPAN, now, "the start must be before the end")
    return Window(start, end)


def subscriptions_of(session: Session, company_id: str) -> list[tuple[str, str]]:
    """Return the company's subscriptions with their currency (upper case, blank if unknown)."""
    found = company_subscriptions(session, company_id)
    return [(sub, (currency or "").upper()) for sub, currency in sorted(found.items())]


def statement_of(
    session: Session, company_id: str, subscription_id: str | None, window: Window
) -> tuple[Heading, Statement]:
    """Return the subscription's statement over the window, from the snapshot alone.

    Raises:
        UnknownCompany: the company or the subscription is unknown, or none was named.
    """
    request = StatementRequest(
        company_id=company_id, subscription_id=subscription_id, since=window.since
    )
    return read_statement(session, request, window.until, None)


def table_of(statement: Statement) -> list[list[tuple[str, str, bool]]]:
    """Return the statement's rows as (column, cell, is an amount) for the template."""
    return [
        [(name, cell, name in AMOUNT_COLUMNS) for name, cell in zip(COLUMNS, row, strict=True)]
        for row in csv_rows(statement)
    ]


def csv_text(statement: Statement) -> str:
    """Return the statement's CSV, as ``reconcile statement`` writes it."""
    buffer = io.StringIO()
    write_csv(statement, buffer)
    return buffer.getvalue()


def download_name(heading: Heading) -> str:
    """Return the CSV's file name: company, subscription and window, made safe."""
    raw = (
        f"statement-{heading.company_id}-{heading.subscription_id}-"
        f"{heading.since.date().isoformat()}-{heading.until.date().isoformat()}.csv"
    )
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in raw)


__all__ = [
    "COLUMNS",
    "Window",
    "csv_text",
    "download_name",
    "statement_of",
    "subscriptions_of",
    "table_of",
    "tie_out_lines",
    "window_of",
]
