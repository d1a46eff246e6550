"""Text from outside as the snapshot database can hold it: no NUL bytes, no invalid Unicode."""

from __future__ import annotations

EXCERPT_LENGTH = 200


def text_problem(value: str) -> str | None:
    """Return why a database cannot hold ``value`` as it is, or ``None`` when it can.

    PostgreSQL refuses NUL characters in text, and no database stores a lone surrogate (text
    that is not valid Unicode).
    """
    if "\x00" in value:
        return "it contains a NUL byte"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "it is not valid Unicode"
    return None


def escaped(value: str) -> str:
    """Return ``value`` with NUL bytes and invalid Unicode written as backslash escapes."""
    return value.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def excerpt(value: str, length: int = EXCERPT_LENGTH) -> str:
    """Return a safe one-line excerpt of ``value`` of at most ``length`` characters."""
    line = " ".join(escaped(value).split())
    return line if len(line) <= length else line[: length - 1] + "…"
