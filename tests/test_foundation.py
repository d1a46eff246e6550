from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from reconcile.config import Secret, Settings
from reconcile.db.engine import alembic_config
from reconcile.db.models import LedgerEntry
from reconcile.domain.money import format_major, round_to_minor, to_major, to_minor
from reconcile.domain.times import Window, parse_duration, parse_when
from reconcile.errors import ConfigError

BASE = {"STRIPE_API_KEY": "sk_test_abc", "MOESIF_MANAGEMENT_TOKEN": "tok_123"}


def test_settings_defaults_follow_the_contract() -> None:
    settings = Settings.from_env(BASE, dotenv=None)
    assert settings.stripe_api_base == "https://api.stripe.com"
    assert settings.moesif_api_base == "https://api.moesif.com/v1"
    assert settings.moesif_amount_unit == "major"
    assert settings.database_url == "sqlite:///reconcile.db"
    assert settings.report_dir == Path("reports")
    assert settings.lookback == timedelta(hours=72)
    assert settings.match_window == timedelta(hours=48)
    assert settings.max_postings == 1000
    assert settings.max_posting_total is None
    assert settings.schedule == "0 2 * * *"
    assert settings.stripe_max_requests_per_second == 20.0
    assert settings.log_format == "text"
    assert settings.retry_attempts == 6
    assert settings.retry_base_delay == 0.5


@pytest.mark.parametrize("token", ["tok_123", "Bearer tok_123", "bearer  tok_123"])
def test_moesif_token_with_or_without_bearer(token: str) -> None:
    settings = Settings.from_env({**BASE, "MOESIF_MANAGEMENT_TOKEN": token}, dotenv=None)
    assert settings.moesif_token.reveal() == "tok_123"


@pytest.mark.parametrize("token", ["Bearer", "Bearer   ", "Bearer Bearer", "bearer BEARER x"])
def test_a_token_that_is_only_or_twice_bearer_is_refused(token: str) -> None:
    with pytest.raises(ConfigError, match="at most one leading 'Bearer'"):
        Settings.from_env({**BASE, "MOESIF_MANAGEMENT_TOKEN": token}, dotenv=None)


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("STRIPE_API_KEY", "", "STRIPE_API_KEY is required"),
        ("MOESIF_MANAGEMENT_TOKEN", "", "MOESIF_MANAGEMENT_TOKEN is required"),
        ("MOESIF_AMOUNT_UNIT", "cents", "MOESIF_AMOUNT_UNIT"),
        ("RECONCILE_LOOKBACK", "soon", "RECONCILE_LOOKBACK"),
        ("RECONCILE_MATCH_WINDOW", "0h", "RECONCILE_MATCH_WINDOW"),
        ("RECONCILE_MAX_POSTINGS", "-3", "RECONCILE_MAX_POSTINGS"),
        ("RECONCILE_MAX_POSTING_TOTAL", "lots", "RECONCILE_MAX_POSTING_TOTAL"),
        ("RECONCILE_DATABASE_URL", "mysql://x/y", "RECONCILE_DATABASE_URL"),
        ("RECONCILE_SCHEDULE", "daily", "RECONCILE_SCHEDULE"),
        ("STRIPE_API_BASE", "api.stripe.com", "STRIPE_API_BASE"),
    ],
)
def test_bad_settings_name_the_variable(name: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**BASE, name: value}, dotenv=None)
    message = str(caught.value)
    assert fragment in message
    assert "\n" not in message


def test_dotenv_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "STRIPE_API_KEY=sk_from_file\nMOESIF_MANAGEMENT_TOKEN=t\nRECONCILE_LOOKBACK=3d\n"
    )
    settings = Settings.from_env({"RECONCILE_LOOKBACK": "P2D"}, dotenv=dotenv)
    assert settings.stripe_api_key.reveal() == "sk_from_file"
    assert settings.lookback == timedelta(days=2)


def test_secrets_never_show_in_repr() -> None:
    settings = Settings.from_env(
        {**BASE, "RECONCILE_DATABASE_URL": "postgresql+psycopg://u:pw_secret@h/db"}, dotenv=None
    )
    shown = repr(settings) + str(settings.stripe_api_key)
    assert "sk_test_abc" not in shown
    assert "tok_123" not in shown
    assert "pw_secret" not in settings.safe_database_url
    assert Secret("a") == Secret("a")


@pytest.mark.parametrize(
    ("minor", "currency", "major"),
    [(1050, "usd", "10.50"), (1000, "jpy", "1000"), (1500, "kwd", "1.500"), (-5, "eur", "-0.05")],
)
def test_money_by_currency_exponent(minor: int, currency: str, major: str) -> None:
    assert to_major(minor, currency) == Decimal(major)
    assert format_major(minor, currency) == major
    assert to_minor(Decimal(major), currency) == minor


def test_to_minor_refuses_extra_places_and_rounding_is_half_even() -> None:
    with pytest.raises(ValueError, match="decimal places"):
        to_minor(Decimal("10.505"), "usd")
    assert round_to_minor(Decimal("10.505"), "usd") == 1050
    assert round_to_minor(Decimal("10.515"), "usd") == 1052


def test_when_and_duration_parsing() -> None:
    assert parse_when("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_when("2026-11-01T02:30:00+01:00") == datetime(2026, 11, 1, 1, 30, tzinfo=UTC)
    assert parse_when("2026-11-01T02:30") == datetime(2026, 11, 1, 2, 30, tzinfo=UTC)
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration("P3D") == timedelta(days=3)
    assert parse_duration("PT1H30M") == timedelta(minutes=90)
    for bad in ("yesterday", "P", "PT", "3 days"):
        with pytest.raises(ValueError, match="not"):
            parse_duration(bad) if bad != "yesterday" else parse_when(bad)


def test_window_is_half_open_and_refuses_inversion() -> None:
    since, until = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)
    window = Window(since, until)
    assert window.contains(since)
    assert not window.contains(until)
    with pytest.raises(ValueError, match="not before"):
        Window(until, since)


def test_migrations_build_the_schema_and_times_come_back_aware(engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert {"runs", "ledger_rows", "expected_entries", "postings", "findings"} <= tables
    moment = datetime(2026, 11, 1, 12, tzinfo=UTC)
    with Session(engine) as session:
        session.add(
            LedgerEntry(
                moesif_id="r1",
                transaction_id=None,
                entry_type="credit",
                amount_minor=100,
                amount_raw="1.00",
                currency="usd",
                company_id="c",
                subscription_id="s",
                created_at=moment,
                description=None,
                first_seen_at=moment,
                last_seen_at=moment,
            )
        )
        session.commit()
        stored = session.scalars(select(LedgerEntry.created_at)).one()
    assert stored == moment
    assert stored.tzinfo is not None


def test_models_equal_migrations(database_url: str) -> None:
    config = alembic_config(database_url)
    command.upgrade(config, "head")
    command.check(config)
