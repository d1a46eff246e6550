"""Run notifications: the payload a run that needs attention sends, its outbox, and its sender.

The payload is :func:`reconcile.rules.notice.build_notice` over what the snapshot holds of the
run (:func:`run_notice`: its findings with their signed deltas, states and first sightings, the
subscriptions' available balances as last read from Moesif, what it posted); it is stored in the
``notifications`` table before anything is sent (:func:`enqueue`), and :func:`deliver_pending`
POSTs every undelivered one, oldest first and each unchanged in its own request, stopping at the
first failure so that the order is kept. :func:`notify_run` does all three and never raises: a
notification that cannot be sent is a warning, never a different exit code.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from reconcile import live_path
from reconcile.config import Secret
from reconcile.db import outbox
from reconcile.db.finding_states import open_states, states_of
from reconcile.db.findings import findings_of_run
from reconcile.db.models import Finding, FindingState, Posting
from reconcile.db.postings import confirmed_of_run
from reconcile.db.runs import run_of
from reconcile.db.subscriptions import kept_balances
from reconcile.domain.values import Entry, entry_type_of
from reconcile.domain.vocab import Action
from reconcile.errors import ExitCode
from reconcile.rules.delta import correction
from reconcile.rules.lifecycle import OPEN
from reconcile.rules.notice import MAX_FINDINGS, NoticeFinding, build_notice

log = logging.getLogger(__name__)

NOTIFY_EXIT_CODES = frozenset({ExitCode.DRIFT, ExitCode.FAILED, ExitCode.GUARDRAIL})
"""Exit codes after which a run notifies; a clean run (0) sends nothing."""

ALL_ACTIONS = tuple(sorted(action.value for action in Action))
"""Every action a run gives a finding: the notification counts them all, lists those to review."""

__all__ = [
    "MAX_FINDINGS",
    "NOTIFY_EXIT_CODES",
    "Delivery",
    "deliver_pending",
    "enqueue",
    "notice_finding",
    "notify_run",
    "queued_finding",
    "run_notice",
    "should_notify",
]


def should_notify(exit_code: int, overdue: int = 0) -> bool:
    """Return whether a run that ended with ``exit_code`` sends a notification.

    A run that ends with exit 1, 3 or 4 does; a run that ends well (0) does only while
    ``overdue`` findings of the queue wait past their due time, so that they are not forgotten.
    """
    return exit_code in NOTIFY_EXIT_CODES or (exit_code == ExitCode.OK and overdue > 0)


# What the snapshot holds of a run, as the notice rule takes it.


def notice_finding(
    row: Finding, state: FindingState | None, available_minor: int | None, seen_at: datetime
) -> NoticeFinding:
    """Return one finding of a run as :func:`build_notice` takes it.

    ``delta`` is section 7's (as the report has it); ``blocked`` says Moesif showed the
    subscription no available credit (zero or less) when last read, so a finding that owes the
    customer on a blocked subscription ranks first. ``state`` gives its status in the queue and
    when it was first seen; without one, it is open and first seen at ``seen_at``.
    """
    return NoticeFinding(
        finding_id=row.finding_id or f"{row.category}:{row.id}",
        category=row.category,
        company_id=row.company_id,
        subscription_id=row.subscription_id,
        currency=row.currency,
        delta_minor=correction(
            row.category, row.entry_type, row.stripe_amount_minor, row.moesif_amount_minor
        ),
        action=row.action,
        blocked=available_minor is not None and available_minor <= 0,
        first_seen=state.first_seen_at if state is not None else seen_at,
        status=state.status if state is not None else OPEN,
        transaction_id=row.transaction_id,
        moesif_id=row.moesif_id,
        entry_type=row.entry_type,
        stripe_amount_minor=row.stripe_amount_minor,
        moesif_amount_minor=row.moesif_amount_minor,
        detail=row.detail,
        owner=state.owner if state is not None else None,
    )


def queued_finding(state: FindingState, available_minor: int | None) -> NoticeFinding:
    """Return a finding of the exception queue that the run did not report, as a notice takes it."""
    return NoticeFinding(
        finding_id=state.finding_id,
        category=state.category,
        company_id=state.company_id,
        subscription_id=state.subscription_id,
        currency=state.currency,
        delta_minor=state.delta_minor,
        action=Action.FLAGGED,
        blocked=available_minor is not None and available_minor <= 0,
        first_seen=state.first_seen_at,
        status=state.status,
        transaction_id=state.transaction_id,
        moesif_id=state.moesif_id,
        entry_type=state.entry_type,
        stripe_amount_minor=state.stripe_amount_minor,
        moesif_amount_minor=state.moesif_amount_minor,
        detail=state.detail,
        owner=state.owner,
    )


def posted_entry(posting: Posting) -> Entry:
    """Return a confirmed posting as the entry it posted."""
    return Entry(
        transaction_id=posting.transaction_id,
        company_id=posting.company_id,
        subscription_id=posting.subscription_id,
        entry_type=entry_type_of(posting.entry_type),
        amount_minor=posting.amount_minor,
        currency=posting.currency,
        description=posting.description,
    )


def run_notice(
    session: Session,
    run_id: str,
    *,
    exit_code: int,
    report_path: str | None,
    now: datetime,
    console_url: str | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """Return the notification of a run from what the snapshot holds of it (sections 10, 10a)."""
    run = run_of(session, run_id)
    dry_run = bool(run.dry_run) if run is not None else False
    rows = findings_of_run(session, run_id, ALL_ACTIONS)
    states = states_of(session, [row.finding_id for row in rows if row.finding_id])
    reported = {row.finding_id for row in rows}
    queued = [state for state in open_states(session) if state.finding_id not in reported]
    subscriptions = {row.subscription_id for row in rows} | {s.subscription_id for s in queued}
    balances = kept_balances(session, {sid for sid in subscriptions if sid})
    seen_at = run.started_at if run is not None else now
    findings = [
        notice_finding(
            row,
            states.get(row.finding_id) if row.finding_id else None,
            balances.get(row.subscription_id) if row.subscription_id else None,
            seen_at,
        )
        for row in rows
    ]
    posted = [] if dry_run else [posted_entry(p) for p in confirmed_of_run(session, run_id)]
    waiting = [queued_finding(state, balances.get(state.subscription_id or "")) for state in queued]
    return build_notice(
        run_id=run_id,
        exit_code=exit_code,
        findings=findings,
        posted=posted,
        dry_run=dry_run,
        report_path=report_path,
        now=now,
        console_url=console_url,
        error=error,
        queued=waiting,
    )


# The outbox: the notifications table.


def enqueue(session: Session, run_id: str, payload: Mapping[str, Any], now: datetime) -> None:
    """Store a run's notification, unsent; a run's second call keeps the first; no commit."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    outbox.enqueue(session, run_id, body, now)


