"""What a client may send ``serve``: the limits, and JSON and text checked against them.

Pure rules, no I/O: the routes ask these before anything is parsed deeply, stored or logged.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from itertools import accumulate

from reconcile.safe_text import text_problem

MAX_BODY = 1024 * 1024
"""Bodies larger than this (1 MB) are refused with 413 while they are read."""
READ_TIMEOUT = 10.0
"""Seconds a client has to send a whole request (headers and body) before it is dropped."""
MAX_JSON_DEPTH = 32
"""JSON nested deeper than this is refused before it is parsed."""
MAX_ID_LENGTH = 255
"""Ids (customer, event, Idempotency-Key) longer than this are refused."""

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class UntrustedInput(ValueError):
    """Input a client sent that ``serve`` will not take; the message says why, in one line."""


def nesting_depth(raw: bytes) -> int:
    """Return how deeply the arrays and objects of a JSON text nest, without parsing it.

    Brackets inside strings are not counted. Linear in the input and free of recursion, so a
    body of a million ``[`` costs milliseconds, not a stack.
    """
    brackets = _BRACKETS.findall(_STRING.sub(b'""', raw))
    return max(accumulate(_STEP[bracket[0]] for bracket in brackets), default=0)


def load_json(raw: bytes) -> object:
    """Return the JSON value of UTF-8 ``raw`` (floats as exact ``Decimal``).

    Raises:
        UntrustedInput: not UTF-8 JSON, or nested deeper than :data:`MAX_JSON_DEPTH`.
    """
    if nesting_depth(raw) > MAX_JSON_DEPTH:
        raise UntrustedInput(f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(raw.decode("utf-8"), parse_float=Decimal)
    except (ValueError, RecursionError):
        raise UntrustedInput("the body is not JSON (UTF-8)") from None


def id_problem(value: object, name: str) -> str | None:
    """Return why ``value`` is no usable id named ``name``, or ``None`` when it is one.

    An id is a non-empty string of at most :data:`MAX_ID_LENGTH` characters that the database
    can store (no NUL, valid Unicode).
    """
    if not isinstance(value, str) or not value:
        return f"{name} must be a non-empty string"
    if len(value) > MAX_ID_LENGTH:
        return f"{name} must be at most {MAX_ID_LENGTH} characters"
    problem = text_problem(value)
    return f"{name} cannot be stored: {problem}" if problem else None
