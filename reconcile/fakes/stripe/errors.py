"""The errors the fake Stripe answers with, in Stripe's error shape."""

from __future__ import annotations

from collections.abc import Mapping


class StripeApiError(Exception):
    """An error the fake answers with, in Stripe's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        error_type: str = "invalid_request_error",
        headers: Mapping[str, str] | None = None,
        **extra: str,
    ) -> None:
        """Describe the answer: HTTP status, Stripe error type and message."""
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": error_type, "message": message, **extra}}
        self.headers = dict(headers or {})
