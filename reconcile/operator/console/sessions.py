"""The review page's sessions, kept in this process: the cookie carries only a random id.

A session is bound to a fingerprint of the console token (:meth:`ConsoleSettings.session_key`):
after the token changes no session made under the old one is honoured. Signing out removes the
session, so the cookie it leaves behind opens nothing when it is replayed. Sessions end after
:data:`SESSION_LIFETIME`; the store holds at most ``capacity`` of them, dropping the oldest.

:class:`ServerSessions` is the ASGI middleware that finds the session of each request and puts
what the handlers read (``operator``, ``csrf``) in ``request.session``, which is read-only to
them: only :meth:`SessionStore.start` and :meth:`SessionStore.end` change a session.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from reconcile.operator.console.settings import SESSION_LIFETIME

SESSION_COOKIE = "reconcile_console"
"""The cookie that carries the session id."""
CAPACITY = 1000
"""The most sessions the store holds (logins are rate-limited, so this is a backstop)."""


@dataclass(frozen=True)
class ConsoleSession:
    """One signed-in operator: when, under which token, and the CSRF token of their forms."""

    session_id: str
    fingerprint: str
    csrf: str
    started_at: datetime


def still_valid(
    session: ConsoleSession, fingerprint: str, now: datetime, lifetime: timedelta
) -> bool:
    """Return whether ``session`` is honoured now: same token, within its lifetime."""
    same_token = hmac.compare_digest(session.fingerprint.encode(), fingerprint.encode())
    return same_token and session.started_at <= now < session.started_at + lifetime


class SessionStore:
    """The sessions of this process, by id; safe to share between threads."""

    def __init__(self, lifetime: timedelta = SESSION_LIFETIME, capacity: int = CAPACITY) -> None:
        """Keep sessions for ``lifetime``, at most ``capacity`` at once."""
        self.lifetime = lifetime
        self.capacity = capacity
        self._sessions: dict[str, ConsoleSession] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Return how many sessions are held."""
        with self._lock:
            return len(self._sessions)

    def start(self, fingerprint: str, now: datetime) -> ConsoleSession:
        """Return a new session under the token of ``fingerprint``, with a fresh id and CSRF."""
        session = ConsoleSession(
            secrets.token_urlsafe(32), fingerprint, secrets.token_urlsafe(32), now
        )
        with self._lock:
            while len(self._sessions) >= self.capacity:
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[session.session_id] = session
        return session

    def find(
        self, session_id: str | None, fingerprint: str, now: datetime
    ) -> ConsoleSession | None:
        """Return the session of ``session_id`` if it is still honoured; forget it otherwise."""
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if still_valid(session, fingerprint, now, self.lifetime):
                return session
            del self._sessions[session_id]
            return None

    def end(self, session_id: str | None) -> None:
        """Revoke the session of ``session_id`` (signing out); unknown ids are ignored."""
        if session_id:
            with self._lock:
                self._sessions.pop(session_id, None)


def session_id_of(scope: Scope) -> str | None:
    """Return the session id the request's cookie carries, or ``None``."""
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            found = cookie_parser(bytes(value).decode("latin-1")).get(SESSION_COOKIE)
            if found:
                return found
    return None


class ServerSessions:
    """ASGI middleware: ``request.session`` holds the request's session, read-only."""

    def __init__(
        self,
        app: ASGIApp,
        store: SessionStore,
        fingerprint: str,
        clock: Callable[[], datetime],
    ) -> None:
        """Look sessions up in ``store`` under the token of ``fingerprint``."""
        self.app = app
        self.store = store
        self.fingerprint = fingerprint
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request with its session (or none) in ``scope["session"]``."""
        if scope["type"] == "http":
            found = self.store.find(session_id_of(scope), self.fingerprint, self.clock())
            scope["session"] = (
                MappingProxyType({})
                if found is None
                else MappingProxyType({"operator": True, "csrf": found.csrf})
            )
        await self.app(scope, receive, send)
