"""Queries on the findings lifecycle: list open findings, read one, close them with a note."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, Table, and_, case, func, or_, select, true
from sqlalchemy.orm import Session

from reconcile.db.frames import among, fewer
from reconcile.db.models import (
    ExpectedRow,
    Finding,
    FindingNote,
    FindingState,
    MoesifSubscription,
    Run,
    WebhookEvent,
)
from reconcile.db.sql import insert_columns
from reconcile.domain import ids
from reconcile.domain.money import THREE_DECIMAL, ZERO_DECIMAL, is_iso_currency
from reconcile.domain.vocab import (
    NEEDS_REVIEW,
    RUN_ACTOR,
    Action,
    ClosedBy,
    EventStatus,
    FindingStatus,
    NoteAction,
    NoteSource,
)
from reconcile.rules.priority import PriorityRules

_Query = TypeVar("_Query", bound=Select[Any])


class UnknownFinding(LookupError):
    """One or more finding ids are not in ``finding_states``; nothing was closed."""

    def __init__(self, finding_ids: Sequence[str]) -> None:
        """Name the unknown ids."""
        self.finding_ids = tuple(finding_ids)
        super().__init__(f"unknown finding id(s): {', '.join(self.finding_ids)}")


@dataclass(frozen=True)
class FindingFilter:
    """Which findings to list; empty tuples and ``None`` mean no restriction."""

    include_closed: bool = False
    categories: tuple[str, ...] = ()
    companies: tuple[str, ...] = ()
    """Findings whose company id contains any of these, ignoring case (``acme``: ``ACME-eu``)."""
    older_than: timedelta | None = None
    """Only findings first seen at least this long before ``now``."""
    largest_first: bool = True
    """Sort by the size of the correction (``|delta|``), largest first; else oldest first."""
    limit: int | None = None


def list_findings(session: Session, where: FindingFilter, now: datetime) -> list[FindingState]:
    """Return the findings ``where`` selects, sorted as it asks."""
    query = _filtered(select(FindingState), where, now)
    size = func.abs(func.coalesce(FindingState.delta_minor, 0))
    if where.largest_first:
        query = query.order_by(size.desc(), FindingState.first_seen_at, FindingState.finding_id)
    else:
        query = query.order_by(FindingState.first_seen_at, FindingState.finding_id)
    if where.limit is not None:
        query = query.limit(where.limit)
    return list(session.scalars(query))


def amount_candidates(session: Session, where: FindingFilter, now: datetime) -> list[FindingState]:
    """Return the findings ``where`` selects that may be among its first ``limit`` by amount.

    The order by amount (:mod:`reconcile.rules.amount_rank`) ranks each finding within its own
    currency, customers blocked while owed apart, and puts findings without a known amount last.
    A finding among the first ``limit`` has fewer than ``limit`` before it in its own group, so
    these are: the ``limit`` largest of each group, and the first ``limit`` without a known
    amount. Rank them with that order and keep ``limit``; without a limit, every finding.
    """
    if where.limit is None:
        return list_findings(session, where, now)
    balance = MoesifSubscription.available_balance_minor
    joined = MoesifSubscription.subscription_id == FindingState.subscription_id
    delta, currency = FindingState.delta_minor, FindingState.currency
    present = _filtered(select(currency).distinct(), where, now)
    valid = sorted({code for code in session.scalars(present) if code and is_iso_currency(code)})
    known = and_(delta.is_not(None), currency.in_(valid))
    blocked_but_owed = case((and_(balance <= 0, delta > 0), 1), else_=0)
    place = (
        func.row_number()
        .over(
            partition_by=(blocked_but_owed, func.lower(currency)),
            order_by=(func.abs(delta).desc(), FindingState.finding_id),
        )
        .label("place")
    )
    ranked = (
        _filtered(select(FindingState.finding_id, place), where, now)
        .outerjoin(MoesifSubscription, joined)
        .where(known)
        .subquery()
    )
    largest = select(ranked.c.finding_id).where(ranked.c.place <= where.limit)
    code = case((currency.in_(valid), func.lower(currency)), else_="")
    unknown = (
        _filtered(select(FindingState.finding_id), where, now)
        .outerjoin(MoesifSubscription, joined)
        .where(or_(delta.is_(None), currency.is_(None), currency.not_in(valid)))
        .order_by(blocked_but_owed.desc(), code, FindingState.finding_id)
        .limit(where.limit)
        .subquery()
    )
    chosen = select(FindingState).where(
        or_(
            FindingState.finding_id.in_(largest),
            FindingState.finding_id.in_(select(unknown.c.finding_id)),
        )
    )
    return list(session.scalars(chosen))


def queue_candidates(
    session: Session, where: FindingFilter, now: datetime, rules: PriorityRules
) -> list[FindingState]:
    """Return the findings ``where`` selects that may be among its first ``limit`` in the queue.

    The queue sorts by priority, then due time (:mod:`reconcile.rules.priority`), then the size
    of the correction. A finding's due time is its first sighting plus an offset that depends
    only on which thresholds it has earned, so findings of one priority and one offset are due
    in the order they were first seen. A finding among the first ``limit`` of the queue is
    therefore among the first ``limit`` first seen of its (priority, offset) class: these are
    chosen here, the classes computed in SQL from the same thresholds. The caller orders them
    with the rule itself and keeps ``limit``; without a limit, every finding.
    """
    if where.limit is None:
        return list_findings(session, where, now)
    delta, currency = FindingState.delta_minor, FindingState.currency
    present = _filtered(select(currency).distinct(), where, now)
    valid = sorted({code for code in session.scalars(present) if code and is_iso_currency(code)})
    known = and_(delta.is_not(None), currency.in_(valid))
    code = func.lower(currency)
    per_major = case(
        (code.in_(sorted(ZERO_DECIMAL)), 1), (code.in_(sorted(THREE_DECIMAL)), 1000), else_=100
    )

    def by_amount(amount_major: int) -> ColumnElement[bool]:
        return and_(known, func.abs(delta) >= per_major * amount_major)

    def by_age(age: timedelta) -> ColumnElement[bool]:
        return FindingState.first_seen_at <= now - age if age > timedelta(0) else true()

    levels = rules.levels
    rank = case(
        *(
            (or_(by_amount(level.amount_major), by_age(level.age)), index)
            for index, level in enumerate(levels)
        ),
        else_=len(levels),
    )
    earned = sorted(
        [(level.due_in, by_amount(level.amount_major)) for level in levels]
        + [(level.age + level.due_in, by_age(level.age)) for level in levels],
        key=lambda pair: pair[0],
    )
    low = rules.low_due_in
    offset = case(
        *((condition, int(due.total_seconds())) for due, condition in earned if due < low),
        else_=int(low.total_seconds()),
    )  # the earliest due time a finding has earned, as seconds after its first sighting
    size = func.abs(func.coalesce(delta, 0))
    place = (
        func.row_number()
        .over(
            partition_by=(rank, offset),
            order_by=(FindingState.first_seen_at, size.desc(), FindingState.finding_id),
        )
        .label("place")
    )
    ranked = _filtered(select(FindingState.finding_id, place), where, now).subquery()
    chosen = select(ranked.c.finding_id).where(ranked.c.place <= where.limit)
    return list(session.scalars(select(FindingState).where(FindingState.finding_id.in_(chosen))))


def _filtered(query: _Query, where: FindingFilter, now: datetime) -> _Query:
    if not where.include_closed:
        query = query.where(FindingState.status.in_(sorted(NEEDS_REVIEW)))
    if where.categories:
        query = query.where(FindingState.category.in_(where.categories))
    if where.companies:
        company = func.lower(FindingState.company_id)
        query = query.where(
            or_(*(company.contains(part.lower(), autoescape=True) for part in where.companies))
        )
    if where.older_than is not None:
        query = query.where(FindingState.first_seen_at <= now - where.older_than)
    return query


def get_finding(session: Session, finding_id: str) -> FindingState | None:
    """Return one finding by its id, or ``None``."""
    return session.get(FindingState, finding_id)


def notes_of(session: Session, finding_id: str) -> list[FindingNote]:
    """Return a finding's audit trail, oldest first."""
    query = (
        select(FindingNote)
        .where(FindingNote.finding_id == finding_id)
        .order_by(FindingNote.at, FindingNote.id)
    )
    return list(session.scalars(query))


