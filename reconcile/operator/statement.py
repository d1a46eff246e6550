"""``reconcile statement``: a subscription's statement from the snapshot, as CSV or HTML.

What the snapshot holds becomes the plain values :func:`reconcile.rules.statement.build_statement`
takes: the Stripe movements the runs stored beside the ledger rows they produced, the ledger's
own rows (usage summed per day), the open findings by ``transaction_id``, the opening balance
(the ledger rows before ``since``) and the closing one (the opening plus the rows up to
``until``), and, when the statement runs up to now, the balance Moesif reports. A posting Moesif
confirmed that no stored row shows yet counts as a row of the ledger, as the balance check
counts it. A row a finding pairs with a Stripe movement (``matched_by_amount``,
``duplicate_in_moesif``) stands beside that movement.

One statement is one subscription in one currency: a company with several subscriptions names
one with ``--subscription``. Stripe movements in another currency than the subscription's are
left out (each is a ``currency_mismatch`` finding of its own).
"""

from __future__ import annotations

import csv
import html
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Literal, TextIO

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from reconcile.config import Settings
from reconcile.db.engine import describe, make_engine, upgrade_to_head
from reconcile.db.finding_states import open_states
from reconcile.db.models import FindingState
from reconcile.db.statements import (
    StoredMovement,
    StoredRow,
    company_subscriptions,
    confirmed_postings_between,
    ledger_rows_between,
    ledger_sum_before,
    pairings,
    stripe_movements_between,
)
from reconcile.domain.ids import posted_transaction_id
from reconcile.domain.money import exponent
from reconcile.domain.vocab import ROW_CATEGORIES, Category
from reconcile.errors import DatabaseUnavailable, ExitCode, UsageError
from reconcile.files import write_atomically
from reconcile.report import neutralise
from reconcile.rules.balance_chain import BALANCE_BREAK
from reconcile.rules.statement import (
    AMOUNT_COLUMNS,
    COLUMNS,
    LedgerMovement,
    Statement,
    StripeMovement,
    build_statement,
    statement_rows,
    tie_out_lines,
)

__all__ = [
    "Heading",
    "StatementRequest",
    "StatementResult",
    "UnknownCompany",
    "make_statement",
    "moesif_balances",
    "read_statement",
    "tie_out_lines",
    "write_statement",
]

Format = Literal["csv", "html"]

_STRIPE_KINDS = {
    "topup": "top_up",
    "refund": "refund",
    "dispute": "dispute",
    "dispute_reversal": "dispute_reinstated",
    "refund_failure": "refund",
}
_STRIPE_DESCRIPTIONS = {"refund_failure": "Refund failed, credit returned"}
_OWN_KINDS = {
    "credit": "manual_credit",
    "debit": "manual_debit",
    "promotion": "promotion",
    "adjustment": "correction",
}
_DEBITS = frozenset({"debit", "usage"})
CORRECTION_PREFIX = "corr_"
"""How the ``transaction_id`` of a correction the job posted begins."""
PAIRING = (Category.DUPLICATE_IN_MOESIF.value, Category.MATCHED_BY_AMOUNT.value)
"""Categories whose finding pairs a ledger row with the Stripe movement it records."""


class UnknownCompany(UsageError):
    """The snapshot knows no such company, or not the subscription asked for."""


# Rules: plain values in, plain values out.


def signed(entry_type: str, amount_minor: int) -> int:
    """Return an unsigned snapshot amount signed as it moves the balance (debits, usage: minus)."""
    return -amount_minor if entry_type in _DEBITS else amount_minor


def stripe_movement(stored: StoredMovement) -> StripeMovement:
    """Return a stored Stripe movement as a statement's movement."""
    return StripeMovement(
        kind=_STRIPE_KINDS.get(stored.source, "top_up"),
        stripe_id=stored.stripe_object_id,
        transaction_id=stored.transaction_id,
        amount=signed(stored.entry_type, stored.amount_minor),
        at=stored.created_at,
        description=_STRIPE_DESCRIPTIONS.get(stored.source, ""),
    )


