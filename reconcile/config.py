"""Settings from the environment and a ``.env`` file, validated once at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from reconcile.domain.times import parse_duration
from reconcile.errors import ConfigError
from reconcile.posting.next_step import DEFAULT_REPORT_LAG
from reconcile.redaction import Redactor
from reconcile.retry import RetryPolicy
from reconcile.rules.accounts import parse_accounts
from reconcile.rules.priority import DEFAULT_LEVELS as DEFAULT_PRIORITY_LEVELS
from reconcile.rules.priority import DEFAULT_RULES as DEFAULT_PRIORITY_RULES
from reconcile.rules.priority import Level as PriorityLevel
from reconcile.rules.priority import PriorityRules

DEFAULT_STRIPE_API_VERSION = "2025-02-24.acacia"
"""The Stripe API version the job pins: the last one whose PaymentIntents name their invoice."""

MIN_STRIPE_REQUESTS_PER_SECOND = 0.5
"""The slowest Stripe pace a setting may ask for; slower would make a nightly run hang."""

MAX_RETRY_ATTEMPTS = 20
MAX_RETRY_BASE_DELAY = 60.0
DEFAULT_RUN_TIMEOUT = timedelta(hours=2)

SECRET_VARIABLES = (
    "STRIPE_WEBHOOK_SECRET",
    "RECONCILE_TOPUP_TOKEN",
    "RECONCILE_NOTIFY_URL",
    "RECONCILE_CONSOLE_TOKEN",
)
"""Settings beyond the two API credentials whose values are secrets wherever they appear."""


class Secret:
    """A credential that never shows itself in a repr, a log line or an exception."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        """Hold ``value``; read it back only with :meth:`reveal`."""
        self._value = value

    def reveal(self) -> str:
        """Return the credential, for the one place that sends it."""
        return self._value

    def __repr__(self) -> str:
        """Show that a secret is here, never what it is."""
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        """Compare by value, so settings compare equal in tests."""
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        """Hash by value, consistent with equality."""
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know, validated."""

    stripe_api_key: Secret
    moesif_token: Secret
    stripe_api_base: str = "https://api.stripe.com"
    stripe_api_version: str = DEFAULT_STRIPE_API_VERSION
    stripe_max_requests_per_second: float = 20.0
    moesif_api_base: str = "https://api.moesif.com/v1"
    moesif_amount_unit: Literal["major", "minor"] = "major"
    database_url: str = "sqlite:///reconcile.db"
    report_dir: Path = Path("reports")
    lookback: timedelta = timedelta(hours=72)
    match_window: timedelta = timedelta(hours=48)
    max_postings: int = 1000
    max_posting_total: Decimal | None = None
    schedule: str = "0 2 * * *"
    metrics_file: Path | None = None
    log_format: Literal["text", "json"] = "text"
    retry_attempts: int = 6
    retry_base_delay: float = 0.5
    stripe_report_poll_seconds: float = 5.0
    """Seconds between looks at a Stripe report run (``RECONCILE_STRIPE_REPORT_POLL_SECONDS``)."""
    run_timeout: timedelta = DEFAULT_RUN_TIMEOUT
    moesif_requests_per_minute: int = 400
    moesif_read_cap: int = 1000
    """Rows from which a billing-reports answer is cut off (``RECONCILE_MOESIF_READ_CAP``)."""
    moesif_report_lag: timedelta = DEFAULT_REPORT_LAG
    """How long Moesif's reports may take to list a row it applied; a posting whose answer was
    lost is sent again only when a read-back this long after its send still lacks it
    (``RECONCILE_MOESIF_REPORT_LAG``, beyond the contract's section 3; ``0`` trusts every read)."""
    other_secrets: tuple[Secret, ...] = ()
    notify_url: Secret | None = None
    """Where a run that needs attention is announced (``RECONCILE_NOTIFY_URL``); also among
    ``other_secrets``, so it is masked wherever it appears."""
    stripe_accounts: tuple[str, ...] = ()
    """``STRIPE_ACCOUNTS``: the connected accounts to reconcile, ``("all",)`` for every one the
    key reaches; empty: the key's own account (section 12)."""
    console_url: str | None = None
    """The console's public address (``RECONCILE_CONSOLE_URL``): each finding a notification
    lists links to its page there."""

    def retry_policy(self) -> RetryPolicy:
        """Return how outside calls retry transient failures under these settings."""
        return RetryPolicy(max_attempts=self.retry_attempts, base_delay=self.retry_base_delay)

    def secret_values(self) -> tuple[str, ...]:
        """Return every configured secret in clear, for the redactor that scrubs them.

        The Stripe key, the Moesif token, the database password, and the values of
        :data:`SECRET_VARIABLES` (each webhook secret on its own).
        """
        password = make_url(self.database_url).password
        values = [self.stripe_api_key.reveal(), self.moesif_token.reveal()]
        values += [str(password)] if password else []
        values += [secret.reveal() for secret in self.other_secrets]
        return tuple(value for value in values if value)

    def redactor(self) -> Redactor:
        """Return the one redactor every string leaving the process goes through."""
        return Redactor(self.secret_values())

    @property
    def safe_database_url(self) -> str:
        """Return the database URL with any password masked, for logs and messages."""
        return make_url(self.database_url).render_as_string(hide_password=True)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")
    ) -> Settings:
        """Read settings from ``environ`` (default ``os.environ``) over a ``.env`` file.

        Raises:
            ConfigError: a required value is missing or a value is malformed; the message
                names the variable.
        """
        return _parse(environment(environ, dotenv))


