"""``/top-up``'s memory of client ``Idempotency-Key``s: stored before the charge, answered after.

The ``topup_keys`` table holds each key with a hash of its request and, once there is one, its
answer. A key is stored (unique) before anything is charged; a request with a known key gets the
stored answer, a 409 when the key belongs to another request or is being charged right now, or
takes over a key whose request stopped without an answer. Stripe forgets its idempotency keys
after 24 hours; this table does not.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from reconcile.db import topup_keys
from reconcile.safe_text import excerpt
from reconcile.serve.idempotency import KeyAction, StoredKey, action_for, is_final
from reconcile.serve.topup import Answer, TopUps, error
from reconcile.serve.topup_request import TopUpRequest, request_hash

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=2)
"""How long a request holds its key while it charges; a request that died lets go after it."""
RESUME_MARGIN = timedelta(minutes=10)
"""How far before a key was stored a resumed request looks for a PaymentIntent made under it."""


@dataclass(frozen=True)
class Claim:
    """What the store says a request under a key may do, with the key's answer to replay."""

    action: KeyAction
    answer: Answer | None = None
    stored_at: datetime | None = None


def claim(
    sessions: sessionmaker[Session],
    key: str,
    request: TopUpRequest,
    now: datetime,
    lease: timedelta = LEASE,
) -> Claim:
    """Store ``key`` for ``request`` or say what the stored key allows.

    Raises:
        SQLAlchemyError: the key could not be stored or read; nothing may be charged.
    """
    digest = request_hash(request)
    try:
        with sessions.begin() as session:
            topup_keys.add(
                session,
                key=key,
                request_hash=digest,
                customer_id=request.customer_id,
                now=now,
                claimed_until=now + lease,
            )
        return Claim(KeyAction.CHARGE, stored_at=now)
    except IntegrityError:
        pass
    with sessions.begin() as session:
        row = topup_keys.find(session, key)
        if row is None:
            return Claim(KeyAction.BUSY)
        stored = StoredKey(row.request_hash, row.claimed_until, row.answer_status is not None)
        action = action_for(stored, digest, now)
        if action is KeyAction.REPLAY:
            return Claim(action, Answer(int(row.answer_status or 0), _body(row.answer_body)))
        if action is KeyAction.RESUME and not topup_keys.take_over(session, row, now + lease):
            return Claim(KeyAction.BUSY)
        return Claim(action, stored_at=row.created_at)


def _body(raw: str | None) -> dict[str, Any]:
    body = json.loads(raw or "{}")
    return body if isinstance(body, dict) else {}


def remember(sessions: sessionmaker[Session], key: str, answer: Answer, now: datetime) -> None:
    """Store the answer a key got; later requests with the key and request get it again."""
    with sessions.begin() as session:
        topup_keys.answer(session, key, answer.status, json.dumps(answer.body), now)


def release(sessions: sessionmaker[Session], key: str, now: datetime) -> None:
    """Let a key go unanswered (Stripe or the database failed): a retry resumes it at once."""
    with sessions.begin() as session:
        topup_keys.release(session, key, now)


class RememberedTopUps:
    """``/top-up`` with its keys remembered: each key charges at most once, at any later time."""

    def __init__(
        self, sessions: sessionmaker[Session], topups: TopUps, clock: Callable[[], datetime]
    ) -> None:
        """Store keys in ``sessions``; charge with ``topups``."""
        self._sessions = sessions
        self._topups = topups
        self._clock = clock

    def top_up(self, request: TopUpRequest, key: str | None) -> Answer:
        """Answer a top-up; with a key, the key's stored answer or a new one, stored."""
        if key is None:
            return self._topups.top_up(request, None)
        try:
            claimed = claim(self._sessions, key, request, self._clock())
        except SQLAlchemyError:
            log.warning("could not store the Idempotency-Key %s", excerpt(key, 40))
            return error(503, "the Idempotency-Key could not be stored; nothing was charged")
        if claimed.action is KeyAction.REPLAY and claimed.answer is not None:
            return claimed.answer
        if claimed.action is KeyAction.CONFLICT:
            return error(
                409,
                "this Idempotency-Key was used for another request (customer, amount or "
                "currency); nothing was charged",
                reason="idempotency_key_reused",
            )
        if claimed.action is KeyAction.BUSY:
            return error(
                409,
                "a request with this Idempotency-Key is being processed; retry in a moment",
                reason="idempotency_key_in_use",
            )
        since = None
        if claimed.action is KeyAction.RESUME and claimed.stored_at is not None:
            since = claimed.stored_at - RESUME_MARGIN
        answer = self._topups.top_up(request, key, charged_since=since)
        self._settle(key, answer)
        return answer

    def _settle(self, key: str, answer: Answer) -> None:
        try:
            if is_final(answer.status):
                remember(self._sessions, key, answer, self._clock())
            else:
                release(self._sessions, key, self._clock())
        except SQLAlchemyError:
            log.warning(
                "could not store the answer of Idempotency-Key %s; a retry resumes it",
                excerpt(key, 40),
            )
