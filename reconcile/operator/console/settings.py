"""What the review page needs to know: its token, where reports are, how cookies travel."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from reconcile.config import Secret
from reconcile.rules.login_limit import DEFAULT_BUDGET, LoginBudget

SESSION_LIFETIME = timedelta(hours=12)
"""How long a login lasts."""


@dataclass(frozen=True)
class ConsoleSettings:
    """The review page's settings; without a token the page is off."""

    token: Secret | None
    report_dir: Path = Path("reports")
    secure_cookies: bool = False
    """Send the session cookie over HTTPS only (set it when served behind TLS)."""
    login_budget: LoginBudget = DEFAULT_BUDGET
    """How many login attempts a client, and all clients together, may make in a window."""

    @classmethod
    def from_env(cls, values: Mapping[str, str], report_dir: Path) -> ConsoleSettings:
        """Read ``RECONCILE_CONSOLE_TOKEN`` (the page is off when it is empty)."""
        raw = values.get("RECONCILE_CONSOLE_TOKEN", "").strip()
        secure = values.get("RECONCILE_CONSOLE_SECURE_COOKIES", "").strip().lower()
        return cls(
            token=Secret(raw) if raw else None,
            report_dir=report_dir,
            secure_cookies=secure in ("1", "true", "yes"),
        )

    def session_key(self) -> str:
        """Return the key that signs session cookies, derived from the token (never the token)."""
        if self.token is None:
            raise ValueError("the review page is off: no RECONCILE_CONSOLE_TOKEN")
        digest = hmac.new(
            self.token.reveal().encode("utf-8"), b"reconcile console session v1", hashlib.sha256
        )
        return digest.hexdigest()

    def login_csrf(self, nonce: str) -> str:
        """Return the CSRF token of the login form whose cookie carries ``nonce``."""
        digest = hmac.new(self.session_key().encode("utf-8"), nonce.encode("utf-8"), hashlib.sha256)
        return digest.hexdigest()

    def token_matches(self, offered: str) -> bool:
        """Return whether ``offered`` is the token, in constant time."""
        if self.token is None:
            return False
        return hmac.compare_digest(offered.encode("utf-8"), self.token.reveal().encode("utf-8"))