def environment(
    environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")
) -> dict[str, str]:
    """Return a ``.env`` file overlaid by ``environ`` (default: the process environment).

    The one place reconcile reads its environment; every command takes its settings from here.
    """
    values: dict[str, str] = {}
    if dotenv is not None and dotenv.is_file():
        values.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
    values.update(os.environ if environ is None else environ)
    return values


def _stripe_accounts(values: Mapping[str, str]) -> tuple[str, ...]:
    try:
        return parse_accounts(values.get("STRIPE_ACCOUNTS", ""))
    except ValueError as error:
        raise ConfigError(f"STRIPE_ACCOUNTS: {error}") from None


def _default(name: str) -> Any:  # noqa: ANN401 - each field's own type
    """Return the default of a settings field: the one place each default is written."""
    return Settings.__dataclass_fields__[name].default


def _required(values: Mapping[str, str], name: str) -> str:
    value = values.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is required but not set (environment or .env)")
    return value


def _moesif_token(values: Mapping[str, str]) -> str:
    words = _required(values, "MOESIF_MANAGEMENT_TOKEN").split()
    if words[0].lower() == "bearer":
        words = words[1:]
    if not words or words[0].lower() == "bearer":
        raise ConfigError(
            "MOESIF_MANAGEMENT_TOKEN must be the token, with at most one leading 'Bearer'"
        )
    if len(words) > 1:
        raise ConfigError("MOESIF_MANAGEMENT_TOKEN must be one token without spaces")
    return words[0]


def _url(values: Mapping[str, str], name: str, default: str) -> str:
    value = values.get(name, "").strip() or default
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must be an http:// or https:// URL, not {value!r}")
    try:
        parts = urlsplit(value)
        host, _port = parts.hostname, parts.port
    except ValueError:
        host = None
    if not host:
        raise ConfigError(f"{name} must name a host and a valid port, not {value!r}")
    return value.rstrip("/")


def _set(values: Mapping[str, str], name: str) -> bool:
    return bool(values.get(name, "").strip())


def _duration(
    values: Mapping[str, str], name: str, default: timedelta, *, zero: bool = False
) -> timedelta:
    raw = values.get(name, "").strip()
    if not raw:
        return default
    if zero and raw == "0":
        return timedelta(0)
    try:
        duration = parse_duration(raw)
    except ValueError as error:
        raise ConfigError(f"{name}: {error}") from None
    if duration < timedelta(0) or (duration == timedelta(0) and not zero):
        raise ConfigError(f"{name} must be longer than zero")
    return duration


