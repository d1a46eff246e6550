"""Settings and times that cannot work are refused at start, in one line, with exit code 2."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reconcile.config import Settings
from reconcile.domain.money import is_iso_currency, minor_amount_problem
from reconcile.domain.times import MAX_DURATION, parse_duration, parse_when
from reconcile.errors import ConfigError, ExitCode
from reconcile.redaction import MASK, Redactor
from reconcile.retry import Deadline, DeadlineExceeded
from reconcile.safe_text import escaped, excerpt, text_problem

BASE = {"STRIPE_API_KEY": "sk_test_abc", "MOESIF_MANAGEMENT_TOKEN": "tok_123"}


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("RECONCILE_LOOKBACK", "9999999999d", "longer than 3650 days"),
        ("RECONCILE_LOOKBACK", "3651d", "longer than 3650 days"),
        ("RECONCILE_MATCH_WINDOW", "P99999999D", "longer than 3650 days"),
        ("RECONCILE_MATCH_WINDOW", "P9999999999999999999W", "longer than 3650 days"),
        ("RECONCILE_LOOKBACK", "٣d", "not a duration"),
        ("RECONCILE_RUN_TIMEOUT", "0m", "longer than zero"),
        ("RECONCILE_RUN_TIMEOUT", "forever", "not a duration"),
        ("RECONCILE_MOESIF_REPORT_LAG", "soon", "not a duration"),
        ("RECONCILE_MOESIF_REPORT_LAG", "-5m", "not a duration"),
        ("RECONCILE_MOESIF_REPORT_LAG", "3651d", "longer than 3650 days"),
        ("RECONCILE_MAX_POSTINGS", "²", "whole number"),
        ("RECONCILE_MAX_POSTINGS", "١٠", "whole number"),
        ("RECONCILE_MOESIF_READ_CAP", "0", "whole number of at least 1"),
        ("RECONCILE_MOESIF_READ_CAP", "1e3", "whole number"),
        ("RECONCILE_MOESIF_READ_CAP", "-5", "whole number"),
        ("RECONCILE_RETRY_ATTEMPTS", "³", "whole number"),
        ("RECONCILE_RETRY_ATTEMPTS", "1000", "between 1 and 20"),
        ("RECONCILE_RETRY_BASE_DELAY", "86400", "between"),
        ("STRIPE_MAX_REQUESTS_PER_SECOND", "0.0001", "between 0.5 and 1000"),
        ("STRIPE_API_BASE", "http://", "host"),
        ("STRIPE_API_BASE", "https://:443", "host"),
        ("MOESIF_API_BASE", "http://example.com:99999/v1", "port"),
        ("RECONCILE_DATABASE_URL", "postgresql+asyncpg://u@h/db", "not installed"),
        ("RECONCILE_DATABASE_URL", "postgresql+psycopg2://u@h/db", "not installed"),
        ("RECONCILE_DATABASE_URL", "postgresql+nosuchdriver://u@h/db", "not installed"),
        ("RECONCILE_DATABASE_URL", "sqlite://", "in-memory"),
        ("RECONCILE_DATABASE_URL", "sqlite:///:memory:", "in-memory"),
        ("RECONCILE_DATABASE_URL", "sqlite:///file:x?mode=memory&uri=true", "in-memory"),
    ],
)
def test_settings_that_cannot_work_are_refused(name: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**BASE, name: value}, dotenv=None)
    message = str(caught.value)
    assert caught.value.exit_code == ExitCode.USAGE
    assert name in message
    assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RECONCILE_LOOKBACK", "3650d"),
        ("RECONCILE_MATCH_WINDOW", "P52W"),
        ("STRIPE_MAX_REQUESTS_PER_SECOND", "0.5"),
        ("RECONCILE_DATABASE_URL", "postgresql+psycopg://u:pw@h/db"),
        ("RECONCILE_DATABASE_URL", "sqlite:///relative.db"),
        ("STRIPE_API_BASE", "http://127.0.0.1:12111"),
        ("RECONCILE_RUN_TIMEOUT", "30m"),
        ("RECONCILE_MOESIF_READ_CAP", "5000"),
    ],
)
def test_sane_settings_pass(name: str, value: str) -> None:
    Settings.from_env({**BASE, name: value}, dotenv=None)


@pytest.mark.parametrize(
    ("value", "lag"),
    [
        (None, timedelta(minutes=15)),
        ("", timedelta(minutes=15)),
        ("0", timedelta(0)),
        ("0m", timedelta(0)),
        ("90s", timedelta(seconds=90)),
        ("PT1H", timedelta(hours=1)),
    ],
)
def test_the_report_lag_defaults_to_a_quarter_hour_and_may_be_zero(
    value: str | None, lag: timedelta
) -> None:
    environ = BASE if value is None else {**BASE, "RECONCILE_MOESIF_REPORT_LAG": value}
    assert Settings.from_env(environ, dotenv=None).moesif_report_lag == lag


def test_the_run_timeout_defaults_to_two_hours() -> None:
    assert Settings.from_env(BASE, dotenv=None).run_timeout == timedelta(hours=2)
    configured = Settings.from_env({**BASE, "RECONCILE_RUN_TIMEOUT": "45m"}, dotenv=None)
    assert configured.run_timeout == timedelta(minutes=45)


def test_the_moesif_read_cap_defaults_to_1000() -> None:
    assert Settings.from_env(BASE, dotenv=None).moesif_read_cap == 1000
    configured = Settings.from_env({**BASE, "RECONCILE_MOESIF_READ_CAP": " 250 "}, dotenv=None)
    assert configured.moesif_read_cap == 250


def test_durations_are_bounded() -> None:
    assert parse_duration("3650d") == MAX_DURATION
    with pytest.raises(ValueError, match="longer than"):
        parse_duration("P3651D")


@pytest.mark.parametrize("text", ["0001-01-01", "1999-12-31", "9999-12-31", "9000-01-01T00:00Z"])
def test_dates_outside_what_a_run_can_cover_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="outside the dates") as caught:
        parse_when(text)
    assert "\n" not in str(caught.value)


def test_a_window_start_minus_every_allowed_duration_stays_representable() -> None:
    earliest = parse_when("2000-01-01")
    assert earliest - MAX_DURATION * 3 > datetime(1900, 1, 1, tzinfo=UTC)
    assert parse_when("2026-03-01T12:00:00+02:00") == datetime(2026, 3, 1, 10, tzinfo=UTC)


def test_every_configured_secret_reaches_the_redactor() -> None:
    settings = Settings.from_env(
        {
            **BASE,
            "RECONCILE_DATABASE_URL": "postgresql+psycopg://u:db_pw_9@h/db",
            "STRIPE_WEBHOOK_SECRET": "whsec_one, whsec_two",
            "RECONCILE_TOPUP_TOKEN": "topup-token-7",
            "RECONCILE_NOTIFY_URL": "https://hooks.example/T0/secret-path",
            "RECONCILE_CONSOLE_TOKEN": "console-token-8",
        },
        dotenv=None,
    )
    secrets = [
        "sk_test_abc",
        "tok_123",
        "db_pw_9",
        "whsec_one",
        "whsec_two",
        "topup-token-7",
        "https://hooks.example/T0/secret-path",
        "console-token-8",
    ]
    redactor = settings.redactor()
    for secret in secrets:
        assert secret in settings.secret_values()
        assert redactor.text(f"before {secret} after") == f"before {MASK} after"
    assert "tok_123" not in repr(settings)
    assert "tok_123" not in repr(redactor)


def test_the_redactor_masks_encoded_and_nested_secrets() -> None:
    redactor = Redactor(["to ken/+", "tok"])
    assert redactor.text("a to ken/+ b") == f"a {MASK} b"
    assert redactor.text("a to%20ken%2F%2B b") == f"a {MASK} b"
    assert redactor.text("q=to+ken%2F%2B") == f"q={MASK}"
    assert redactor.value({"k": ["tok", 3]}) == {"k": [MASK, 3]}
    assert redactor.optional(None) is None
    assert Redactor().text("key sk_live_abcdefgh1234 here") == f"key {MASK} here"
    assert redactor.message(RuntimeError("line one\n  tok line two")) == f"line one {MASK} line two"


def test_the_redactor_masks_a_column_as_it_masks_each_text() -> None:
    redactor = Redactor(["to ken/+", "tok"])
    values: list[object] = [
        "a to ken/+ b",
        "q=to+ken%2F%2B",
        "key sk_live_abcdefgh1234 here",
        "rk_short",  # key-shaped prefix, too short to be a key: kept
        "wsk_live_abcdefgh1234",  # no word boundary before it: kept, as text() keeps it
        "plain détail",
        None,
        float("nan"),
        7,
        "",
    ]
    masked = redactor.texts(values)
    assert masked[:6] == [redactor.text(str(value)) for value in values[:6]]
    assert masked[:3] == [f"a {MASK} b", f"q={MASK}", f"key {MASK} here"]
    assert masked[3:6] == values[3:6]
    assert masked[6:] == [None, values[7], 7, ""]  # not text: kept as it is (NaN itself)


def test_a_deadline_is_checked_on_an_injected_clock() -> None:
    now = [10.0]
    deadline = Deadline.after(60, lambda: now[0])
    deadline.check("the first request")
    slept: list[float] = []
    sleep = deadline.sleeper(slept.append, "the next request")
    sleep(59)
    assert slept == [59]
    assert deadline.timeout(30) == 30
    now[0] = 65.0
    assert deadline.timeout(30) == 5
    with pytest.raises(DeadlineExceeded, match="1m"):
        sleep(6)
    now[0] = 70.0
    with pytest.raises(DeadlineExceeded) as caught:
        deadline.check("posting pi_1")
    assert caught.value.exit_code == ExitCode.FAILED
    assert "posting pi_1" in str(caught.value)
    Deadline.never().check("anything")


def test_iso_currencies_and_amounts() -> None:
    assert all(is_iso_currency(code) for code in ("usd", "KWD", "jpy"))
    assert not is_iso_currency("xyz")
    assert not is_iso_currency("usdollar")
    assert not is_iso_currency(None)
    assert minor_amount_problem(0) is None
    assert minor_amount_problem(-1) is not None
    assert minor_amount_problem(1.0) is not None
    assert minor_amount_problem(10**12) is not None


def test_safe_text() -> None:
    assert text_problem("plain ünïcode") is None
    assert text_problem("a\x00b") is not None
    assert text_problem("a\ud800") is not None
    assert escaped("a\x00b\ud800") == "a\\x00b\\ud800"
    assert len(excerpt("x" * 500)) == 200