# The sender.


@dataclass(frozen=True)
class Delivery:
    """What one delivery pass did."""

    delivered: tuple[str, ...]
    """Run ids whose notification was delivered now, in order."""
    failed: str | None = None
    """The run id whose notification could not be delivered (the pass stopped there)."""
    error: str | None = None


def deliver_pending(
    sessions: sessionmaker[Session],
    http: httpx.Client,
    url: Secret,
    clock: Callable[[], datetime],
) -> Delivery:
    """POST every undelivered notification, oldest first, each unchanged in its own request.

    A 2xx answer marks it delivered; anything else is recorded (attempts, a redacted error) and
    ends the pass, so a later notification never overtakes an earlier one.
    """
    delivered: list[str] = []
    with sessions() as session:
        queue = [(row.id, row.run_id, row.payload) for row in outbox.pending(session)]
    for row_id, run_id, body in queue:
        error = _post(http, url, body)
        with sessions.begin() as session:
            outbox.record_attempt(session, row_id, clock() if error is None else None, error)
        if error is not None:
            return Delivery(tuple(delivered), failed=run_id, error=error)
        delivered.append(run_id)
    return Delivery(tuple(delivered))


def _post(http: httpx.Client, url: Secret, body: str) -> str | None:
    """Send one body; return ``None`` on a 2xx, else a one-line error that never names the URL."""
    try:
        response = http.post(
            url.reveal(), content=body.encode("utf-8"), headers={"Content-Type": "application/json"}
        )
    except httpx.HTTPError as error:
        return _redacted(f"no answer ({type(error).__name__}: {error})", url)
    if response.is_success:
        return None
    return _redacted(f"HTTP {response.status_code}: {' '.join(response.text.split())[:200]}", url)


def _redacted(text: str, url: Secret) -> str:
    secret = url.reveal()
    return text.replace(secret, "***").replace(secret.rstrip("/"), "***")


def notify_run(
    sessions: sessionmaker[Session],
    http: httpx.Client,
    url: Secret | None,
    *,
    run_id: str,
    exit_code: int,
    report_path: Path | str | None,
    clock: Callable[[], datetime],
    error: str | None = None,
    console_url: str | None = None,
) -> Delivery | None:
    """After a run: store its notification if it earns one, then deliver all that wait.

    A run earns one when it ends with exit 1, 3 or 4, or ends well while findings of the
    exception queue are overdue (:func:`should_notify`).

    ``console_url`` (``RECONCILE_CONSOLE_URL``) links each listed finding to its console page.
    Never raises: a database or network problem is logged as a warning and the run's exit code
    stays what it was. Returns what was delivered, or ``None`` without a URL or on a problem.
    """
    if url is None:
        return None
    try:
        if should_notify(exit_code) or exit_code == ExitCode.OK:
            with sessions.begin() as session:
                now = clock()
                payload = run_notice(
                    session,
                    run_id,
                    exit_code=exit_code,
                    report_path=str(report_path) if report_path is not None else None,
                    now=now,
                    console_url=console_url,
                    error=error,
                )
                if should_notify(exit_code, int(payload["overdue"])):
                    payload["miss_rate"] = live_path.measure(session, now).as_dict()
                    enqueue(session, run_id, payload, now)
        delivery = deliver_pending(sessions, http, url, clock)
    except SQLAlchemyError as problem:
        log.warning(
            "notification not stored or sent: the database failed (%s)", type(problem).__name__
        )
        return None
    except Exception as problem:  # noqa: BLE001 - a notification never changes a run's outcome
        log.warning("notification not stored or sent: %s", type(problem).__name__)
        return None
    if delivery.failed is not None:
        log.warning(
            "notification of run %s not delivered (%s); kept, sent again after the next run",
            delivery.failed,
            delivery.error,
        )
    return delivery
