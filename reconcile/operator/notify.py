"""Run notifications: the payload a run that needs attention sends, its outbox, and its sender.

The payload is a pure function of plain values (:func:`build_payload`); it is stored in the
``notifications`` table before anything is sent (:func:`enqueue`), and :func:`deliver_pending`
POSTs every undelivered one, oldest first and each unchanged in its own request, stopping at the
first failure so that the order is kept. :func:`notify_run` does all three and never raises: a
notification that cannot be sent is a warning, never a different exit code.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from reconcile import live_path
from reconcile.config import Secret
from reconcile.db import outbox
from reconcile.db.findings import findings_of_run
from reconcile.domain import REVIEW_ACTIONS as DOMAIN_REVIEW_ACTIONS
from reconcile.domain import Action
from reconcile.errors import ExitCode
from reconcile.money import format_major, to_major

log = logging.getLogger(__name__)

NOTIFY_EXIT_CODES = frozenset({ExitCode.DRIFT, ExitCode.FAILED, ExitCode.GUARDRAIL})
"""Exit codes after which a run notifies; a clean run (0) sends nothing."""

MAX_FINDINGS = 20
"""Findings a payload lists at most, the largest first."""

TEXT_FINDINGS = 5
"""Findings the human ``text`` names at most."""

REVIEW_ACTIONS = tuple(sorted(action.value for action in DOMAIN_REVIEW_ACTIONS))
"""Actions of the findings a notification lists: those a person has to look at."""

REOPENED = Action.REOPENED.value

_HEADLINE: dict[int, str] = {
    ExitCode.DRIFT: "drift needs review",
    ExitCode.FAILED: "the run failed",
    ExitCode.GUARDRAIL: "a guardrail stopped posting",
}

_NEXT_STEP: dict[int, str] = {
    ExitCode.DRIFT: "Next: review the open findings (`reconcile findings`), fix each in Moesif "
    "or Stripe, then close it with `reconcile findings resolve ID --note ...`.",
    ExitCode.FAILED: "Next: read the error, fix what was unavailable; a rerun resumes where "
    "this one stopped and posts nothing twice.",
    ExitCode.GUARDRAIL: "Next: nothing was posted. Check the report; if the postings are right, "
    "raise RECONCILE_MAX_POSTINGS or RECONCILE_MAX_POSTING_TOTAL for one rerun.",
}


# The payload: plain values in, plain values out.


def should_notify(exit_code: int) -> bool:
    """Return whether a run that ended with ``exit_code`` sends a notification."""
    return exit_code in NOTIFY_EXIT_CODES


def build_payload(
    *,
    run_id: str,
    exit_code: int,
    counts: Mapping[str, int],
    totals: Mapping[str, str],
    report_path: str | None,
    findings: Sequence[Mapping[str, Any]],
    error: str | None = None,
) -> dict[str, Any]:
    """Return the JSON object a run posts: ``text``, ids, counts, totals, the largest findings.

    Args:
        run_id: the run.
        exit_code: how it ended.
        counts: findings per category.
        totals: summed amounts, keyed ``category:currency:entry_type``, decimal strings.
        report_path: the drift report, if one was written.
        findings: finding dicts with ``category``, ``currency`` and minor-unit amounts
            (``stripe_amount_minor``, ``moesif_amount_minor``, optional ``delta_minor``) and any of
            ``finding_id``, ``action``, ``company_id``, ``subscription_id``, ``transaction_id``,
            ``moesif_id``, ``entry_type``, ``detail``.
        error: why a failed run failed (exit 3), without secrets.
    """
    ranked = sorted(findings, key=_size, reverse=True)[:MAX_FINDINGS]
    listed = [_listed(finding) for finding in ranked]
    payload: dict[str, Any] = {
        "text": "",
        "run_id": run_id,
        "exit_code": int(exit_code),
        "counts": {str(k): int(v) for k, v in sorted(counts.items())},
        "totals": {str(k): str(v) for k, v in sorted(totals.items())},
        "report_path": report_path,
        "findings": listed,
    }
    reopened = [
        str(finding.get("finding_id"))
        for finding in findings
        if finding.get("action") == REOPENED and finding.get("finding_id")
    ]
    payload["text"] = summary_text(
        payload, error=error, more=max(len(findings) - len(listed), 0), reopened=reopened
    )
    return payload


def summary_text(
    payload: Mapping[str, Any],
    *,
    error: str | None = None,
    more: int = 0,
    reopened: Sequence[str] = (),
) -> str:
    """Return the short human summary of a payload, in Slack's mrkdwn (values escaped).

    ``reopened`` names the findings an operator resolved whose drift this run found again.
    """
    exit_code = int(payload["exit_code"])
    headline = _HEADLINE.get(exit_code, "see the report")
    lines = [f"*reconcile run {_slack(payload['run_id'])}*: {headline} (exit {exit_code})"]
    if error:
        lines.append(f"Error: {_slack(error)}")
    if reopened:
        names = ", ".join(sorted(reopened)[:TEXT_FINDINGS])
        extra = len(reopened) - TEXT_FINDINGS
        lines.append(
            f"Reopened: {len(reopened)} finding(s) marked resolved still drift: {_slack(names)}"
            + (f" and {extra} more" if extra > 0 else "")
        )
    counts: Mapping[str, int] = payload["counts"]
    totals: Mapping[str, str] = payload["totals"]
    for category, count in counts.items():
        amounts = [
            f"{amount} {key.split(':')[1].upper()} {key.split(':')[2]}"
            for key, amount in totals.items()
            if key.split(":")[0] == category and key.count(":") == 2
        ]
        suffix = f": {', '.join(amounts)}" if amounts else ""
        lines.append(f"• `{_slack(category)}` {count}{_slack(suffix)}")
    findings: Sequence[Mapping[str, Any]] = payload["findings"]
    if findings:
        lines.append("Largest:")
        for finding in findings[:TEXT_FINDINGS]:
            lines.append("• " + _slack(_one_line(finding)))
        hidden = len(findings) - TEXT_FINDINGS + more
        if hidden > 0:
            lines.append(f"…and {hidden} more in the report")
    if payload["report_path"]:
        lines.append(f"Report: `{_slack(payload['report_path'])}`")
    lines.append(_NEXT_STEP.get(exit_code, _NEXT_STEP[ExitCode.FAILED]))
    return "\n".join(lines)


def _size(finding: Mapping[str, Any]) -> Decimal:
    """Return how large a finding is, in major units of its currency (for ranking only)."""
    currency = str(finding.get("currency") or "usd")
    amounts = [
        abs(int(finding[key]))
        for key in ("delta_minor", "stripe_amount_minor", "moesif_amount_minor")
        if finding.get(key) is not None
    ]
    return to_major(max(amounts, default=0), currency) if _is_code(currency) else Decimal(0)


def _is_code(currency: str) -> bool:
    return len(currency) == 3 and currency.isalpha() and currency.isascii()


def _listed(finding: Mapping[str, Any]) -> dict[str, Any]:
    currency = finding.get("currency")
    code = str(currency) if currency and _is_code(str(currency)) else None

    def amount(key: str) -> str | None:
        value = finding.get(key)
        if value is None or code is None:
            return None
        return format_major(int(value), code)

    return {
        "finding_id": finding.get("finding_id"),
        "category": finding.get("category"),
        "action": finding.get("action"),
        "company_id": finding.get("company_id"),
        "subscription_id": finding.get("subscription_id"),
        "transaction_id": finding.get("transaction_id"),
        "moesif_id": finding.get("moesif_id"),
        "entry_type": finding.get("entry_type"),
        "currency": currency,
        "stripe_amount": amount("stripe_amount_minor"),
        "moesif_amount": amount("moesif_amount_minor"),
        "delta": amount("delta_minor"),
        "detail": finding.get("detail"),
    }


def _one_line(finding: Mapping[str, Any]) -> str:
    amount = finding.get("delta") or finding.get("stripe_amount") or finding.get("moesif_amount")
    currency = str(finding.get("currency") or "").upper()
    where = finding.get("company_id") or "no company"
    ident = finding.get("transaction_id") or finding.get("moesif_id") or ""
    money = f"{amount} {currency}".strip() if amount is not None else "amount unknown"
    label = f"{finding['finding_id']} " if finding.get("finding_id") else ""
    return f"{label}{finding.get('category')} {money} on {where} {ident}".strip()


def _slack(value: object) -> str:
    """Escape text for Slack mrkdwn: ``&``, ``<``, ``>`` would otherwise be markup."""
    text = " ".join(str(value).split())
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# The outbox: the notifications table.


def review_findings(session: Session, run_id: str) -> list[dict[str, Any]]:
    """Return the findings of a run a person has to look at, as plain dicts."""
    return [
        {
            "category": row.category,
            "action": row.action,
            "company_id": row.company_id,
            "subscription_id": row.subscription_id,
            "transaction_id": row.transaction_id,
            "moesif_id": row.moesif_id,
            "entry_type": row.entry_type,
            "currency": row.currency,
            "stripe_amount_minor": row.stripe_amount_minor,
            "moesif_amount_minor": row.moesif_amount_minor,
            "detail": row.detail,
            "finding_id": getattr(row, "finding_id", None),
        }
        for row in findings_of_run(session, run_id, REVIEW_ACTIONS)
    ]


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
    counts: Mapping[str, int],
    totals: Mapping[str, str],
    report_path: Path | str | None,
    clock: Callable[[], datetime],
    error: str | None = None,
) -> Delivery | None:
    """After a run: store its notification if it earns one, then deliver all that wait.

    Never raises: a database or network problem is logged as a warning and the run's exit code
    stays what it was. Returns what was delivered, or ``None`` without a URL or on a problem.
    """
    if url is None:
        return None
    try:
        if should_notify(exit_code):
            with sessions.begin() as session:
                payload = build_payload(
                    run_id=run_id,
                    exit_code=exit_code,
                    counts=counts,
                    totals=totals,
                    report_path=str(report_path) if report_path is not None else None,
                    findings=review_findings(session, run_id),
                    error=error,
                )
                payload["miss_rate"] = live_path.measure(session, clock()).as_dict()
                enqueue(session, run_id, payload, clock())
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