def history_of(session: Session, state: FindingState) -> list[tuple[Finding, Run]]:
    """Return the per-run findings that reported this drift, oldest run first.

    Matched on category and on the Stripe movement's or the Moesif row's id, as the id names.
    """
    ids = []
    if state.transaction_id:
        ids.append(Finding.transaction_id == state.transaction_id)
    if state.moesif_id:
        ids.append(Finding.moesif_id == state.moesif_id)
    if not ids:
        return []
    query = (
        select(Finding, Run)
        .join(Run, Run.id == Finding.run_id)
        .where(Finding.category == state.category, or_(*ids))
        .order_by(Run.started_at, Finding.id)
    )
    return [(finding, run) for finding, run in session.execute(query)]


def close_findings(
    session: Session,
    finding_ids: Sequence[str],
    status: FindingStatus,
    note: str,
    source: NoteSource,
    now: datetime,
    actor: str | None = None,
) -> list[FindingState]:
    """Close findings as ``resolved`` or ``ignored`` by an operator, with a note; does not commit.

    Every id must exist, or nothing is closed. A finding already closed is closed again with the
    new status and note; each call appends one ``finding_notes`` row per finding.

    Raises:
        UnknownFinding: some id is not a known finding.
        ValueError: ``status`` is ``open`` or ``note`` is blank.
    """
    if status is FindingStatus.OPEN:
        raise ValueError("a finding is closed as resolved or ignored, not open")
    if not note.strip():
        raise ValueError("closing a finding needs a note")
    states = _every(session, finding_ids)
    for state in states:
        state.status = status
        state.closed_at = now
        state.closed_by = ClosedBy.OPERATOR
        state.note = note
        session.add(_note(state.finding_id, now, status, note, source, actor))
    session.flush()
    return states


