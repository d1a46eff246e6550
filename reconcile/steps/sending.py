"""Deciding which missing movements to post, and posting them through the engine."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from reconcile import frames
from reconcile.clients import Clients, posting_engine
from reconcile.config import Settings
from reconcile.db.postings import confirmed
from reconcile.domain import origin
from reconcile.domain.values import Entry
from reconcile.errors import GuardrailTripped, ReconcileError
from reconcile.observability import Progress
from reconcile.posting.first_read import ReadOnce
from reconcile.posting.guardrails import check_guardrails
from reconcile.posting.outcome import Outcome
from reconcile.rules.conclusion import tally
from reconcile.rules.orders import Decision, Missing, after_sending, decide, held_already
from reconcile.steps import Posted, Sessions, ending


def decisions(
    sessions: Sessions, missing: Sequence[Missing], unreadable: frozenset[str], run_id: str
) -> list[Decision]:
    """Decide each missing movement (see ``rules.orders``), knowing what earlier runs confirmed."""
    with sessions() as session:
        earlier = confirmed(session, [finding.transaction_id for finding in missing])
    confirmed_by = {tid: origin.describe(posting.origin) for tid, posting in earlier.items()}
    return [
        decide(finding, unreadable=unreadable, confirmed_by=confirmed_by, run_id=run_id)
        for finding in missing
    ]


def send(
    sessions: Sessions,
    clients: Clients,
    settings: Settings,
    orders: Sequence[Entry],
    outcomes: list[Outcome],
    run_id: str,
) -> None:
    """Post the orders exactly once, appending each outcome to ``outcomes`` as it comes.

    Raises:
        ReconcileError: sending had to stop; ``outcomes`` holds what was sent before.
    """
    once = ReadOnce(clients.moesif, clients.clock, orders)
    engine = posting_engine(sessions, clients.moesif, settings, clients.clock, once)
    caller = origin.for_run(run_id)
    progress = Progress("Postings", total=len(orders), unit="postings")
    for order in orders:
        outcomes.append(engine.post(order, origin=caller))
        progress.advance(1)
    progress.done()


def post_missing(
    sessions: Sessions,
    clients: Clients,
    settings: Settings,
    findings: pd.DataFrame,
    *,
    unreadable: frozenset[str],
    run_id: str,
    report_dir: Path,
    dry_run: bool,
) -> Posted:
    """Decide and post the missing movements; return the findings, postings and any guardrail.

    A dry run decides but sends nothing. A guardrail that trips sends nothing and is returned
    as its message. When sending has to stop, the findings as far as they got are saved before
    the error is raised again.

    A movement the engine's read before sending found already held where it belongs (written
    since the snapshot was read) is matched, not missing: its finding is dropped.

    Raises:
        ReconcileError: sending had to stop (Moesif unavailable, credentials refused).
    """
    index, missing = frames.missing(findings)
    decided = decisions(sessions, missing, unreadable, run_id)
    findings = frames.decided(findings, index, decided)
    todo = index[[decision.order is not None for decision in decided]]
    orders = [decision.order for decision in decided if decision.order is not None]
    outcomes: list[Outcome] = []
    if not orders or dry_run:
        return Posted(findings, tally(outcomes))
    try:
        check_guardrails(
            orders, max_postings=settings.max_postings, max_total=settings.max_posting_total
        )
    except GuardrailTripped as tripped:
        detailed = frames.with_detail(findings, todo, f"not posted: {tripped}")
        return Posted(detailed, tally(outcomes), str(tripped))
    try:
        send(sessions, clients, settings, orders, outcomes, run_id)
    except ReconcileError as error:
        sent = after_sending(outcomes, len(orders), str(error))
        stopped = frames.decided(findings, todo, sent)
        stopped = stopped.drop(index=todo[: len(outcomes)][held_already(outcomes)])
        ending.save(sessions, stopped, run_id, report_dir, settings.redactor())
        raise
    sent = after_sending(outcomes, len(orders))
    found = frames.decided(findings, todo, sent)
    return Posted(found.drop(index=todo[held_already(outcomes)]), tally(outcomes))
