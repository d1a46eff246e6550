"""Errors the job raises, and the exit code each one ends a run with.

The tree::

    ReconcileError                  exit 3 unless a subclass says otherwise
    ├── UsageError                  exit 2: bad flags, dates, or a first run without --since
    │   ├── ConfigError             exit 2: a missing or malformed setting
    │   └── CredentialsRejected     exit 2: Stripe or Moesif refused the key (401/403)
    ├── RunFailed                   exit 3: an outside system failed after retries; a rerun resumes
    │   ├── StripeUnavailable
    │   ├── MoesifUnavailable       no useful answer; a POST surely was not applied
    │   ├── MoesifOutcomeUnknown    a POST may have been applied: read back before any resend
    │   ├── MoesifRejected          a non-retriable Moesif answer (status and a body excerpt)
    │   ├── MoesifReadCut           a one-second billing-reports window still at the read cap
    │   └── DatabaseUnavailable
    ├── GuardrailTripped            exit 4: a run would post too much, so it posted nothing
    └── LockHeld                    exit 75: another run holds the lock

``MoesifOutcomeUnknown`` is deliberately not a ``MoesifUnavailable``: whoever catches
"unavailable" may send again, and a POST whose outcome is unknown must never be sent again
before the ledger has been read back.

Messages are one line, name what failed, and never carry a secret.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes, as the contract defines them."""

    OK = 0
    DRIFT = 1
    USAGE = 2
    FAILED = 3
    GUARDRAIL = 4
    LOCKED = 75


class ReconcileError(Exception):
    """Base of every error the job reports to an operator."""

    exit_code: ExitCode = ExitCode.FAILED


class UsageError(ReconcileError):
    """The command line or a date given on it is wrong."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """A setting is missing or malformed; the message names the variable."""


class CredentialsRejected(UsageError):
    """Stripe or Moesif refused the credentials the job was given."""


class RunFailed(ReconcileError):
    """An outside system failed after retries; a rerun resumes where this one stopped."""

    exit_code = ExitCode.FAILED


class StripeUnavailable(RunFailed):
    """Stripe did not answer usefully after retries."""


class MoesifUnavailable(RunFailed):
    """Moesif did not answer usefully after retries."""


class MoesifOutcomeUnknown(RunFailed):
    """A POST may have reached Moesif, but no answer said whether it was applied.

    Resolve it by reading the ledger back (the row's ``transaction_id``) before posting again.
    """


class MoesifRejected(RunFailed):
    """Moesif answered with a status that retrying will not change."""

    def __init__(self, status: int, body_excerpt: str, what: str) -> None:
        """Keep the status and a short excerpt of the body for the message."""
        self.status = status
        self.body_excerpt = body_excerpt
        super().__init__(f"Moesif rejected {what}: HTTP {status}: {body_excerpt}")


class MoesifReadCut(RunFailed):
    """A billing-reports answer at ``RECONCILE_MOESIF_READ_CAP`` rows for a one-second window.

    The answer may be cut off and cannot be narrowed, so nothing is concluded from the read.
    """


class DatabaseUnavailable(RunFailed):
    """The snapshot database could not be reached or written."""


class GuardrailTripped(ReconcileError):
    """A run would post more than the guardrails allow, so it posted nothing."""

    exit_code = ExitCode.GUARDRAIL


class LockHeld(ReconcileError):
    """Another run holds the lock on this database."""

    exit_code = ExitCode.LOCKED
