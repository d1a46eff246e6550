"""The one redactor: every configured secret masked in every string that leaves the process."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, quote_plus

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MASK = "***"
"""What a secret is replaced with."""

_STRIPE_KEY = re.compile(r"\b(?:sk|rk|whsec)_(?:(?:test|live)_)?[A-Za-z0-9]{8,}")
"""Anything shaped like a Stripe secret key or signing secret, configured or not."""

_KEY_HINT = r"(?:sk|rk|whsec)_"
"""What every match of ``_STRIPE_KEY`` holds: a text without it needs no key masked."""


class Redactor:
    """Masks secrets in text: log records, error messages, database and CSV values.

    Built once from every configured secret (:meth:`reconcile.config.Settings.redactor`). Each
    secret is masked as it is and in its URL-encoded forms, longest first, so a secret that
    contains another is masked whole; strings shaped like Stripe secret keys are masked too.
    """

    __slots__ = ("_needles",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        """Mask the non-empty values of ``secrets``."""
        needles = set()
        for secret in secrets:
            if secret:
                needles.update({secret, quote(secret, safe=""), quote_plus(secret, safe="")})
        self._needles = tuple(sorted(needles, key=len, reverse=True))

    def __repr__(self) -> str:
        """Say how many values are masked, never which."""
        return f"Redactor({len(self._needles)} values)"

    def text(self, value: str) -> str:
        """Return ``value`` with every secret masked."""
        for needle in self._needles:
            value = value.replace(needle, MASK)
        return _STRIPE_KEY.sub(MASK, value)

    def texts(self, values: Sequence[object]) -> list[Any]:
        """Return ``values`` with :meth:`text` of each string; other values as they are.

        One pass by Arrow first finds the strings that could hold a secret (one holding a
        masked value, or ``sk_``, ``rk_`` or ``whsec_`` of a key's shape); only those are
        masked one by one, so a column of ids or details costs no call per cell.
        """
        strings = pa.array([v if isinstance(v, str) else None for v in values], type=pa.string())
        suspect = pc.match_substring_regex(strings, _KEY_HINT)
        for needle in self._needles:
            suspect = pc.or_(suspect, pc.match_substring(strings, needle))
        masked: list[Any] = list(values)
        for position in np.flatnonzero(suspect.fill_null(False).to_numpy(zero_copy_only=False)):
            masked[position] = self.text(str(masked[position]))
        return masked

    def optional(self, value: str | None) -> str | None:
        """Return :meth:`text` of ``value``, or ``None``."""
        return None if value is None else self.text(value)

    def value(self, value: object) -> object:
        """Return ``value`` with secrets masked in every string inside it (dicts, lists)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        return value

    def message(self, error: BaseException) -> str:
        """Return an error's message on one line with secrets masked, for operators and the DB.

        The CLI's failure line and a run's recorded ``error`` both come from here.
        """
        text = " ".join(str(error).split()) or type(error).__name__
        return self.text(text)


NO_SECRETS = Redactor()
"""A redactor with no configured secrets (it still masks Stripe-shaped keys)."""
