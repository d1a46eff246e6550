"""What every query module shares: ``IN`` lists in chunks, and the backend's upsert statement."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from reconcile.db.models import Base

IN_CHUNK = 500
"""Values per ``IN (...)`` list, under every backend's parameter limit."""


def chunks(items: Iterable[str], size: int = IN_CHUNK) -> Iterator[list[str]]:
    """Yield the distinct ``items``, sorted, in lists of at most ``size``."""
    ordered = sorted(set(items))
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


def upsert(
    session: Session, table: type[Base], rows: list[dict[str, Any]]
) -> postgresql.Insert | sqlite.Insert:
    """Return ``INSERT … VALUES rows`` for the session's backend, ready for ``ON CONFLICT``."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table).values(rows)
    return sqlite.insert(table).values(rows)
