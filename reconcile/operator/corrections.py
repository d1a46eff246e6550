"""``findings correct``: what correcting a finding would post, and posting it through the engine.

The plan is :func:`reconcile.rules.correction.plan`'s; this module only gathers what it needs
from the snapshot (the finding, the ledger row's own type, where a ``misapplied`` movement
belongs), checks the posting guardrails and posts each leg through the exactly-once
:class:`reconcile.posting.engine.PostingEngine`, noting the outcome in the finding's trail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from reconcile.config import Settings
from reconcile.db.expected import movement_of
from reconcile.db.finding_states import UnknownFinding, add_note, get_finding
from reconcile.db.ledger import rows_naming
from reconcile.db.models import FindingState
from reconcile.domain import origin
from reconcile.domain.vocab import Category, NoteAction, NoteSource
from reconcile.moesif.client import MoesifClient
from reconcile.posting.engine import PostingEngine
from reconcile.posting.guardrails import check_guardrails
from reconcile.posting.outcome import Outcome, Result
from reconcile.rules.correction import CorrectionFinding, Plan, confirmation, plan

SETTLED = frozenset({Result.POSTED, Result.FOUND, Result.ALREADY_CONFIRMED, Result.HELD})
"""Outcomes after which Moesif holds the leg."""


@dataclass(frozen=True)
class Corrected:
    """What correcting a finding did: its plan and each leg's outcome (none when not posted)."""

    plan: Plan
    outcomes: tuple[Outcome, ...] = ()

    @property
    def settled(self) -> bool:
        """Return whether Moesif holds every leg of the plan."""
        return bool(self.outcomes) and all(o.result in SETTLED for o in self.outcomes)

    def lines(self) -> str:
        """Return each leg's outcome in words."""
        return "\n".join(
            f"  {o.transaction_id}: {o.result.value}" + (f" ({o.detail})" if o.detail else "")
            for o in self.outcomes
        )


def planned(sessions: sessionmaker[Session], finding_id: str, *, confirmed_error: bool) -> Plan:
    """Return what correcting ``finding_id`` would post (or why nothing is).

    Raises:
        UnknownFinding: no finding has this id.
    """
    with sessions() as session:
        state = get_finding(session, finding_id)
        if state is None:
            raise UnknownFinding([finding_id])
        return plan(correction_finding(session, state), confirmed_error=confirmed_error)


def correction_finding(session: Session, state: FindingState) -> CorrectionFinding:
    """Return a stored finding as :func:`reconcile.rules.correction.plan` needs it."""
    rows = [row for row in rows_naming(session, state.moesif_id, None) if state.moesif_id]
    belongs = None
    if state.category == Category.MISAPPLIED and state.transaction_id:
        belongs = movement_of(session, state.transaction_id)
    return CorrectionFinding(
        finding_id=state.finding_id,
        category=state.category,
        company_id=state.company_id,
        subscription_id=state.subscription_id,
        currency=state.currency,
        entry_type=state.entry_type,
        stripe_amount_minor=state.stripe_amount_minor,
        moesif_amount_minor=state.moesif_amount_minor,
        moesif_entry_type=rows[0].entry_type if rows else None,
        belongs_company_id=belongs.company_id if belongs else None,
        belongs_subscription_id=belongs.subscription_id if belongs else None,
    )


def correct(
    sessions: sessionmaker[Session],
    settings: Settings,
    moesif: MoesifClient,
    the_plan: Plan,
    *,
    note: str,
    actor: str,
    source: NoteSource,
    clock: Callable[[], datetime],
) -> Corrected:
    """Post ``the_plan``'s legs exactly once, inside the guardrails, and note it on the finding.

    The finding's trail gets one ``corrected`` row naming what was posted and how each leg
    ended; its status is left to the next run, which finds the drift settled and closes it.

    Raises:
        GuardrailTripped: the legs exceed ``RECONCILE_MAX_POSTINGS`` or
            ``RECONCILE_MAX_POSTING_TOTAL``; nothing was posted.
        ReconcileError: Moesif could not be reached or refused the token.
        ValueError: the plan posts nothing, or the note is blank.
    """
    if not the_plan.postable:
        raise ValueError(confirmation(the_plan))
    if not note.strip():
        raise ValueError("a correction needs a note")
    check_guardrails(
        the_plan.entries,
        max_postings=settings.max_postings,
        max_total=settings.max_posting_total,
    )
    engine = PostingEngine(
        sessions,
        moesif,
        amount_unit=settings.moesif_amount_unit,
        clock=clock,
        report_lag=settings.moesif_report_lag,
    )
    caller = origin.for_correction(the_plan.finding_id)
    outcomes = tuple(engine.post(entry, origin=caller) for entry in the_plan.entries)
    done = Corrected(the_plan, outcomes)
    posted = confirmation(the_plan).splitlines()[1:-1]
    legs = "; ".join(
        f"{line.strip()}: {o.result.value}" for line, o in zip(posted, outcomes, strict=True)
    )
    with sessions.begin() as session:
        add_note(
            session,
            the_plan.finding_id,
            NoteAction.CORRECTED,
            f"{note.strip()} [{legs}]",
            source,
            clock(),
            actor,
        )
    return done
