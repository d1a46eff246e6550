"""What a ``/top-up`` under an ``Idempotency-Key`` that is already stored may do: a pure rule."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class KeyAction(StrEnum):
    """What a request does with its ``Idempotency-Key``."""

    CHARGE = "charge"
    """The key is new (now stored): go on and charge."""
    RESUME = "resume"
    """The key's earlier request stopped before it answered (a crash, a timeout): take it over."""
    REPLAY = "replay"
    """The key has an answer: give it again, charge nothing."""
    CONFLICT = "conflict"
    """The key was used for another request (customer, amount or currency): 409."""
    BUSY = "busy"
    """Another request under the key is charging right now: 409, retry later."""


@dataclass(frozen=True)
class StoredKey:
    """A stored key as the rule needs it."""

    request_hash: str
    claimed_until: datetime
    answered: bool


def action_for(stored: StoredKey, request_hash: str, now: datetime) -> KeyAction:
    """Return what a request hashing to ``request_hash`` may do under an already stored key."""
    if stored.request_hash != request_hash:
        return KeyAction.CONFLICT
    if stored.answered:
        return KeyAction.REPLAY
    if stored.claimed_until > now:
        return KeyAction.BUSY
    return KeyAction.RESUME


def is_final(status: int) -> bool:
    """Return whether an answer stays the key's answer for good.

    Every answer does but a 5xx: then Stripe or the database could not be reached, the client is
    told to retry with the same key, and the retry resumes (the Stripe idempotency key derived
    from the client's key keeps it to one charge).
    """
    return status < 500
