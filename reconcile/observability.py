"""Logging with secrets scrubbed (text or JSON lines), progress for people, the run summary."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Literal, TextIO

from reconcile.domain.times import to_iso
from reconcile.redaction import Redactor

if TYPE_CHECKING:
    from reconcile.request import RunOutcome

_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class SecretFilter(logging.Filter):
    """Mask secrets in a record (message, args, extras, trace) with the one :class:`Redactor`."""

    def __init__(self, secrets: Sequence[str] | Redactor) -> None:
        """Scrub with ``secrets``: a :class:`Redactor`, or the values to build one from."""
        super().__init__()
        self._redactor = secrets if isinstance(secrets, Redactor) else Redactor(secrets)

    def scrub(self, text: str) -> str:
        """Return ``text`` with every secret masked."""
        return self._redactor.text(text)

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place with its secrets masked; never drop it."""
        record.msg = self.scrub(_message(record))
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        for name, value in _extras(record).items():
            setattr(record, name, self._scrub_value(value))
        return True

    def _scrub_value(self, value: object) -> object:
        return self._redactor.value(value)


class UTCFormatter(logging.Formatter):
    """The text format, with ISO 8601 UTC times."""

    def __init__(self) -> None:
        """Use the project's one-line text format."""
        super().__init__(_TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        """Return the record's time as ISO 8601 UTC with milliseconds."""
        return _timestamp(record)


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the ``extra`` fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one line of JSON."""
        payload: dict[str, object] = dict(_extras(record))
        payload.update(
            ts=_timestamp(record),
            level=record.levelname,
            logger=record.name,
            message=record.getMessage(),
        )
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exc"] = record.exc_text
        return json.dumps(payload, default=str, ensure_ascii=False)


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except (TypeError, ValueError):
        return f"{record.msg} (arguments that do not fit the message: {record.args!r})"


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {
        name: value
        for name, value in record.__dict__.items()
        if name not in _STANDARD_ATTRIBUTES and not name.startswith("_")
    }


class _ReconcileHandler(logging.StreamHandler[TextIO]):
    """The handler :func:`configure_logging` installs, so a second call replaces it."""


CHATTY_LIBRARIES = ("alembic", "httpx", "httpcore", "stripe")
"""Libraries that log every request or migration step at INFO; they speak from WARNING up."""


def configure_logging(
    level: int | str,
    fmt: Literal["text", "json"],
    secrets: Sequence[str] | Redactor,
    *,
    stream: TextIO | None = None,
) -> None:
    """Send every log record to stderr, as text or JSON lines, with secrets masked.

    Args:
        level: the root level, e.g. ``logging.INFO`` or ``"DEBUG"``.
        fmt: ``text`` for people, ``json`` for log shippers (one object per line).
        secrets: the run's :class:`Redactor` (or the values that must never be written).
        stream: where to write; stderr by default.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _ReconcileHandler)]:
        root.removeHandler(handler)
        handler.close()
    handler = _ReconcileHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else UTCFormatter())
    handler.addFilter(SecretFilter(secrets))
    root.addHandler(handler)
    root.setLevel(level)
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


class Progress:
    """Progress of one long phase on a terminal; silent when nobody is watching.

    Call :meth:`advance` (or the object itself) with how many items were just done. It redraws
    one line at most every ``min_interval`` seconds and ends the line on :meth:`done` (or on
    leaving a ``with`` block).
    """

    def __init__(
        self,
        phase: str,
        total: int | None = None,
        *,
        unit: str = "",
        stream: TextIO | None = None,
        interactive: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        min_interval: float = 0.1,
    ) -> None:
        """Prepare to report ``phase``; ``interactive`` defaults to whether the stream is a TTY."""
        self.phase = phase
        self.total = total
        self.unit = unit
        self.count = 0
        self._stream = stream if stream is not None else sys.stderr
        self._interactive = _is_tty(self._stream) if interactive is None else interactive
        self._clock = clock
        self._min_interval = min_interval
        self._last_drawn: float | None = None
        self._finished = False

    def advance(self, items: int = 1) -> None:
        """Count ``items`` more done and redraw if it is time to."""
        self.count += items
        if not self._interactive:
            return
        now = self._clock()
        if self._last_drawn is None or now - self._last_drawn >= self._min_interval:
            self._draw()
            self._last_drawn = now

    __call__ = advance

    def done(self) -> None:
        """Draw the final count and end the line (once)."""
        if self._finished:
            return
        self._finished = True
        if self._interactive:
            self._draw()
            self._stream.write("\n")
            self._stream.flush()

    def __enter__(self) -> Progress:
        """Return the progress, to advance inside the block."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """End the line."""
        self.done()

    def _draw(self) -> None:
        self._stream.write(f"\r{self.line()}")
        self._stream.flush()

    def line(self) -> str:
        """Return the progress as ``phase: done/total unit (pct%)`` or ``phase: done unit``."""
        unit = f" {self.unit}" if self.unit else ""
        if self.total:
            percent = min(100, self.count * 100 // self.total)
            return f"{self.phase}: {self.count}/{self.total}{unit} ({percent}%)"
        return f"{self.phase}: {self.count}{unit}"


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def progress(phase: str, total: int | None = None, unit: str = "") -> Progress:
    """Return a :class:`Progress` for ``phase`` on stderr, drawn only when stderr is a TTY."""
    return Progress(phase, total, unit=unit)


def log_summary(logger: logging.Logger, outcome: RunOutcome) -> None:
    """Log the one summary line of a run, with its numbers as structured fields."""
    counts = {name: count for name, count in sorted(outcome.counts.items()) if count}
    findings = ", ".join(f"{name}={count}" for name, count in counts.items()) or "none"
    totals = ", ".join(f"{name}={value}" for name, value in sorted(outcome.totals.items()))
    message = (
        f"run {outcome.run_id} finished with exit {int(outcome.exit_code)} "
        f"({outcome.exit_code.name.lower()}): window {to_iso(outcome.window.since)}"
        f"..{to_iso(outcome.window.until)}, findings {findings}, posted {outcome.posted}, "
        f"post failed {outcome.post_failed}"
        + (f", totals {totals}" if totals else "")
        + f", report {outcome.report_path or 'none'}, {outcome.duration_seconds:.1f}s"
        + (f": {outcome.message}" if outcome.message else "")
    )
    logger.info(message, extra=_summary_fields(outcome))


def _summary_fields(outcome: RunOutcome) -> dict[str, object]:
    return {
        "event": "run_summary",
        "run_id": outcome.run_id,
        "exit_code": int(outcome.exit_code),
        "since": to_iso(outcome.window.since),
        "until": to_iso(outcome.window.until),
        "counts": dict(outcome.counts),
        "totals": dict(outcome.totals),
        "posted": outcome.posted,
        "post_failed": outcome.post_failed,
        "report_path": str(outcome.report_path) if outcome.report_path else None,
        "duration_seconds": round(outcome.duration_seconds, 3),
    }
