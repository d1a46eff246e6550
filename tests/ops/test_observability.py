from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconcile.domain.times import Window
from reconcile.errors import ExitCode
from reconcile.observability import Progress, SecretFilter, configure_logging, log_summary
from reconcile.run import RunOutcome

SECRET = "sk_live_51SuperSecretValue"
TOKEN = "moesif-token-xyz"


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def _outcome() -> RunOutcome:
    return RunOutcome(
        run_id="r-20261101",
        exit_code=ExitCode.DRIFT,
        window=Window(datetime(2026, 10, 29, 2, tzinfo=UTC), datetime(2026, 11, 1, 2, tzinfo=UTC)),
        started_at=datetime(2026, 11, 1, 2, 0, 5, tzinfo=UTC),
        finished_at=datetime(2026, 11, 1, 2, 1, 17, 500000, tzinfo=UTC),
        counts={"missing_in_moesif": 3, "amount_mismatch": 1, "missing_in_stripe": 0},
        totals={"posted_usd": "30.00"},
        posted=2,
        post_failed=1,
        report_path=Path("reports/drift-r-20261101.csv"),
    )


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secrets_logged_on_purpose_never_appear(fmt) -> None:
    stream = io.StringIO()
    configure_logging("INFO", fmt, [SECRET, TOKEN, ""], stream=stream)
    log = logging.getLogger("reconcile.test")
    log.info("key is %s", SECRET)
    log.warning(f"header Bearer {TOKEN}", extra={"url": f"https://x/?key={SECRET}"})
    try:
        raise RuntimeError(f"refused {SECRET}")
    except RuntimeError:
        log.exception("call failed for %r", {"token": TOKEN})
    written = stream.getvalue()
    assert SECRET not in written
    assert TOKEN not in written
    assert written.count("***") >= 4
    assert "RuntimeError: refused ***" in written
    assert "Bearer ***" in written


def test_a_record_whose_arguments_do_not_fit_is_still_scrubbed() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "bad %s %s", (SECRET,), None)
    assert SecretFilter([SECRET]).filter(record)
    message = record.getMessage()
    assert SECRET not in message
    assert message.startswith("bad %s %s (arguments that do not fit the message: ('***',)")


def test_json_lines_carry_standard_and_extra_fields() -> None:
    stream = io.StringIO()
    configure_logging(logging.DEBUG, "json", [], stream=stream)
    logging.getLogger("reconcile.stripe").debug(
        "paged %d objects", 100, extra={"page": 3, "at": datetime(2026, 1, 1, tzinfo=UTC)}
    )
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["level"] == "DEBUG"
    assert record["logger"] == "reconcile.stripe"
    assert record["message"] == "paged 100 objects"
    assert record["page"] == 3
    assert record["at"] == "2026-01-01 00:00:00+00:00"
    assert record["ts"].endswith("Z")
    assert datetime.fromisoformat(record["ts"].replace("Z", "+00:00")).tzinfo is not None


def test_text_format_is_one_line_with_utc_time_and_level_filtering() -> None:
    stream = io.StringIO()
    configure_logging("WARNING", "text", [], stream=stream)
    logging.getLogger("reconcile.x").info("not shown")
    logging.getLogger("reconcile.x").warning("shown")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith("Z WARNING reconcile.x: shown")


def test_configuring_twice_replaces_the_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("INFO", "text", [], stream=first)
    configure_logging("INFO", "text", [], stream=second)
    logging.getLogger("reconcile.x").info("once")
    assert first.getvalue() == ""
    assert second.getvalue().count("once") == 1


def test_progress_draws_on_a_terminal_throttled_by_the_clock() -> None:
    stream = io.StringIO()
    now = [0.0]
    with Progress(
        "Stripe pages", 4, stream=stream, interactive=True, clock=lambda: now[0]
    ) as advance:
        advance(1)
        advance(1)  # same instant: not redrawn
        now[0] = 0.5
        advance(2)
    assert stream.getvalue() == (
        "\rStripe pages: 1/4 (25%)\rStripe pages: 4/4 (100%)\rStripe pages: 4/4 (100%)\n"
    )


def test_progress_without_total_counts_up() -> None:
    stream = io.StringIO()
    progress = Progress("Moesif ledger", unit="rows", stream=stream, interactive=True)
    progress.advance(250)
    progress.done()
    progress.done()
    assert stream.getvalue() == "\rMoesif ledger: 250 rows\rMoesif ledger: 250 rows\n"


def test_progress_is_silent_for_machines() -> None:
    stream = io.StringIO()  # not a TTY
    with Progress("postings", 10, stream=stream) as advance:
        for _ in range(10):
            advance()
    assert advance.count == 10
    assert stream.getvalue() == ""


def test_summary_is_one_line_with_counts_totals_and_duration() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "text", [], stream=stream)
    log_summary(logging.getLogger("reconcile.run"), _outcome())
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    line = lines[0]
    assert "run r-20261101 finished with exit 1 (drift)" in line
    assert "window 2026-10-29T02:00:00Z..2026-11-01T02:00:00Z" in line
    assert "findings amount_mismatch=1, missing_in_moesif=3," in line
    assert "missing_in_stripe" not in line
    assert "posted 2, post failed 1, totals posted_usd=30.00" in line
    assert "report reports/drift-r-20261101.csv, 72.5s" in line


def test_summary_fields_are_structured_in_json() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", [], stream=stream)
    log_summary(logging.getLogger("reconcile.run"), _outcome())
    record = json.loads(stream.getvalue())
    assert record["event"] == "run_summary"
    assert record["exit_code"] == 1
    assert record["counts"]["missing_in_moesif"] == 3
    assert record["totals"] == {"posted_usd": "30.00"}
    assert record["posted"] == 2
    assert record["post_failed"] == 1
    assert record["duration_seconds"] == 72.5
    assert record["since"] == "2026-10-29T02:00:00Z"
    assert record["report_path"] == "reports/drift-r-20261101.csv"
