"""What a caller asks of one run, and what the run did."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from reconcile.domain.times import Window
from reconcile.errors import ExitCode
from reconcile.rules.miss_rate import MissRate


@dataclass(frozen=True)
class RunRequest:
    """What the caller asks of one run; ``since=None`` means from the watermark minus lookback."""

    since: datetime | None = None
    until: datetime | None = None
    dry_run: bool = False
    companies: tuple[str, ...] = ()
    report_dir: Path | None = None
    trigger: str = "manual"
    stripe_account: str | None = None
    """The connected account read with the ``Stripe-Account`` header; ``None``: the key's own."""
    first_since: datetime | None = None
    """With ``since=None``, where an account with no watermark yet starts (an unattended run's
    first); ``None``: such a run needs ``since``."""


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
    summary: str = ""
    miss_rate: MissRate | None = None
    """The live path's miss rate after the run (``None``: not measured)."""

    @property
    def duration_seconds(self) -> float:
        """Return how long the run took."""
        return (self.finished_at - self.started_at).total_seconds()


def new_run_id(started_at: datetime) -> str:
    """Return a sortable, unique run id such as ``20261124T020000Z-3f9a1c``."""
    return f"{started_at.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"
