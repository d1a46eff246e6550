"""What a run that needs attention tells the operators: the notification of sections 10 and 10a.

:func:`build_notice` turns a run's findings, what it posted and how it ended into the one JSON
object that is POSTed: ``text`` (a short summary in Slack's mrkdwn, also the fallback of the
blocks), ``run_id``, ``exit_code``, ``dry_run``, ``counts`` per category, ``automatic`` (posted,
or in a dry run would be), ``needs_person``, ``overdue`` (how many findings needing review are
past their due time, this run's or older ones still open in the queue), ``totals`` per currency,
``report_path``, at most :data:`MAX_FINDINGS` ``findings``, at most as many
``overdue_findings`` (most overdue first) and Slack ``blocks``. Every amount is
a decimal string in major units of its own currency, signed as section 7's ``delta``: positive
when the customer is owed credit, negative when Moesif holds too much. Amounts of different
currencies are never added or compared: findings are ranked blocked-but-owed first, then by
their place in their own currency's order (largest absolute delta first), so the largest of
each currency come before the second largest of any. An ignored finding is never listed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from reconcile.domain.money import format_major, is_iso_currency
from reconcile.domain.times import to_iso
from reconcile.domain.values import Entry
from reconcile.domain.vocab import REVIEW_ACTIONS, Action
from reconcile.errors import ExitCode
from reconcile.rules.lifecycle import IGNORED, NEEDS_REVIEW, OPEN
from reconcile.rules.priority import DEFAULT_RULES, Assessment, PriorityRules, assess

MAX_FINDINGS = 20
"""Findings a notification lists at most."""

TEXT_FINDINGS = 5
"""Findings the human ``text`` names at most."""

MAX_FIELD = 200
"""Characters of one outside value (an id, a detail) the text and blocks show at most."""

_WAITING = frozenset(str(status) for status in NEEDS_REVIEW)
"""States of a finding that can be overdue: open, assigned."""

OWED = "owed_to_customers"
OVER = "over_credited"
POSTED = "posted"

_HEADLINE: dict[int, str] = {
    ExitCode.DRIFT: "drift needs review",
    ExitCode.FAILED: "the run failed",
    ExitCode.GUARDRAIL: "a guardrail stopped posting",
}

OVERDUE_HEADLINE = "overdue finding(s) need a person"
"""The headline of a run that ended well (exit 0) but leaves overdue findings in the queue."""

_NEXT_STEP: dict[int, str] = {
    ExitCode.DRIFT: "Next: open each finding (`reconcile findings`), assign it, then correct it "
    "(`reconcile findings correct ID --note ...`) or fix it in Moesif or Stripe; the next run "
    "checks it.",
    ExitCode.FAILED: "Next: read the error, fix what was unavailable; a rerun resumes where "
    "this one stopped and posts nothing twice.",
    ExitCode.GUARDRAIL: "Next: nothing was posted. Check the report; if the postings are right, "
    "raise RECONCILE_MAX_POSTINGS or RECONCILE_MAX_POSTING_TOTAL for one rerun.",
    ExitCode.OK: "Next: this run found no new drift, but the overdue findings above wait for a "
    "person: assign each (`reconcile findings assign ID --to NAME`), then correct or close it.",
}


@dataclass(frozen=True)
class NoticeFinding:
    """One finding of the run, as the notification needs it.

    Attributes:
        finding_id: its stable id.
        category: its drift category.
        company_id: the Moesif company it is about, when known.
        subscription_id: the Moesif subscription it is about, when known.
        currency: its currency code, when known.
        delta_minor: its signed delta in minor units (section 7), when known.
        action: what the run did about it.
        blocked: whether Moesif shows the subscription no available credit (zero or less).
        first_seen: when a run first reported it (aware).
        status: its state in the exception queue; an ``ignored`` one is never sent.
        transaction_id: the Stripe movement it is about, when any.
        moesif_id: the Moesif row it is about, when any.
        entry_type: ``credit`` or ``debit``, when known.
        stripe_amount_minor: Stripe's amount, when any.
        moesif_amount_minor: Moesif's amount, when any.
        detail: the report's one-line detail.
        owner: who works on it in the exception queue, when anyone.
    """

    finding_id: str
    category: str
    company_id: str | None
    subscription_id: str | None
    currency: str | None
    delta_minor: int | None
    action: str
    blocked: bool
    first_seen: datetime
    status: str = OPEN
    transaction_id: str | None = None
    moesif_id: str | None = None
    entry_type: str | None = None
    stripe_amount_minor: int | None = None
    moesif_amount_minor: int | None = None
    detail: str | None = None
    owner: str | None = None

    @property
    def owed(self) -> bool:
        """Return whether the customer is owed credit (a positive delta)."""
        return self.delta_minor is not None and self.delta_minor > 0

    @property
    def blocked_but_owed(self) -> bool:
        """Return whether the customer is blocked in Moesif while owed credit."""
        return self.blocked and self.owed


def needs_person(finding: NoticeFinding, *, dry_run: bool) -> bool:
    """Return whether a finding waits for a person (a dry run's ``would_post`` does not)."""
    if finding.status == IGNORED or finding.action not in REVIEW_ACTIONS:
        return False
    return not (dry_run and finding.action == Action.WOULD_POST)


def listed(finding: NoticeFinding) -> bool:
    """Return whether a finding belongs in the notification's list: under review, not ignored."""
    return finding.status != IGNORED and finding.action in REVIEW_ACTIONS


def rank(
    findings: Sequence[NoticeFinding], now: datetime, rules: PriorityRules = DEFAULT_RULES
) -> list[NoticeFinding]:
    """Return findings in the order a notification lists them.

    Blocked-but-owed customers first; then, within each currency, the largest absolute delta
    first, so that the first of every currency comes before the second of any (amounts of two
    currencies are never compared). Findings at the same place in their currencies go by
    priority and due time (section 10a), then currency code and id. Findings without a known
    delta come last in their currency.
    """
    place: dict[int, int] = {}
    by_group: dict[tuple[bool, str], list[int]] = defaultdict(list)
    for index, finding in enumerate(findings):
        by_group[(finding.blocked_but_owed, _code(finding) or "")].append(index)
    for group in by_group.values():
        group.sort(key=lambda index: _size_key(findings[index]))
        for position, index in enumerate(group):
            place[index] = position

    def key(index: int) -> tuple[bool, int, int, datetime, str, str]:
        finding = findings[index]
        urgency = _assessed(finding, now, rules)
        return (
            not finding.blocked_but_owed,
            place[index],
            *urgency.queue_key(),
            _code(finding) or "~",
            finding.finding_id,
        )

    return [findings[index] for index in sorted(range(len(findings)), key=key)]


def totals(findings: Sequence[NoticeFinding], posted: Sequence[Entry]) -> dict[str, dict[str, str]]:
    """Return per currency what customers are owed, what Moesif holds too much, what was posted.

    ``owed_to_customers`` sums the positive deltas of the findings under review, and
    ``over_credited`` their negative deltas (so it is zero or negative); ``posted`` is the net of
    this run's postings, signed like a delta (a credit adds, a debit takes away). Decimal strings
    in major units, keyed by lower-case currency code; findings without a currency or delta are
    not counted.
    """
    sums: dict[str, dict[str, int]] = defaultdict(lambda: {OWED: 0, OVER: 0, POSTED: 0})
    for finding in findings:
        code = _code(finding)
        if code is None or finding.delta_minor is None or not listed(finding):
            continue
        sums[code][OWED if finding.delta_minor > 0 else OVER] += finding.delta_minor
    for entry in posted:
        code = entry.currency.lower()
        sums[code][POSTED] += entry.amount_minor * (-1 if entry.entry_type == "debit" else 1)
    return {
        code: {key: format_major(value, code) for key, value in sums[code].items()}
        for code in sorted(sums)
    }


def overdue(
    reported: Sequence[NoticeFinding],
    queued: Sequence[NoticeFinding],
    now: datetime,
    rules: PriorityRules = DEFAULT_RULES,
) -> list[NoticeFinding]:
    """Return the findings needing review that are past their due time, most overdue first.

    ``reported`` are the run's findings under review, ``queued`` the queue's others still
    needing review; a finding is counted once (the run's copy kept), an ignored or closed one
    never. Ordered by due time, then priority and id.
    """
    seen: set[str] = set()
    late: list[tuple[Assessment, NoticeFinding]] = []
    for finding in [*reported, *queued]:
        if finding.finding_id in seen or finding.status not in _WAITING:
            continue
        seen.add(finding.finding_id)
        assessment = _assessed(finding, now, rules)
        if assessment.overdue(now):
            late.append((assessment, finding))
    late.sort(key=lambda pair: (pair[0].due_at, pair[0].priority.rank, pair[1].finding_id))
    return [finding for _, finding in late]


def build_notice(
    *,
    run_id: str,
    exit_code: int,
    findings: Sequence[NoticeFinding],
    posted: Sequence[Entry],
    dry_run: bool,
    report_path: str | None,
    now: datetime,
    console_url: str | None = None,
    error: str | None = None,
    rules: PriorityRules = DEFAULT_RULES,
    queued: Sequence[NoticeFinding] = (),
) -> dict[str, Any]:
    """Return the JSON object a run posts (sections 10 and 10a).

    Args:
        run_id: the run.
        exit_code: how it ended.
        findings: every finding the run reported, whatever its action; ignored ones are left out.
        posted: the entries this run posted (confirmed); none in a dry run.
        dry_run: whether the run was a dry run (then nothing was posted).
        report_path: the drift report, if one was written.
        now: the time priorities and due times are judged at (the run's end).
        console_url: the console's public address; each finding then links to its page.
        error: why a failed run failed, without secrets.
        rules: the priority thresholds.
        queued: findings still needing review in the exception queue that this run did not
            report (an older window's); those past their due time are counted and listed as
            overdue, never in ``findings``, ``counts`` or ``totals``.

    Raises:
        ValueError: a dry run is said to have posted something.
    """
    if dry_run and posted:
        raise ValueError("a dry run posts nothing")
    kept = [finding for finding in findings if finding.status != IGNORED]
    review = rank([finding for finding in kept if listed(finding)], now, rules)
    shown = [_shown(finding, now, console_url, rules) for finding in review[:MAX_FINDINGS]]
    late = overdue(review, queued, now, rules)
    automatic = (
        sum(1 for finding in kept if finding.action == Action.WOULD_POST)
        if dry_run
        else len(posted)
    )
    notice: dict[str, Any] = {
        "text": "",
        "run_id": run_id,
        "exit_code": int(exit_code),
        "dry_run": dry_run,
        "counts": dict(sorted(Counter(finding.category for finding in kept).items())),
        "automatic": automatic,
        "needs_person": sum(1 for finding in kept if needs_person(finding, dry_run=dry_run)),
        "overdue": len(late),
        "totals": totals(kept, posted),
        "report_path": report_path,
        "findings": shown,
        "overdue_findings": [
            _shown(finding, now, console_url, rules) for finding in late[:MAX_FINDINGS]
        ],
    }
    facts = _Facts(notice, kept, review, error)
    notice["text"] = facts.text()
    notice["blocks"] = facts.blocks()
    return notice


def finding_url(console_url: str, finding_id: str) -> str:
    """Return the console page of a finding: the base, ``/findings/`` and the quoted id."""
    return console_url.rstrip("/") + "/findings/" + quote(finding_id, safe="")


def signed(amount: str | None, currency: str | None) -> str:
    """Return a decimal string as a person reads it: ``+1,039.50 USD``, ``-5,000 JPY``."""
    if amount is None:
        return "amount unknown"
    value = Decimal(amount)
    text = format(value, "+,") if value else format(value, ",")
    return f"{text} {(currency or '').upper()}".strip()


def _code(finding: NoticeFinding) -> str | None:
    currency = finding.currency
    return currency.lower() if currency and is_iso_currency(currency) else None


def _assessed(finding: NoticeFinding, now: datetime, rules: PriorityRules) -> Assessment:
    return assess(finding.delta_minor, _code(finding), finding.first_seen, now, rules)


def _size_key(finding: NoticeFinding) -> tuple[bool, int, str]:
    """Sort key within one currency: known deltas first, the largest absolute one first."""
    delta = finding.delta_minor
    return (delta is None, -abs(delta or 0), finding.finding_id)


def _major(minor: int | None, code: str | None) -> str | None:
    return None if minor is None or code is None else format_major(minor, code)


def _shown(
    finding: NoticeFinding, now: datetime, console_url: str | None, rules: PriorityRules
) -> dict[str, Any]:
    """Return one listed finding as the notification carries it."""
    code = _code(finding)
    assessment = _assessed(finding, now, rules)
    return {
        "finding_id": finding.finding_id,
        "category": finding.category,
        "action": finding.action,
        "company_id": finding.company_id,
        "subscription_id": finding.subscription_id,
        "transaction_id": finding.transaction_id,
        "moesif_id": finding.moesif_id,
        "entry_type": finding.entry_type,
        "currency": code or finding.currency,
        "stripe_amount": _major(finding.stripe_amount_minor, code),
        "moesif_amount": _major(finding.moesif_amount_minor, code),
        "delta": _major(finding.delta_minor, code),
        "blocked": finding.blocked,
        "priority": assessment.priority.value,
        "due_at": to_iso(assessment.due_at),
        "overdue": finding.status in _WAITING and assessment.overdue(now),
        "status": str(finding.status),
        "owner": finding.owner,
        "first_seen_at": to_iso(finding.first_seen),
        "detail": finding.detail,
        "url": finding_url(console_url, finding.finding_id) if console_url else None,
    }


class _Facts:
    """The same facts said twice: as mrkdwn text and as Slack blocks."""

    def __init__(
        self,
        notice: Mapping[str, Any],
        kept: Sequence[NoticeFinding],
        review: Sequence[NoticeFinding],
        error: str | None,
    ) -> None:
        self.notice = notice
        self.kept = kept
        self.review = review
        self.error = error
        self.exit_code = int(notice["exit_code"])
        self.dry_run = bool(notice["dry_run"])

    def headline(self) -> str:
        words = _HEADLINE.get(self.exit_code, "see the report")
        if self.exit_code == ExitCode.OK and int(self.notice["overdue"]):
            words = f"{self.notice['overdue']} {OVERDUE_HEADLINE}"
        mark = "[DRY RUN] " if self.dry_run else ""
        return (
            f"{mark}reconcile run {_clean(self.notice['run_id'])}: {words} (exit {self.exit_code})"
        )

    def money(self) -> list[str]:
        """Lines of totals per currency: owed, over-credited, posted (never added across)."""
        lines = []
        for code, sums in self.notice["totals"].items():
            parts = [
                f"owed to customers {signed(sums[OWED], code)}",
                f"over-credited {signed(sums[OVER], code)}",
            ]
            parts += [] if self.dry_run else [f"posted {signed(sums[POSTED], code)}"]
            lines.append(f"{code.upper()}: " + ", ".join(parts))
        return lines

    def work(self) -> str:
        """Say what was done automatically and what waits for a person."""
        automatic, person = int(self.notice["automatic"]), int(self.notice["needs_person"])
        if self.dry_run:
            done = f"Dry run: nothing was posted; {automatic} would be posted automatically"
        else:
            done = f"{automatic} posted automatically"
        overdue = int(self.notice["overdue"])
        late = f" {overdue} overdue." if overdue else ""
        return f"{done}; {person} need{'s' if person == 1 else ''} a person.{late}"

    def categories(self) -> list[str]:
        """One line per category: how many, and how many of them were posted or need a person."""
        lines = []
        for category, count in self.notice["counts"].items():
            mine = [finding for finding in self.kept if finding.category == category]
            done = Action.WOULD_POST if self.dry_run else Action.POSTED
            posted = sum(1 for finding in mine if finding.action == done)
            person = sum(1 for finding in mine if needs_person(finding, dry_run=self.dry_run))
            verb = "would be posted" if self.dry_run else "posted"
            parts = [f"{posted} {verb} automatically"] if posted else []
            parts += [f"{person} need{'s' if person == 1 else ''} a person"] if person else []
            suffix = f" ({', '.join(parts)})" if parts else ""
            lines.append(f"• `{_slack(category)}` {count}{suffix}")
        return lines

    def finding_line(self, shown: Mapping[str, Any]) -> str:
        money = signed(shown["delta"], shown["currency"])
        where = "/".join(
            _slack(value) for value in (shown["company_id"], shown["subscription_id"]) if value
        )
        flags = [str(shown["priority"]), f"due {shown['due_at']}"]
        flags += ["OVERDUE"] if shown["overdue"] else []
        flags += [f"owner {_slack(shown['owner'])}"] if shown.get("owner") else []
        flags += ["BLOCKED while owed"] if shown["blocked"] and _positive(shown["delta"]) else []
        name = _slack(shown["finding_id"])
        label = f"<{_link(shown['url'])}|{name}>" if shown["url"] else name
        return (
            f"{label} `{_slack(shown['category'])}` {money} on {where or 'no company'} "
            f"({', '.join(flags)})"
        )

    def late(self) -> list[str]:
        """Lines naming the overdue findings, most overdue first (empty when none is)."""
        late: Sequence[Mapping[str, Any]] = self.notice["overdue_findings"]
        if not late:
            return []
        count = int(self.notice["overdue"])
        lines = [f"Overdue ({count}), past their due time:"]
        lines += ["• " + self.finding_line(item) for item in late[:TEXT_FINDINGS]]
        if count > TEXT_FINDINGS:
            lines.append(f"…and {count - TEXT_FINDINGS} more overdue (`reconcile findings`)")
        return lines

    def tail(self) -> list[str]:
        lines = []
        path = self.notice["report_path"]
        if path:
            lines.append(f"Report: `{_slack(path)}`")
        if self.dry_run and int(self.notice["automatic"]):
            lines.append("A run without --dry-run posts what this one would have posted.")
        lines.append(_NEXT_STEP.get(self.exit_code, _NEXT_STEP[ExitCode.FAILED]))
        return lines

    def reopened(self) -> str | None:
        ids = sorted(f.finding_id for f in self.review if f.action == Action.REOPENED)
        if not ids:
            return None
        extra = len(ids) - TEXT_FINDINGS
        more = f" and {extra} more" if extra > 0 else ""
        return (
            f"Reopened: {len(ids)} finding(s) marked resolved still drift: "
            f"{_slack(', '.join(ids[:TEXT_FINDINGS]))}{more}"
        )

    def text(self) -> str:
        lines = [f"*{_slack(self.headline())}*"]
        if self.error:
            lines.append(f"Error: {_slack(self.error)}")
        lines += [_slack(line) for line in self.money()]
        lines.append(self.work())
        lines += filter(None, [self.reopened()])
        lines += self.categories()
        shown: Sequence[Mapping[str, Any]] = self.notice["findings"]
        if shown:
            lines.append("First to look at:")
            lines += ["• " + self.finding_line(item) for item in shown[:TEXT_FINDINGS]]
            hidden = len(self.review) - TEXT_FINDINGS
            if hidden > 0:
                lines.append(f"…and {hidden} more in the report")
        lines += self.late()
        return "\n".join(lines + self.tail())

    def blocks(self) -> list[dict[str, Any]]:
        """Return Slack Block Kit blocks with the same facts as the text (at most 30 blocks)."""
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": self.headline()[:150]}}
        ]
        if self.error:
            blocks.append(_section(f"*Error:* {_slack(self.error)}"))
        summary = [_slack(line) for line in self.money()] + [self.work()]
        summary += filter(None, [self.reopened()])
        blocks.append(_section("\n".join(summary + self.categories())))
        shown: Sequence[Mapping[str, Any]] = self.notice["findings"]
        if shown:
            blocks.append({"type": "divider"})
            blocks += [_section(self.finding_line(item)) for item in shown]
            hidden = len(self.review) - len(shown)
            if hidden > 0:
                blocks.append(_context(f"…and {hidden} more in the report"))
        late = self.late()
        if late:
            blocks.append({"type": "divider"})
            blocks.append(_section("\n".join(late)))
        blocks.append(_context("\n".join(self.tail())))
        return blocks


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:3000]}]}


def _positive(amount: str | None) -> bool:
    return amount is not None and Decimal(amount) > 0


def _clean(value: object) -> str:
    """Return an outside value on one line, cut to :data:`MAX_FIELD` characters."""
    text = " ".join(str(value).split())
    return text if len(text) <= MAX_FIELD else text[: MAX_FIELD - 1] + "…"


def _slack(value: object) -> str:
    """Escape text for Slack mrkdwn: ``&``, ``<``, ``>`` would otherwise be markup."""
    return _clean(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(url: str) -> str:
    """Return a URL safe inside Slack's ``<url|label>``: no ``|``, ``<``, ``>`` or spaces."""
    return url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E").replace(" ", "%20")


__all__ = [
    "MAX_FINDINGS",
    "NoticeFinding",
    "build_notice",
    "finding_url",
    "listed",
    "needs_person",
    "overdue",
    "rank",
    "signed",
    "totals",
]
