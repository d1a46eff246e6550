"""Comparing both sides: the matcher's findings, with the unreadable records and dropped rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pandas as pd

from reconcile import frames, matching
from reconcile.db.ledger import gone_rows_naming
from reconcile.rules.window import Spans
from reconcile.steps import Sessions, lifecycle
from reconcile.steps.snapshot import Loaded, MoesifRead, StripeRead
from reconcile.unreadable import blocked_transaction_ids, unreadable_findings


@dataclass(frozen=True)
class Compared:
    """A run's findings before posting, and the transaction ids that must not be posted."""

    findings: pd.DataFrame
    blocked: frozenset[str]
    """Transaction ids named by a record that could not be read: never posted."""


def compare(
    sessions: Sessions,
    loaded: Loaded,
    stripe: StripeRead,
    moesif: MoesifRead,
    spans: Spans,
    match_window: timedelta,
) -> Compared:
    """Match both sides and add one finding per record that could not be read."""
    transactions, rows = lifecycle.subject_ids(moesif.rechecked)
    matched = frames.typed_findings(
        matching.match(
            loaded.frames.expected,
            loaded.frames.ledger,
            window=spans.window,
            match_window=match_window,
            subscription_currency=loaded.paid.currencies,
            subscription_company=loaded.paid.companies,
            recheck=transactions | rows,
        )
    )
    unreadable = (*stripe.unreadable, *moesif.unreadable, *loaded.frames.unreadable)
    findings = frames.joined(
        naming_dropped_rows(sessions, matched),
        frames.typed_findings(unreadable_findings(unreadable)),
    )
    return Compared(findings, moesif.blocked | blocked_transaction_ids(unreadable))


def naming_dropped_rows(sessions: Sessions, findings: pd.DataFrame) -> pd.DataFrame:
    """Return the findings with each missing movement's detail naming the gone row that held it.

    A movement whose ledger row Moesif dropped (marked gone only after a targeted read lacked
    it too) is posted again; its finding says which row that was.
    """
    missing = frames.missing_ids(findings)
    if not missing:
        return findings
    with sessions() as session:
        dropped = gone_rows_naming(session, missing)
    return frames.naming_dropped(findings, dropped)