def assign_findings(
    session: Session,
    finding_ids: Sequence[str],
    owner: str,
    note: str,
    source: NoteSource,
    now: datetime,
    actor: str | None = None,
) -> list[FindingState]:
    """Give findings an owner, noted; an open one becomes ``assigned``; does not commit.

    Every id must exist, or nothing is assigned. A finding resolved, closed or ignored keeps its
    status (its owner is who answers for it).

    Raises:
        UnknownFinding: some id is not a known finding.
        ValueError: ``owner`` is blank.
    """
    if not owner.strip():
        raise ValueError("a finding is assigned to someone: the owner must not be blank")
    states = _every(session, finding_ids)
    for state in states:
        state.owner, state.assigned_at = owner.strip(), now
        if state.status == FindingStatus.OPEN:
            state.status = FindingStatus.ASSIGNED
        text = f"to {owner.strip()}" + (f": {note.strip()}" if note.strip() else "")
        session.add(_note(state.finding_id, now, NoteAction.ASSIGNED, text, source, actor))
    session.flush()
    return states


def reopen_findings(
    session: Session,
    finding_ids: Sequence[str],
    note: str,
    source: NoteSource,
    now: datetime,
    actor: str | None = None,
) -> list[FindingState]:
    """Open again findings resolved, closed or ignored, with a reason; does not commit.

    Raises:
        UnknownFinding: some id is not a known finding.
        ValueError: ``note`` is blank.
    """
    if not note.strip():
        raise ValueError("reopening a finding needs a note")
    states = _every(session, finding_ids)
    for state in states:
        if state.status in NEEDS_REVIEW:
            continue
        state.status = FindingStatus.ASSIGNED if state.owner else FindingStatus.OPEN
        state.closed_at, state.closed_by = None, None
        session.add(_note(state.finding_id, now, NoteAction.REOPENED, note, source, actor))
    session.flush()
    return states