def own_kind(row: StoredRow) -> str:
    """Return the statement kind of a ledger row no Stripe movement stands beside."""
    if row.transaction_id and row.transaction_id.startswith(CORRECTION_PREFIX):
        return "correction"
    return _OWN_KINDS.get(row.entry_type, "manual_credit")


def unseen_postings(rows: Sequence[StoredRow], postings: Iterable[StoredRow]) -> list[StoredRow]:
    """Return the confirmed postings no stored row shows, by id or by the job's description."""
    shown = {row.transaction_id for row in rows if row.transaction_id}
    shown |= {tid for row in rows if (tid := posted_transaction_id(row.description))}
    return [posting for posting in postings if posting.transaction_id not in shown]


def split_ledger(
    rows: Iterable[StoredRow], paired: Mapping[str, str]
) -> tuple[list[LedgerMovement], dict[date, int]]:
    """Return the rows as ledger movements, usage summed per day apart.

    ``paired`` maps a row's ``moesif_id`` to the Stripe ``transaction_id`` a finding pairs it
    with; the row then carries that id, so it stands beside its movement.
    """
    movements: list[LedgerMovement] = []
    usage: dict[date, int] = {}
    for row in rows:
        amount = signed(row.entry_type, row.amount_minor)
        if row.entry_type == "usage":
            day = row.created_at.date()
            usage[day] = usage.get(day, 0) + amount
            continue
        transaction_id = paired.get(row.moesif_id, row.transaction_id)
        movements.append(
            LedgerMovement(
                own_kind(row),
                row.moesif_id,
                transaction_id,
                amount,
                row.created_at,
                row.description or "",
            )
        )
    return movements, usage


def row_finding_index(states: Iterable[FindingState], subscription_id: str) -> dict[str, str]:
    """Return the open findings about one ledger row of the subscription, by ``moesif_id``."""
    return {
        state.moesif_id: state.finding_id
        for state in sorted(states, key=lambda s: s.finding_id, reverse=True)
        if state.category in ROW_CATEGORIES
        and state.moesif_id
        and state.subscription_id == subscription_id
    }


def finding_index(
    states: Iterable[FindingState], subscription_id: str
) -> tuple[dict[str, str], dict[str, str], str | None]:
    """Return the open findings by ``transaction_id``, the row pairings, and the balance break.

    A movement with several findings is named by the one that is not a mere pairing.
    """
    by_transaction: dict[str, str] = {}
    paired: dict[str, str] = {}
    balance_break = None
    for state in sorted(states, key=lambda s: (s.category in PAIRING, s.finding_id)):
        if state.category == BALANCE_BREAK:
            if state.subscription_id == subscription_id and balance_break is None:
                balance_break = state.finding_id
            continue
        if state.transaction_id:
            by_transaction.setdefault(state.transaction_id, state.finding_id)
            if state.category in PAIRING and state.moesif_id:
                paired[state.moesif_id] = state.transaction_id
    return by_transaction, paired, balance_break


def statement_run_id(now: datetime) -> str:
    """Return a sortable, unique id for one statement, like a run's."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def exit_code_of(statement: Statement) -> int:
    """Return 0 when the statement ties out, else 1."""
    return int(ExitCode.OK if statement.tie_out.ties_out else ExitCode.DRIFT)


def csv_rows(statement: Statement) -> list[list[str]]:
    """Return the statement's CSV rows: text cells neutralised, amounts as they are."""
    return [
        [
            cell if name in AMOUNT_COLUMNS else neutralise(cell)
            for name, cell in zip(COLUMNS, row, strict=True)
        ]
        for row in statement_rows(statement)
    ]