def _positive_int(values: Mapping[str, str], name: str, default: int) -> int:
    raw = values.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise ConfigError(f"{name} must be a whole number of at least 1, not {raw!r}")
    return int(raw)


def _bounded(value: float, name: str, low: float, high: float) -> float:
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, not {value:g}")
    return value


def _positive_number(values: Mapping[str, str], name: str, default: float) -> float:
    raw = values.get(name, "").strip()
    if not raw:
        return default
    try:
        number = Decimal(raw)
    except InvalidOperation:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if not number.is_finite() or number <= 0:
        raise ConfigError(f"{name} must be greater than zero, not {raw!r}")
    return float(number)


def _total(values: Mapping[str, str]) -> Decimal | None:
    raw = values.get("RECONCILE_MAX_POSTING_TOTAL", "").strip()
    if not raw:
        return None
    try:
        total = Decimal(raw)
    except InvalidOperation:
        raise ConfigError(
            f"RECONCILE_MAX_POSTING_TOTAL must be an amount in major units, not {raw!r}"
        ) from None
    if not total.is_finite() or total <= 0:
        raise ConfigError(f"RECONCILE_MAX_POSTING_TOTAL must be greater than zero, not {raw!r}")
    return total


def _choice(values: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = values.get(name, "").strip().lower() or default
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _database_url(values: Mapping[str, str]) -> str:
    raw = values.get("RECONCILE_DATABASE_URL", "").strip() or str(_default("database_url"))
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigError("RECONCILE_DATABASE_URL is not a database URL") from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            "RECONCILE_DATABASE_URL must be sqlite:///… or postgresql+psycopg://…, "
            f"not {url.get_backend_name()}"
        )
    if url.get_backend_name() == "sqlite" and _in_memory(url.database, url.query):
        raise ConfigError(
            "RECONCILE_DATABASE_URL is an in-memory SQLite database; the snapshot must persist "
            "(sqlite:///path/to/file.db)"
        )
    _driver_installed(url)
    return raw


def _in_memory(database: str | None, query: Mapping[str, object]) -> bool:
    return database in (None, "", ":memory:") or query.get("mode") == "memory"


def _driver_installed(url: URL) -> None:
    """Refuse a database driver that is asynchronous, unknown or not installed."""
    name = url.drivername
    try:
        dialect = url.get_dialect()
        dialect.import_dbapi()
    except (ImportError, ArgumentError):
        raise ConfigError(
            f"RECONCILE_DATABASE_URL names the driver {name!r}, which is not installed; "
            "use sqlite:///… or postgresql+psycopg://…"
        ) from None
    if getattr(dialect, "is_async", False):
        raise ConfigError(
            f"RECONCILE_DATABASE_URL names the asynchronous driver {name!r}; "
            "use postgresql+psycopg://…"
        )


def _schedule(values: Mapping[str, str]) -> str:
    schedule = " ".join(values.get("RECONCILE_SCHEDULE", "").split()) or str(_default("schedule"))
    if len(schedule.split()) != 5:
        raise ConfigError(
            f"RECONCILE_SCHEDULE must be a five-field cron expression, not {schedule!r}"
        )
    return schedule


def notify_url_from_env(values: Mapping[str, str]) -> Secret | None:
    """Return ``RECONCILE_NOTIFY_URL`` as a secret, or ``None`` when it is not set.

    Raises:
        ConfigError: it is set but is not an http(s) URL (the message does not repeat it).
    """
    raw = values.get("RECONCILE_NOTIFY_URL", "").strip()
    if not raw:
        return None
    if not raw.startswith(("http://", "https://")):
        raise ConfigError("RECONCILE_NOTIFY_URL must be an http:// or https:// URL")
    return Secret(raw)