def add_note(
    session: Session,
    finding_id: str,
    action: NoteAction,
    note: str,
    source: NoteSource,
    now: datetime,
    actor: str | None = None,
) -> FindingState:
    """Append a comment (or a correction's record) to a finding's trail; does not commit.

    Raises:
        UnknownFinding: the id is not a known finding.
        ValueError: ``note`` is blank.
    """
    if not note.strip():
        raise ValueError("a comment needs a note")
    [state] = _every(session, [finding_id])
    session.add(_note(finding_id, now, action, note, source, actor))
    session.flush()
    return state


def _every(session: Session, finding_ids: Sequence[str]) -> list[FindingState]:
    """Return the findings of ``finding_ids`` in order, each once.

    Raises:
        UnknownFinding: some id is not a known finding.
    """
    wanted = list(dict.fromkeys(finding_ids))
    found = states_of(session, wanted)
    unknown = [finding_id for finding_id in wanted if finding_id not in found]
    if unknown:
        raise UnknownFinding(unknown)
    return [found[finding_id] for finding_id in wanted]


def _note(
    finding_id: str, now: datetime, action: str, note: str, source: str, actor: str | None
) -> FindingNote:
    return FindingNote(
        finding_id=finding_id, at=now, action=action, note=note, source=source, actor=actor
    )


def open_counts_by_subscription(session: Session) -> dict[tuple[str | None, str | None], int]:
    """Return how many findings are open per (company id, subscription id)."""
    query = (
        select(FindingState.company_id, FindingState.subscription_id, func.count())
        .where(FindingState.status.in_(sorted(NEEDS_REVIEW)))
        .group_by(FindingState.company_id, FindingState.subscription_id)
    )
    return {
        (company, subscription): int(count)
        for company, subscription, count in session.execute(query)
    }


def open_states(
    session: Session,
    companies: Sequence[str] = (),
    statuses: Sequence[str] = tuple(sorted(NEEDS_REVIEW)),
    stripe_account: str | None = None,
) -> list[FindingState]:
    """Return the findings in ``statuses`` (open ones by default), of ``companies`` if named.

    With ``stripe_account`` too, the findings about that connected account's movements are
    returned whatever their company (an unmapped customer's have none).
    """
    query = select(FindingState).where(FindingState.status.in_(list(statuses)))
    if companies:
        named: ColumnElement[bool] = FindingState.company_id.in_(list(companies))
        if stripe_account is not None:
            own = select(ExpectedRow.transaction_id).where(
                ExpectedRow.stripe_account == stripe_account
            )
            named = or_(named, FindingState.transaction_id.in_(own))
        query = query.where(named)
    return list(session.scalars(query))


def states_of(session: Session, finding_ids: Sequence[str]) -> dict[str, FindingState]:
    """Return the known findings among ``finding_ids``, by id."""
    if not finding_ids:
        return {}
    if fewer(session, select(FindingState.finding_id), len(finding_ids)):
        # fewer states than ids asked: every one read, those asked kept (no ids written)
        asked = set(finding_ids)
        kept = session.scalars(select(FindingState))
        return {state.finding_id: state for state in kept if state.finding_id in asked}
    query = select(FindingState).where(among(session, FindingState.finding_id, finding_ids))
    return {state.finding_id: state for state in session.scalars(query)}


STATE_FIELDS = (
    "category",
    "transaction_id",
    "moesif_id",
    "company_id",
    "subscription_id",
    "stripe_customer_id",
    "stripe_object_id",
    "entry_type",
    "currency",
    "stripe_amount_minor",
    "moesif_amount_minor",
    "delta_minor",
    "detail",
)
"""What a finding's state copies from the latest run that reported it."""


