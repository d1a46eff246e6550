"""Whether the console takes a login attempt now: budgets per client and overall, and token length.

A login attempt is allowed while the client has made fewer than ``per_client`` attempts, and all
clients together fewer than ``overall``, within the sliding ``window`` before it. The record of
attempts is a value: :func:`attempt` takes it and returns the verdict with the record to keep.
Only allowed attempts are recorded, so the record never holds more than ``overall`` attempts
however many clients knock. A refused attempt learns how long to wait (``retry_after``, for a
429's ``Retry-After``): until enough of the attempts that fill its budget leave the window.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType

MIN_TOKEN_LENGTH = 32
"""The fewest characters a console token may have (contract section 3)."""


@dataclass(frozen=True)
class LoginBudget:
    """How many login attempts a window holds, per client and for all clients together.

    Raises:
        ValueError: a budget is below one, or the window is not positive.
    """

    per_client: int = 5
    overall: int = 60
    window: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        """Refuse a budget that could never allow a login, or a window that never ends."""
        if self.per_client < 1 or self.overall < 1:
            raise ValueError("a login budget allows at least one attempt")
        if self.window <= timedelta(0):
            raise ValueError("a login window must be positive")


DEFAULT_BUDGET = LoginBudget()


@dataclass(frozen=True)
class Attempts:
    """The allowed login attempts still inside the window: each client's, oldest first."""

    by_client: Mapping[str, tuple[datetime, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )

    @property
    def overall(self) -> tuple[datetime, ...]:
        """Return every client's attempts together, oldest first."""
        return tuple(sorted(moment for moments in self.by_client.values() for moment in moments))


@dataclass(frozen=True)
class Verdict:
    """Whether an attempt may go on, how long to wait if not, and the record to keep."""

    allowed: bool
    retry_after: timedelta
    attempts: Attempts

    @property
    def retry_after_seconds(self) -> int:
        """Return the wait in whole seconds, rounded up, at least 1 when refused (0 if allowed)."""
        if self.allowed:
            return 0
        return max(1, math.ceil(self.retry_after.total_seconds()))


def attempt(
    attempts: Attempts, client: str, now: datetime, budget: LoginBudget = DEFAULT_BUDGET
) -> Verdict:
    """Return whether ``client`` may try a login at ``now``, and the record to keep after.

    Args:
        attempts: the record so far.
        client: who is trying (the address the request came from).
        now: the time of the attempt (aware).
        budget: the budgets and window.

    Raises:
        ValueError: ``now`` is naive.
    """
    if now.tzinfo is None:
        raise ValueError("a login attempt needs an aware time")
    current = _pruned(attempts, now, budget.window)
    mine = current.by_client.get(client, ())
    everyone = current.overall
    waits = []
    if len(mine) >= budget.per_client:
        waits.append(_wait(mine, budget.per_client, now, budget.window))
    if len(everyone) >= budget.overall:
        waits.append(_wait(everyone, budget.overall, now, budget.window))
    if waits:
        return Verdict(False, max(waits), current)
    recorded = dict(current.by_client)
    recorded[client] = (*mine, now)
    return Verdict(True, timedelta(0), Attempts(MappingProxyType(recorded)))


def forget(attempts: Attempts, client: str) -> Attempts:
    """Return the record without ``client``'s attempts, after it signed in (overall too)."""
    remaining = {name: moments for name, moments in attempts.by_client.items() if name != client}
    return Attempts(MappingProxyType(remaining))


def token_problem(token: str | None) -> str | None:
    """Return why ``token`` cannot open the console, or ``None`` when it can.

    A token is taken without surrounding whitespace and needs at least
    :data:`MIN_TOKEN_LENGTH` characters; it never contains control characters.
    """
    text = (token or "").strip()
    if not text:
        return "RECONCILE_CONSOLE_TOKEN is not set"
    if len(text) < MIN_TOKEN_LENGTH:
        return f"RECONCILE_CONSOLE_TOKEN must have at least {MIN_TOKEN_LENGTH} characters"
    if any(not character.isprintable() for character in text):
        return "RECONCILE_CONSOLE_TOKEN must not contain control characters"
    return None


def _pruned(attempts: Attempts, now: datetime, window: timedelta) -> Attempts:
    """Return the record without attempts that left the window before ``now``."""
    start = now - window
    kept = {
        client: inside
        for client, moments in attempts.by_client.items()
        if (inside := tuple(moment for moment in moments if moment > start))
    }
    return Attempts(MappingProxyType(kept))


def _wait(
    moments: tuple[datetime, ...], budget: int, now: datetime, window: timedelta
) -> timedelta:
    """Return how long until fewer than ``budget`` of ``moments`` (oldest first) are inside."""
    leaving = moments[len(moments) - budget]
    return max(leaving + window - now, timedelta(0))
