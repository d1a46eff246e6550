"""Whether a webhook body is Stripe's: its ``Stripe-Signature`` checked by the stripe SDK itself."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import stripe

from reconcile.serve.untrusted import UntrustedInput, load_json

TOLERANCE_SECONDS = 300
"""How old a signature may be. The SDK reads the system clock for this; it cannot be injected."""


def verified_event(
    body: bytes, header: str | None, secrets: Sequence[str], tolerance: int = TOLERANCE_SECONDS
) -> dict[str, Any] | None:
    """Return the event a signed body holds, or ``None`` unless one of ``secrets`` signed it.

    Each secret is tried in turn (rotation: old and new both valid for a while). A signature
    older than ``tolerance`` seconds, a body that is not a JSON event (or nests deeper than
    JSON may here), or no header is ``None``.
    """
    if not header or not secrets:
        return None
    if not any(_signed_with(body, header, secret, tolerance) for secret in secrets):
        return None
    try:
        event = load_json(body)
    except UntrustedInput:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not event["id"]:
        return None
    return event if isinstance(event.get("type"), str) else None


def _signed_with(body: bytes, header: str, secret: str, tolerance: int) -> bool:
    try:
        stripe.WebhookSignature.verify_header(body, header, secret, tolerance)
    except (stripe.SignatureVerificationError, UnicodeDecodeError):
        return False
    return True