def record_seen(
    session: Session,
    reported: dict[str, dict[str, object]],
    known: dict[str, FindingState],
    again: frozenset[str],
    run_id: str,
    now: datetime,
) -> None:
    """Open the new findings of ``reported`` and mark ``again`` seen once more; flushes.

    A finding resolved or closed before that is found again is open again (noted ``reopened``).
    """
    opened: list[dict[str, Any]] = []
    for finding_id, values in reported.items():
        state = known.get(finding_id)
        fields = {name: values.get(name) for name in STATE_FIELDS}
        if state is None:
            opened.append(_opened_values(finding_id, run_id, now, fields, runs_seen=1))
            continue
        if finding_id not in again:
            continue
        for name, value in fields.items():
            setattr(state, name, value)
        state.last_seen_run_id, state.last_seen_at = run_id, now
        state.runs_seen += 1
        if state.status not in NEEDS_REVIEW:
            state.status = FindingStatus.ASSIGNED if state.owner else FindingStatus.OPEN
            state.closed_at, state.closed_by = None, None
            session.add(
                FindingNote(
                    finding_id=finding_id,
                    at=now,
                    action=Action.REOPENED,
                    note=f"found again by run {run_id}",
                    source="run",
                    actor=RUN_ACTOR,
                )
            )
    session.flush()
    if opened:  # the new states in bulk, column by column: no object per state
        table = FindingState.__table__
        assert isinstance(table, Table)
        insert_columns(session, table, {name: [row[name] for row in opened] for name in opened[0]})


def settle_by_run(
    session: Session, states: Sequence[FindingState], run_id: str, now: datetime
) -> None:
    """Close these open findings for good, settled by run ``run_id``; flushes."""
    for state in states:
        state.status = FindingStatus.CLOSED
        state.closed_at = now
        state.closed_by = ClosedBy.RUN
        state.note = f"no longer found by run {run_id}"
        session.add(
            FindingNote(
                finding_id=state.finding_id,
                at=now,
                action=FindingStatus.CLOSED,
                note=state.note,
                source="run",
                actor=RUN_ACTOR,
            )
        )
    session.flush()


def confirm_resolved(
    session: Session, states: Sequence[FindingState], run_id: str, now: datetime
) -> None:
    """Close for good these findings an operator resolved, the drift checked gone; flushes.

    The operator's ``closed_by`` and note stay; the check is one more ``finding_notes`` row.
    """
    for state in states:
        state.status = FindingStatus.CLOSED
        state.closed_at = now
        session.add(
            FindingNote(
                finding_id=state.finding_id,
                at=now,
                action=FindingStatus.CLOSED,
                note=f"resolve confirmed: drift no longer found by run {run_id}",
                source="run",
                actor=RUN_ACTOR,
            )
        )
    session.flush()


WEBHOOK_RUN = "serve"
"""Recorded as the first run of a finding ``reconcile serve`` raised."""


def adopt_unmapped_events(session: Session, now: datetime) -> int:
    """Open an ``unmapped_customer`` finding for each movement a webhook could not map.

    Today's ``serve`` opens such findings itself, at once (``open_at_once``); this adopts the
    events an older ``serve`` recorded ``unmapped`` with only ``transaction_id: reason`` pairs in
    their ``last_error``, so a database upgraded from it loses none. Each movement not yet a
    finding becomes one. Returns how many were opened. Flushes, never commits.
    """
    events = session.scalars(
        select(WebhookEvent).where(WebhookEvent.status == EventStatus.UNMAPPED)
    )
    wanted: dict[str, tuple[str, str, WebhookEvent]] = {}
    for event in events:
        for part in (event.last_error or "").split("; "):
            transaction_id, _, reason = part.partition(": ")
            if transaction_id.strip():
                key = ids.finding_id("unmapped_customer", transaction_id.strip(), None)
                wanted.setdefault(key, (transaction_id.strip(), reason.strip(), event))
    if not wanted:
        return 0
    known = states_of(session, list(wanted))
    opened = 0
    for key, (transaction_id, reason, event) in wanted.items():
        if key in known:
            continue
        session.add(
            FindingState(
                finding_id=key,
                category="unmapped_customer",
                transaction_id=transaction_id,
                detail=f"webhook {event.event_type} ({event.event_id}): {reason or 'unmapped'}",
                status=FindingStatus.OPEN,
                first_seen_run_id=WEBHOOK_RUN,
                first_seen_at=event.received_at,
                last_seen_run_id=WEBHOOK_RUN,
                last_seen_at=event.received_at,
                runs_seen=0,
            )
        )
        opened += 1
    session.flush()
    return opened


