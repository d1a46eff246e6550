"""``reconcile status``: the recent runs and the findings still open, read from the snapshot."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, make_url
from sqlalchemy.orm import Session

from reconcile.db.finding_states import open_by_category
from reconcile.db.findings import counts_by_category, first_findings
from reconcile.db.models import Finding, Run
from reconcile.db.runs import latest_full_run, recent_runs
from reconcile.domain.money import format_major
from reconcile.domain.times import to_iso
from reconcile.domain.vocab import Action

OPEN_ACTIONS = (
    Action.FLAGGED.value,
    Action.WOULD_POST.value,
    Action.POST_FAILED.value,
    Action.REOPENED.value,
)
"""Findings that still need a person (flagged), a real run (would post) or a rerun (failed),
as the run's summary counts them."""

EXAMPLES_PER_CATEGORY = 3
_RUN_COLUMNS = (
    "RUN",
    "WINDOW (UTC)",
    "TRIGGER",
    "STATUS",
    "EXIT",
    "STRIPE",
    "LEDGER",
    "FINDINGS",
    "FLAGGED",
    "POSTED",
    "FAILED",
    "TOOK",
    "REPORT",
)


def missing_sqlite_file(database_url: str) -> Path | None:
    """Return the SQLite file ``database_url`` names if it does not exist, else ``None``.

    Connecting would create it, and ``status`` only reads, so this is checked first.
    """
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    path = Path(url.database)
    return None if path.exists() else path


def schema_problem(current: str | None, head: str | None, known: Collection[str]) -> str | None:
    """Return why a database at revision ``current`` cannot be shown, or ``None`` if it can.

    Args:
        current: the database's revision, ``None`` when it has no schema at all.
        head: the newest revision of the installed migrations.
        known: every revision the installed migrations know.
    """
    if current is None:
        return "has no reconcile schema (a `reconcile run` creates it)"
    if current == head:
        return None
    if current in known:
        return f"is at revision {current}, behind {head} (the next `reconcile run` migrates it)"
    return f"is at revision {current}, which this version of reconcile does not know"


def describe_database(database_url: str) -> str:
    """Return how to name ``database_url`` in a message: its file, or the URL without password."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        return str(Path(url.database))
    return url.render_as_string(hide_password=True)


def status_report(engine: Engine, limit: int = 10) -> str:
    """Return the last ``limit`` runs and the open findings of the latest successful full run.

    Args:
        engine: the migrated snapshot database; only read.
        limit: how many runs to list, newest first.
    """
    with Session(engine) as session:
        runs = recent_runs(session, limit)
        sections = [_runs_section(runs), _open_section(session), _lifecycle_section(session)]
    return "\n\n".join(section for section in sections if section) + "\n"


def _runs_section(runs: Sequence[Run]) -> str:
    if not runs:
        return "No runs yet."
    rows = [_RUN_COLUMNS, *(_run_row(run) for run in runs)]
    return f"Last {len(runs)} runs, newest first:\n" + _table(rows)


def _run_row(run: Run) -> tuple[str, ...]:
    trigger = run.trigger + (" dry-run" if run.dry_run else "")
    if run.companies:
        trigger += f" companies={run.companies}"
    return (
        run.id,
        f"{to_iso(run.since)}..{to_iso(run.until)}",
        trigger,
        run.status,
        "-" if run.exit_code is None else str(run.exit_code),
        str(run.stripe_entries),
        str(run.ledger_rows),
        str(run.findings),
        str(run.flagged),
        str(run.posted),
        str(run.post_failed),
        _took(run.started_at, run.finished_at),
        run.report_path or "-",
    )


def _took(started_at: datetime, finished_at: datetime | None) -> str:
    if finished_at is None:
        return "-"
    return f"{(finished_at - started_at).total_seconds():.1f}s"


def _table(rows: Sequence[Sequence[str]]) -> str:
    rows = [[escaped(cell) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def _open_section(session: Session) -> str:
    run = latest_full_run(session)
    if run is None:
        return "Open findings: no successful full run yet."
    counts = counts_by_category(session, run.id, OPEN_ACTIONS)
    finished = to_iso(run.finished_at) if run.finished_at else "?"
    header = f"Open findings of run {run.id} (the latest successful full run, finished {finished}):"
    if not counts:
        return f"{header}\n  none."
    lines = [header]
    for category, action, count in counts:
        lines.append(f"  {category} ({action}): {count}")
        examples = first_findings(session, run.id, category, action, EXAMPLES_PER_CATEGORY)
        lines += [f"    - {_example(f)}" for f in examples]
        if count > EXAMPLES_PER_CATEGORY:
            lines.append(f"    … and {count - EXAMPLES_PER_CATEGORY} more in {run.report_path}")
    return "\n".join(lines)


def _example(finding: Finding) -> str:
    who = f"{finding.company_id or '?'}/{finding.subscription_id or '?'}"
    what = finding.transaction_id or finding.stripe_object_id or finding.moesif_id or "?"
    parts = [who, what]
    if finding.entry_type:
        parts.append(finding.entry_type)
    if finding.stripe_amount_minor is not None:
        parts.append(f"stripe {_amount(finding.stripe_amount_minor, finding.currency)}")
    if finding.moesif_amount_minor is not None:
        parts.append(f"moesif {_amount(finding.moesif_amount_minor, finding.currency)}")
    text = escaped(" ".join(parts))
    if finding.detail:
        detail = escaped(" ".join(finding.detail.split()))
        text += f": {detail[:80]}" + ("…" if len(detail) > 80 else "")
    return text


def _amount(minor: int, currency: str | None) -> str:
    if currency is None:
        return f"{minor} (minor units)"
    return f"{format_major(minor, currency)} {currency.upper()}"


def escaped(text: str) -> str:
    """Return text with control characters written as escapes, so data cannot drive a terminal."""
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text
    )


def _lifecycle_section(session: Session) -> str:
    """Say how many findings are open across all runs, per category, and since when."""
    rows = open_by_category(session)
    if not rows:
        return ""
    lines = ["Open findings across runs (reconcile findings lists them):"]
    lines += [
        f"  {escaped(category)}: {count}, oldest first seen {to_iso(oldest)}"
        for category, count, oldest in rows
    ]
    return "\n".join(lines)
