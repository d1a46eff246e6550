"""Deciding which missing movements to post, and posting them through the engine."""

from __future__ import annotations

from collections.abc import Sequence

from reconcile.clients import Clients
from reconcile.config import Settings
from reconcile.db.postings import confirmed
from reconcile.observability import Progress
from reconcile.posting import origin
from reconcile.posting.engine import PostingEngine
from reconcile.posting.entry import Entry
from reconcile.posting.outcome import Outcome
from reconcile.rules.orders import Decision, Missing, decide
from reconcile.steps import Sessions


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
    engine = PostingEngine(
        sessions, clients.moesif, amount_unit=settings.moesif_amount_unit, clock=clients.clock
    )
    caller = origin.for_run(run_id)
    progress = Progress("Postings", total=len(orders), unit="postings")
    for order in orders:
        outcomes.append(engine.post(order, origin=caller))
        progress.advance(1)
    progress.done()
