"""Proving the Stripe read complete: counterparts inside Stripe, and Stripe's own totals.

Both checks of contract section 11 over the run's Stripe span, on what the read paged (see
:mod:`reconcile.stripe.counterparts`): each gap is a flagged ``stripe_total_mismatch``
finding, never posted. A run that cannot get Stripe's summary says so once and goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import pandas as pd
import stripe

from reconcile import frames
from reconcile.config import Settings
from reconcile.domain.times import Window, from_unix, to_iso
from reconcile.domain.vocab import Action, Category
from reconcile.rules.control_totals import (
    SUMMARY_REPORT,
    MissingCounterpart,
    PagedTransaction,
    TotalMismatch,
    missing_counterparts,
    total_mismatches,
)
from reconcile.stripe.counterparts import Paged, PagedMovement, counterparts
from reconcile.stripe.reports import NoSummary, balance_summary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checked:
    """The control totals' findings, and what the run's summary should say about them."""

    findings: pd.DataFrame
    note: str = ""
    """Empty, or one line: Stripe's summary could not be had, or covered less than the window."""
    compared: frozenset[str] = frozenset()
    """The subjects (finding transaction ids) this check compared: an earlier finding among them
    that it no longer finds is settled."""


def check(
    client: stripe.StripeClient,
    settings: Settings,
    span: Window,
    paged: Sequence[Paged],
    *,
    sleep: Callable[[float], None],
    earlier: Iterable[str] = (),
) -> Checked:
    """Check the Stripe read of ``span`` against itself and against Stripe's summary.

    ``earlier`` are the subjects of open ``stripe_total_mismatch`` findings of earlier runs; a
    summary's is compared again whenever Stripe's summary is had.
    """
    moved, refs = counterparts(client, paged, span)
    gaps = missing_counterparts(moved, refs)
    looked_at = frozenset(one.id for one in moved) | frozenset(ref.id for ref in refs)
    summary = balance_summary(
        client,
        settings.stripe_api_key.reveal(),
        span,
        api_base=settings.stripe_api_base,
        sleep=sleep,
        poll_seconds=settings.stripe_report_poll_seconds,
    )
    if isinstance(summary, NoSummary):
        note = f"Stripe's totals not checked: {summary.reason}"
        log.warning("%s", note)
        return Checked(findings_of(gaps, []), note, looked_at)
    try:
        mismatches = total_mismatches(_within(paged, summary.window), summary.rows)
    except ValueError as problem:
        note = f"Stripe's totals not checked: its {SUMMARY_REPORT} is unreadable ({problem})"
        log.warning("%s", note)
        return Checked(findings_of(gaps, []), note, looked_at)
    again = frozenset(subject for subject in earlier if subject.startswith(f"{SUMMARY_REPORT}:"))
    note = ""
    if summary.cut:
        note = (
            f"Stripe's totals checked up to {to_iso(summary.window.until)} only: "
            f"its {SUMMARY_REPORT} has no data after that yet"
        )
        log.info("%s", note)
    return Checked(findings_of(gaps, mismatches), note, looked_at | again)


def _key(reporting_category: str, currency: str) -> str:
    """Return the subject of a total's finding: the report, the category and the currency."""
    return f"{SUMMARY_REPORT}:{reporting_category}:{currency}"


def _within(paged: Sequence[Paged], window: Window) -> list[PagedTransaction]:
    """Return the paged balance transactions created in ``window``, the one Stripe summed."""
    return [
        item.transaction
        for item in paged
        if isinstance(item, PagedMovement)
        and window.since <= from_unix(item.created) < window.until
    ]


def findings_of(
    gaps: Sequence[MissingCounterpart], mismatches: Sequence[TotalMismatch]
) -> pd.DataFrame:
    """Return the flagged ``stripe_total_mismatch`` findings of the gaps and the mismatches."""
    records = [*(_gap(gap) for gap in gaps), *(_mismatch(one) for one in mismatches)]
    return frames.from_records(records)


def _flagged(**fields: object) -> dict[str, object]:
    return {
        "category": Category.STRIPE_TOTAL_MISMATCH.value,
        "action": Action.FLAGGED.value,
        **fields,
    }


def _gap(gap: MissingCounterpart) -> dict[str, object]:
    """A Stripe object without its balance transaction, or the other way round."""
    return _flagged(
        stripe_object_id=gap.object_id,
        transaction_id=gap.object_id or gap.balance_transaction_id,
        detail=gap.detail,
    )


def _mismatch(mismatch: TotalMismatch) -> dict[str, object]:
    """A reporting category and currency whose paged gross differs from Stripe's summary."""
    return _flagged(
        transaction_id=_key(mismatch.reporting_category, mismatch.currency),
        currency=mismatch.currency,
        stripe_amount_minor=mismatch.reported.gross - mismatch.paged.gross,
        detail=mismatch.detail,
    )
