"""The findings' life across runs: ids, what was open before, what this run opens and settles."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from reconcile import frames
from reconcile.db.finding_states import (
    adopt_unmapped_events,
    confirm_resolved,
    open_states,
    record_seen,
    settle_by_run,
    states_of,
)
from reconcile.db.models import FindingState
from reconcile.db.subjects import subject_places
from reconcile.domain.ids import finding_id
from reconcile.domain.vocab import REVIEW_ACTIONS, ROW_CATEGORIES, Action
from reconcile.rules.delta import correction
from reconcile.rules.lifecycle import RECHECKED, Known, transitions
from reconcile.rules.rereads import Point
from reconcile.steps import Sessions


@dataclass(frozen=True)
class Subject:
    """What an open finding is about, so the run can compare it again."""

    category: str
    transaction_id: str | None
    moesif_id: str | None


def open_before(
    sessions: Sessions,
    companies: Sequence[str],
    now: datetime,
    stripe_account: str | None = None,
) -> dict[str, Subject]:
    """Return the findings this run re-checks (of ``companies`` when named), by id.

    A connected account's run also re-checks the findings about its own movements.

    Those open, and those an operator resolved that await this run's check. Movements ``serve``
    could not map become open findings first, if they are not yet.
    """
    with sessions.begin() as session:
        adopt_unmapped_events(session, now)
        return {
            state.finding_id: Subject(state.category, state.transaction_id, state.moesif_id)
            for state in open_states(session, companies, sorted(RECHECKED), stripe_account)
        }


def places(sessions: Sessions, subjects: Mapping[str, Subject]) -> list[Point]:
    """Return where the subjects of the re-checked findings lie (company and time)."""
    transactions, rows = subject_ids(subjects)
    with sessions() as session:
        return [Point(company, at) for company, at in subject_places(session, transactions, rows)]


def subject_ids(subjects: Mapping[str, Subject]) -> tuple[set[str], set[str]]:
    """Return the transaction ids and the Moesif row ids the open findings are about."""
    transactions = {s.transaction_id for s in subjects.values() if s.transaction_id}
    rows = {s.moesif_id for s in subjects.values() if s.moesif_id}
    return transactions, rows


def with_ids(findings: pd.DataFrame) -> pd.DataFrame:
    """Return the findings with their stable ``finding_id`` (see ``rules.finding_ids``).

    A finding that carries its id already (a balance break, named by two rows) keeps it.
    """
    given = findings["finding_id"] if "finding_id" in findings.columns else None
    ids = [
        _id_of(category, tid, mid)
        for category, tid, mid in zip(
            findings["category"], findings["transaction_id"], findings["moesif_id"], strict=True
        )
    ]
    if given is not None:
        ids = [_text(kept) or made for kept, made in zip(given, ids, strict=True)]
    return findings.assign(finding_id=pd.Series(ids, index=findings.index, dtype=object))


def _id_of(category: object, transaction_id: object, moesif_id: object) -> str | None:
    try:
        return finding_id(str(category), _text(transaction_id), _text(moesif_id))
    except ValueError:
        return None


def _text(value: object) -> str | None:
    return None if value is None or value != value else str(value)  # NaN != NaN


def settle(
    sessions: Sessions,
    findings: pd.DataFrame,
    before: Mapping[str, Subject],
    *,
    run_id: str,
    now: datetime,
    dry_run: bool,
    present: frames.Present,
) -> pd.DataFrame:
    """Record this run's findings in their lifecycle and return the report's findings.

    The findings returned carry ``finding_id`` and ``first_seen_at``. Each takes its step of
    :func:`reconcile.rules.lifecycle.next_step`: one found again after an operator resolved it
    (or a run closed it) is reported ``reopened``; an ignored one is left out (it never counts);
    one row is added per open finding this run no longer finds (action ``resolved``) and one per
    open finding it could not compare (still ``flagged``). A dry run changes no state.

    Args:
        sessions: the run's session factory.
        findings: this run's findings with ``finding_id`` (:func:`with_ids`).
        before: the findings open or resolved before the run that it re-checked
            (:func:`open_before`).
        run_id: this run.
        now: when the states change.
        dry_run: whether to leave every state as it was.
        present: transaction ids and Moesif row ids this run could read.
    """
    ids = {str(fid) for fid in findings["finding_id"] if fid is not None}
    review = findings["action"].isin([str(action) for action in REVIEW_ACTIONS])
    reviewed = findings[review & findings["finding_id"].notna()]
    reported = {str(record["finding_id"]): _state_values(record) for record in _records(reviewed)}
    with sessions.begin() as session:
        known = states_of(session, sorted(ids | set(before)))
        subjects = [s for state in known.values() for s in _subjects(state) if s]
        readable = present.among(subjects)
        moved = transitions(
            {fid: _known(state, readable) for fid, state in known.items()}, reported, before
        )
        first_seen = {fid: state.first_seen_at for fid, state in known.items()}
        # One the run settled itself (a posting) is in its report already, as what it did.
        extra = [
            _row(known[fid], Action.RESOLVED, "settled: no longer found")
            for fid in sorted(moved.settled)
            if fid not in ids
        ]
        extra += [
            _row(known[fid], Action.FLAGGED, _waiting(known[fid])) for fid in sorted(moved.waiting)
        ]
        if not dry_run:
            quiet = moved.silenced  # a set built per access: once, not once per finding
            kept = {fid: values for fid, values in reported.items() if fid not in quiet}
            record_seen(session, kept, known, moved.again, run_id, now)
            settle_by_run(session, [known[fid] for fid in sorted(moved.settled)], run_id, now)
            confirm_resolved(session, [known[fid] for fid in sorted(moved.confirmed)], run_id, now)
    silenced = review & findings["finding_id"].isin(sorted(moved.silenced))
    findings = findings[~silenced]
    reopen = findings["finding_id"].isin(sorted(moved.reopened)) & (
        findings["action"] == Action.FLAGGED.value
    )
    findings = findings.assign(action=findings["action"].where(~reopen, Action.REOPENED.value))
    seen = [first_seen.get(str(fid), now) if fid else None for fid in findings["finding_id"]]
    findings = findings.assign(first_seen_at=pd.Series(seen, index=findings.index, dtype=object))
    if not extra:
        return findings.reset_index(drop=True)
    more = frames.from_records(extra, ["finding_id", "first_seen_at"])
    if findings.empty:
        return more
    return pd.concat([findings, more], ignore_index=True)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    plain = frame.astype(object).where(frame.notna(), None)
    names = [str(name) for name in plain.columns]
    columns = [plain[name].tolist() for name in plain.columns]  # a column at a time
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def _state_values(record: dict[str, Any]) -> dict[str, object]:
    values: dict[str, object] = dict(record)
    stripe, moesif = (
        _minor(record.get("stripe_amount_minor")),
        _minor(record.get("moesif_amount_minor")),
    )
    values["stripe_amount_minor"], values["moesif_amount_minor"] = stripe, moesif
    values["delta_minor"] = correction(
        str(record.get("category")), _text(record.get("entry_type")), stripe, moesif
    )
    return values


def _minor(value: object) -> int | None:
    return None if value is None else int(str(value))


def _known(state: FindingState, present: Collection[str]) -> Known:
    """Return what the lifecycle rule needs to know of a stored finding.

    A finding about a Moesif row is compared even when the row is gone (that settles it); one
    about a Stripe movement only when the run holds the movement (or the unreadable row).
    """
    visible = state.category in ROW_CATEGORIES or any(
        subject in present for subject in _subjects(state) if subject
    )
    return Known(state.status, state.closed_by, state.category, visible)


def _subjects(state: FindingState) -> tuple[str | None, str | None]:
    return state.transaction_id, state.moesif_id


def _waiting(state: FindingState) -> str:
    return f"still open, not compared again by this run: {state.detail or ''}".rstrip(": ")


def _row(state: FindingState, action: Action, detail: str) -> dict[str, object]:
    return {
        "category": state.category,
        "action": action.value,
        "company_id": state.company_id,
        "subscription_id": state.subscription_id,
        "stripe_customer_id": state.stripe_customer_id,
        "stripe_object_id": state.stripe_object_id,
        "transaction_id": state.transaction_id,
        "entry_type": state.entry_type,
        "currency": state.currency,
        "stripe_amount_minor": state.stripe_amount_minor,
        "moesif_amount_minor": state.moesif_amount_minor,
        "stripe_created_at": None,
        "moesif_created_at": None,
        "moesif_id": state.moesif_id,
        "detail": detail,
        "finding_id": state.finding_id,
        "first_seen_at": state.first_seen_at,
    }
