"""One reconciliation pass: sync, extract, match, post, report; this module owns the transaction."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from reconcile.config import Settings
from reconcile.errors import ExitCode
from reconcile.times import Window


@dataclass(frozen=True)
class RunRequest:
    """What the caller asks of one run; ``since=None`` means from the watermark minus lookback."""

    since: datetime | None = None
    until: datetime | None = None
    dry_run: bool = False
    companies: tuple[str, ...] = ()
    report_dir: Path | None = None
    trigger: str = "manual"


@dataclass(frozen=True)
class RunOutcome:
    """What one run did, for the terminal summary, logs, metrics and the exit code."""

    run_id: str
    exit_code: ExitCode
    window: Window
    started_at: datetime
    finished_at: datetime
    counts: Mapping[str, int] = field(default_factory=dict)
    totals: Mapping[str, str] = field(default_factory=dict)
    posted: int = 0
    post_failed: int = 0
    report_path: Path | None = None
    message: str = ""

    @property
    def duration_seconds(self) -> float:
        """Return how long the run took."""
        return (self.finished_at - self.started_at).total_seconds()


def execute(settings: Settings, request: RunRequest, *, now: datetime | None = None) -> RunOutcome:
    """Run one reconciliation pass and return what it did.

    Raises:
        ReconcileError: each subclass carries the exit code the process should end with.
    """
    raise NotImplementedError
