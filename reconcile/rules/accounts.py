"""Which Stripe accounts a run reads: ``STRIPE_ACCOUNTS`` / ``--accounts`` read, and checked."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

ALL = "all"
"""Every connected account the key reaches (listed with ``GET /v1/accounts``)."""

_ACCOUNT_ID = re.compile(r"^acct_[A-Za-z0-9]{1,250}$")


def parse_accounts(text: str) -> tuple[str, ...]:
    """Return the accounts ``text`` names: ``()`` for none, ``("all",)``, or ``acct_…`` ids.

    Ids are kept in the order given, each once.

    Raises:
        ValueError: a name is neither ``all`` nor an ``acct_…`` id, or ``all`` is not alone.
    """
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        return ()
    if ALL in (name.lower() for name in names):
        if len(names) > 1:
            raise ValueError("'all' stands alone, without account ids beside it")
        return (ALL,)
    bad = [name for name in names if not _ACCOUNT_ID.match(name)]
    if bad:
        raise ValueError(f"{bad[0][:60]!r} is not a connected account id (acct_…) or 'all'")
    return tuple(dict.fromkeys(names))


def chosen(asked: tuple[str, ...], listed: Iterable[str]) -> tuple[str, ...]:
    """Return the accounts to read: those asked for, or every one listed when ``all`` was."""
    if asked == (ALL,):
        return tuple(dict.fromkeys(listed))
    return asked


def worst_exit(codes: Iterable[int]) -> int:
    """Return the exit code of runs over many accounts: the most serious of their codes.

    A failure (3) outranks a guardrail (4) and a held lock (75), which outrank drift (1);
    0 only when every account's run ended 0.
    """
    rank = {3: 5, 2: 4, 4: 3, 75: 2, 1: 1, 0: 0}
    return max(codes, key=lambda code: rank.get(code, 6), default=0)


def named(accounts: Sequence[str], shown: int = 5) -> str:
    """Return accounts for a log line: their ids, or the first ``shown`` and how many more."""
    more = f" and {len(accounts) - shown} more" if len(accounts) > shown else ""
    return ",".join(accounts[:shown]) + more