def _parse(values: Mapping[str, str]) -> Settings:
    stripe_key = _required(values, "STRIPE_API_KEY")
    moesif_token = _moesif_token(values)
    metrics = values.get("RECONCILE_METRICS_FILE", "").strip()
    others = [
        part.strip()
        for name in SECRET_VARIABLES
        for part in (
            values.get(name, "").split(",")
            if name == "STRIPE_WEBHOOK_SECRET"
            else [values.get(name, "")]
        )
    ]
    return Settings(
        stripe_api_key=Secret(stripe_key),
        moesif_token=Secret(moesif_token),
        stripe_api_base=_url(values, "STRIPE_API_BASE", _default("stripe_api_base")),
        stripe_api_version=values.get("STRIPE_API_VERSION", "").strip()
        or _default("stripe_api_version"),
        stripe_max_requests_per_second=_bounded(
            _positive_number(
                values, "STRIPE_MAX_REQUESTS_PER_SECOND", _default("stripe_max_requests_per_second")
            ),
            "STRIPE_MAX_REQUESTS_PER_SECOND",
            MIN_STRIPE_REQUESTS_PER_SECOND,
            1000.0,
        ),
        moesif_api_base=_url(values, "MOESIF_API_BASE", _default("moesif_api_base")),
        moesif_amount_unit=(
            "minor"
            if _choice(
                values, "MOESIF_AMOUNT_UNIT", _default("moesif_amount_unit"), ("major", "minor")
            )
            == "minor"
            else "major"
        ),
        database_url=_database_url(values),
        report_dir=Path(values.get("RECONCILE_REPORT_DIR", "").strip() or _default("report_dir")),
        lookback=_duration(values, "RECONCILE_LOOKBACK", _default("lookback")),
        match_window=_duration(values, "RECONCILE_MATCH_WINDOW", _default("match_window")),
        max_postings=_positive_int(values, "RECONCILE_MAX_POSTINGS", _default("max_postings")),
        max_posting_total=_total(values),
        schedule=_schedule(values),
        metrics_file=Path(metrics) if metrics else None,
        retry_attempts=int(
            _bounded(
                _positive_int(values, "RECONCILE_RETRY_ATTEMPTS", _default("retry_attempts")),
                "RECONCILE_RETRY_ATTEMPTS",
                1,
                MAX_RETRY_ATTEMPTS,
            )
        ),
        retry_base_delay=_bounded(
            _positive_number(values, "RECONCILE_RETRY_BASE_DELAY", _default("retry_base_delay")),
            "RECONCILE_RETRY_BASE_DELAY",
            0.001,
            MAX_RETRY_BASE_DELAY,
        ),
        stripe_report_poll_seconds=_bounded(
            _positive_number(
                values,
                "RECONCILE_STRIPE_REPORT_POLL_SECONDS",
                _default("stripe_report_poll_seconds"),
            ),
            "RECONCILE_STRIPE_REPORT_POLL_SECONDS",
            0.001,
            60.0,
        ),
        run_timeout=_duration(values, "RECONCILE_RUN_TIMEOUT", _default("run_timeout")),
        moesif_requests_per_minute=_moesif_budget(values),
        stripe_accounts=_stripe_accounts(values),
        moesif_read_cap=_positive_int(
            values, "RECONCILE_MOESIF_READ_CAP", _default("moesif_read_cap")
        ),
        moesif_report_lag=_duration(
            values, "RECONCILE_MOESIF_REPORT_LAG", _default("moesif_report_lag"), zero=True
        ),
        other_secrets=tuple(Secret(value) for value in others if value),
        notify_url=notify_url_from_env(values),
        console_url=_url(values, "RECONCILE_CONSOLE_URL", "")
        if _set(values, "RECONCILE_CONSOLE_URL")
        else None,
        log_format=(
            "json"
            if _choice(values, "RECONCILE_LOG_FORMAT", _default("log_format"), ("text", "json"))
            == "json"
            else "text"
        ),
    )


MOESIF_BUDGET_LIMIT = 500
"""Moesif's requests a minute, of which ``RECONCILE_MOESIF_REQUESTS_PER_MINUTE`` go to the job."""