def write_csv(statement: Statement, stream: TextIO) -> None:
    """Write the statement as CSV: the header, then one row per line."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(csv_rows(statement))


@dataclass(frozen=True)
class Heading:
    """Whose statement it is and over which window."""

    company_id: str
    subscription_id: str
    since: datetime
    until: datetime


def _css_class(column: str) -> str:
    return "amount" if column in AMOUNT_COLUMNS else column


def html_page(statement: Statement, heading: Heading) -> str:
    """Return the statement as one self-contained HTML page, every text escaped."""
    escape = html.escape
    title = (
        f"Statement of {heading.company_id} / {heading.subscription_id}, "
        f"{heading.since.date().isoformat()} to {heading.until.date().isoformat()}"
    )
    header = "".join(f"<th>{escape(name)}</th>" for name in COLUMNS)
    body = "".join(
        "<tr class='line kind-"
        + escape(row[1])
        + "'>"
        + "".join(
            f"<td class='{_css_class(name)}'>{escape(cell)}</td>"
            for name, cell in zip(COLUMNS, row, strict=True)
        )
        + "</tr>"
        for row in statement_rows(statement)
    )
    verdict = "ties out" if statement.tie_out.ties_out else "does not tie out"
    tie = "".join(f"<li>{escape(line)}</li>" for line in tie_out_lines(statement))
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "th,td{border:1px solid #ccc;padding:.25em .5em}td.amount{text-align:right}"
        "tr.kind-opening,tr.kind-closing{font-weight:bold}"
        "</style></head><body>"
        f"<h1>{escape(title)}</h1>"
        f"<table id='statement'><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"
        f"<h2>Tie-out: <span id='verdict'>{verdict}</span></h2>"
        f"<ul id='tie-out'>{tie}</ul></body></html>\n"
    )


def _write_text(stream: TextIO, text: str) -> None:
    stream.write(text)


# The command's work.


@dataclass(frozen=True)
class StatementRequest:
    """What to state: a company (one of its subscriptions), a window, a format."""

    company_id: str
    since: datetime
    until: datetime | None = None
    subscription_id: str | None = None
    fmt: Format = "csv"


ReportedBalance = Callable[[str, str], int | None]
"""Returns the balance Moesif reports now for (subscription id, currency), in minor units."""


@dataclass(frozen=True)
class StatementResult:
    """A statement, where it was written, and its exit code."""

    heading: Heading
    statement: Statement
    path: Path
    exit_code: int


def choose_subscription(
    subscriptions: Mapping[str, str | None], company_id: str, wanted: str | None
) -> str:
    """Return the subscription to state, or say in one line why there is none.

    Raises:
        UnknownCompany: the company is unknown, the subscription not its own, or it has
            several and none was named.
    """
    if not subscriptions:
        raise UnknownCompany(f"unknown company {company_id!r}: the snapshot holds nothing of it")
    if wanted is not None:
        if wanted not in subscriptions:
            raise UnknownCompany(
                f"company {company_id!r} has no subscription {wanted!r} "
                f"(it has: {', '.join(sorted(subscriptions))})"
            )
        return wanted
    if len(subscriptions) > 1:
        raise UnknownCompany(
            f"company {company_id!r} has several subscriptions; name one with --subscription "
            f"({', '.join(sorted(subscriptions))})"
        )
    return next(iter(subscriptions))


def read_statement(
    session: Session,
    request: StatementRequest,
    until: datetime,
    reported: ReportedBalance | None,
) -> tuple[Heading, Statement]:
    """Build the statement of ``request`` from the snapshot (and Moesif's balance, if asked).

    Raises:
        UnknownCompany: see :func:`choose_subscription`.
    """
    subscriptions = company_subscriptions(session, request.company_id)
    subscription_id = choose_subscription(
        subscriptions, request.company_id, request.subscription_id
    )
    rows = ledger_rows_between(session, subscription_id, request.since, until)
    currency = subscriptions[subscription_id] or next(
        (row.currency.lower() for row in rows if row.currency), "usd"
    )
    postings = confirmed_postings_between(session, subscription_id, request.since, until)
    rows = [*rows, *unseen_postings(rows, postings)]
    states = open_states(session, companies=[request.company_id])
    findings, paired, balance_break = finding_index(states, subscription_id)
    paired = {**pairings(session, subscription_id, PAIRING), **paired}
    movements = [
        stripe_movement(stored)
        for stored in stripe_movements_between(session, subscription_id, request.since, until)
        if stored.currency == currency
    ]
    ledger, usage = split_ledger(rows, paired)
    opening = ledger_sum_before(session, subscription_id, request.since)
    closing = opening + sum(row.amount for row in ledger) + sum(usage.values())
    statement = build_statement(
        currency=currency,
        since=request.since,
        until=until,
        opening=opening,
        stripe=movements,
        ledger=ledger,
        usage=usage,
        findings=findings,
        closing=closing,
        reported=None if reported is None else reported(subscription_id, currency),
        balance_finding_id=balance_break,
        row_findings=row_finding_index(states, subscription_id),
    )
    heading = Heading(request.company_id, subscription_id, request.since, until)
    return heading, statement


def statement_path(report_dir: Path, company_id: str, run_id: str, fmt: Format) -> Path:
    """Return ``{report_dir}/statement-{company_id}-{run_id}.{fmt}``, the company id made safe."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in company_id).lstrip(".")
    return report_dir / f"statement-{safe or '_'}-{run_id}.{fmt}"


def write_statement(statement: Statement, heading: Heading, path: Path, fmt: Format) -> Path:
    """Write the statement atomically as CSV or HTML and return its path."""
    if fmt == "html":
        page = html_page(statement, heading)
        write_atomically(path, lambda stream: _write_text(stream, page))
    else:
        write_atomically(path, lambda stream: write_csv(statement, stream))
    return path


def make_statement(
    settings: Settings,
    request: StatementRequest,
    *,
    clock: Callable[[], datetime],
    reported: ReportedBalance | None,
    report_dir: Path | None = None,
) -> StatementResult:
    """Build the statement from the snapshot, write it, and return it with its exit code.

    ``reported`` is asked only when the statement runs up to now (no ``until``).

    Raises:
        UnknownCompany: see :func:`choose_subscription`.
        ReconcileError: the database or Moesif failed; its exit code.
    """
    now = clock()
    until = request.until or now
    engine = make_engine(settings.database_url)
    try:
        upgrade_to_head(engine)
        sessions = sessionmaker(engine, expire_on_commit=False)
        with sessions() as session:
            heading, statement = read_statement(
                session, request, until, reported if request.until is None else None
            )
    except SQLAlchemyError as error:
        raise DatabaseUnavailable(f"snapshot database failed: {describe(error)}") from None
    finally:
        engine.dispose()
    directory = report_dir or settings.report_dir
    path = statement_path(directory, request.company_id, statement_run_id(now), request.fmt)
    write_statement(statement, heading, path, request.fmt)
    return StatementResult(heading, statement, path, exit_code_of(statement))


@contextmanager
def moesif_balances(settings: Settings) -> Iterator[ReportedBalance]:
    """Yield a reader of the balance Moesif reports now, in minor units (one request each)."""
    from reconcile.moesif.client import MoesifClient, open_http_client
    from reconcile.retry import RateLimiter

    with open_http_client(settings) as http:
        moesif = MoesifClient(
            http,
            settings.moesif_token,
            policy=settings.retry_policy(),
            limiter=RateLimiter(settings.moesif_requests_per_minute, 60.0),
            read_cap=settings.moesif_read_cap,
        )

        def read(subscription_id: str, currency: str) -> int | None:
            found = moesif.subscription(subscription_id)
            if found is None:
                return None
            places = exponent(currency) if settings.moesif_amount_unit == "major" else 0
            return int(found.current_balance.scaleb(places))

        yield read
