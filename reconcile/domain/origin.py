"""Who asked for a posting: the text recorded in ``postings.origin``, and the run it names."""

from __future__ import annotations

RUN = "run"
WEBHOOK = "webhook"
TOP_UP = "top-up"


def for_run(run_id: str) -> str:
    """Return the origin of a posting made by the reconciliation run ``run_id``."""
    return f"{RUN}:{run_id}"


def for_webhook(event_id: str) -> str:
    """Return the origin of a posting made for the Stripe webhook event ``event_id``."""
    return f"{WEBHOOK}:{event_id}"


def for_top_up(key: str) -> str:
    """Return the origin of a posting made by ``/top-up`` (its idempotency key or PaymentIntent)."""
    return f"{TOP_UP}:{key}"


def run_id_of(origin: str) -> str | None:
    """Return the run an origin names, or ``None`` when a request handler made the posting."""
    kind, _, name = origin.partition(":")
    return name if kind == RUN and name else None


def describe(origin: str) -> str:
    """Return an origin as words for a report: ``run 2026…``, ``webhook evt_…``, ``top-up …``."""
    kind, _, name = origin.partition(":")
    return f"{kind} {name}" if name else origin


CORRECTION = "correction"


def for_correction(finding_id: str) -> str:
    """Return the origin of a posting that corrects the finding ``finding_id`` (section 10a)."""
    return f"{CORRECTION}:{finding_id}"