def _moesif_budget(values: Mapping[str, str]) -> int:
    """Read ``RECONCILE_MOESIF_REQUESTS_PER_MINUTE``: the batch job's share, 1 to 500."""
    raw = values.get("RECONCILE_MOESIF_REQUESTS_PER_MINUTE", "").strip()
    if not raw:
        share: int = _default("moesif_requests_per_minute")
        return share
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MOESIF_BUDGET_LIMIT:
        raise ConfigError(
            "RECONCILE_MOESIF_REQUESTS_PER_MINUTE must be a whole number from 1 to "
            f"{MOESIF_BUDGET_LIMIT}, not {raw!r}"
        )
    return int(raw)


@dataclass(frozen=True)
class ServeSettings:
    """What ``reconcile serve`` needs beyond :class:`Settings`: its two credentials."""

    webhook_secrets: tuple[Secret, ...] = ()
    topup_token: Secret | None = None

    def secret_values(self) -> tuple[str, ...]:
        """Return the credentials in clear, for the log filter that scrubs them."""
        token = (self.topup_token.reveal(),) if self.topup_token else ()
        return tuple(secret.reveal() for secret in self.webhook_secrets) + token


def serve_settings(environ: Mapping[str, str] | None = None) -> ServeSettings:
    """Read ``STRIPE_WEBHOOK_SECRET`` (comma-separated, for rotation), ``RECONCILE_TOPUP_TOKEN``.

    Either may be unset here; ``serve`` refuses to offer an endpoint whose credential is missing.

    Raises:
        ConfigError: a value is malformed; the message names the variable, never the value.
    """
    values = os.environ if environ is None else environ
    secrets = [part.strip() for part in values.get("STRIPE_WEBHOOK_SECRET", "").split(",")]
    if any(" " in secret for secret in secrets):
        raise ConfigError("STRIPE_WEBHOOK_SECRET must be comma-separated secrets without spaces")
    token = values.get("RECONCILE_TOPUP_TOKEN", "").strip()
    if token.lower().startswith("bearer ") or " " in token:
        raise ConfigError("RECONCILE_TOPUP_TOKEN must be the token alone, without spaces")
    return ServeSettings(
        webhook_secrets=tuple(Secret(secret) for secret in secrets if secret),
        topup_token=Secret(token) if token else None,
    )


PRIORITY_PREFIX = "RECONCILE_PRIORITY_"
"""``RECONCILE_PRIORITY_{CRITICAL,HIGH,MEDIUM}_{AMOUNT,AGE,DUE}`` and ``..._LOW_DUE``."""


def priority_rules_from_env(values: Mapping[str, str]) -> PriorityRules:
    """Return the exception queue's priority thresholds, section 10a's unless set.

    ``RECONCILE_PRIORITY_<LEVEL>_AMOUNT`` is a whole number of major units,
    ``RECONCILE_PRIORITY_<LEVEL>_AGE`` and ``RECONCILE_PRIORITY_<LEVEL>_DUE`` durations (``5d``,
    ``24h``), for the levels ``CRITICAL``, ``HIGH`` and ``MEDIUM``; ``RECONCILE_PRIORITY_LOW_DUE``
    is how long a low finding may wait.

    Raises:
        ConfigError: a value is malformed, or the thresholds contradict each other.
    """
    levels = []
    for level in DEFAULT_PRIORITY_LEVELS:
        name = f"{PRIORITY_PREFIX}{level.priority.value.upper()}"
        raw = values.get(f"{name}_AMOUNT", "").strip()
        if raw and not (raw.isascii() and raw.isdigit()):
            raise ConfigError(f"{name}_AMOUNT must be a whole number of major units, not {raw!r}")
        levels.append(
            PriorityLevel(
                level.priority,
                int(raw) if raw else level.amount_major,
                _duration(values, f"{name}_AGE", level.age, zero=True),
                _duration(values, f"{name}_DUE", level.due_in),
            )
        )
    low_due = _duration(values, f"{PRIORITY_PREFIX}LOW_DUE", DEFAULT_PRIORITY_RULES.low_due_in)
    try:
        return PriorityRules(tuple(levels), low_due)
    except ValueError as error:
        raise ConfigError(f"{PRIORITY_PREFIX}*: {error}") from None