def open_at_once(session: Session, reported: dict[str, dict[str, object]], now: datetime) -> int:
    """Open a finding ``serve`` raised itself, as a run opens one; return how many were new.

    ``reported`` maps finding ids to their :data:`STATE_FIELDS` values. A finding already known
    (open, or closed by a run or an operator) is left as it is: the next run re-checks it.
    Flushes, never commits.
    """
    known = states_of(session, list(reported))
    opened = 0
    for key, values in reported.items():
        if key in known:
            continue
        fields = {name: values.get(name) for name in STATE_FIELDS}
        session.add(_opened(key, WEBHOOK_RUN, now, fields, runs_seen=0))
        opened += 1
    session.flush()
    return opened


def _opened(
    finding_id: str, run_id: str, now: datetime, fields: dict[str, Any], *, runs_seen: int
) -> FindingState:
    """A finding first seen now, by ``run_id`` (a run, or the live path's marker)."""
    return FindingState(**_opened_values(finding_id, run_id, now, fields, runs_seen=runs_seen))


def _opened_values(
    finding_id: str, run_id: str, now: datetime, fields: dict[str, Any], *, runs_seen: int
) -> dict[str, Any]:
    """The columns of a finding first seen now, by ``run_id``."""
    return {
        "finding_id": finding_id,
        "status": FindingStatus.OPEN,
        "first_seen_run_id": run_id,
        "first_seen_at": now,
        "last_seen_run_id": run_id,
        "last_seen_at": now,
        "runs_seen": runs_seen,
        **fields,
    }


def open_by_category(session: Session) -> list[tuple[str, int, datetime]]:
    """Return (category, how many open, the oldest first seen) of the open findings, sorted."""
    query = (
        select(FindingState.category, func.count(), func.min(FindingState.first_seen_at))
        .where(FindingState.status.in_(sorted(NEEDS_REVIEW)))
        .group_by(FindingState.category)
        .order_by(FindingState.category)
    )
    return [(category, int(count), oldest) for category, count, oldest in session.execute(query)]


def open_at_runs(
    session: Session, run_ids: Sequence[str]
) -> list[tuple[str, str, str | None, int, int]]:
    """Return what was open when each run ended: (run, category, currency, count, amount).

    A finding is open at a moment when it was first seen by then and not closed before it; the
    amount is the sum of its corrections' sizes, in minor units.
    """
    moment = func.coalesce(Run.finished_at, Run.started_at)
    query = (
        select(
            Run.id,
            FindingState.category,
            FindingState.currency,
            func.count(FindingState.finding_id),
            func.sum(func.abs(func.coalesce(FindingState.delta_minor, 0))),
        )
        .join(
            FindingState,
            (FindingState.first_seen_at <= moment)
            & or_(FindingState.closed_at.is_(None), FindingState.closed_at > moment),
        )
        .where(Run.id.in_(list(run_ids)))
        .group_by(Run.id, FindingState.category, FindingState.currency)
    )
    return [
        (run_id, category, currency, int(count), int(amount or 0))
        for run_id, category, currency, count, amount in session.execute(query)
    ]


def drift_at_runs(session: Session, run_ids: Sequence[str]) -> list[tuple[str, str, int, int]]:
    """Return what was open when each run ended, per currency: (run, currency, owed, over).

    ``owed`` sums the positive deltas (customers owed credit), ``over`` the negative ones (Moesif
    holds too much; zero or less), in minor units, so the two never cancel. A finding is open at
    a moment as :func:`open_at_runs` says; findings without a currency or delta are left out.
    """
    moment = func.coalesce(Run.finished_at, Run.started_at)
    delta = FindingState.delta_minor
    query = (
        select(
            Run.id,
            FindingState.currency,
            func.sum(case((delta > 0, delta), else_=0)),
            func.sum(case((delta < 0, delta), else_=0)),
        )
        .join(
            FindingState,
            (FindingState.first_seen_at <= moment)
            & or_(FindingState.closed_at.is_(None), FindingState.closed_at > moment),
        )
        .where(Run.id.in_(list(run_ids)))
        .where(FindingState.currency.is_not(None), delta.is_not(None))
        .group_by(Run.id, FindingState.currency)
    )
    return [
        (run_id, currency, int(owed or 0), int(over or 0))
        for run_id, currency, owed, over in session.execute(query)
    ]
