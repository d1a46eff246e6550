"""Tables of the snapshot database; the Alembic migrations in ``alembic/`` build exactly these."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC time on every backend (SQLite keeps it naive; we put the zone back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive times; store UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC time."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with the naming convention Alembic relies on."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Run(Base):
    """One reconciliation run: its window, outcome and counts, and the watermark it leaves."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime())
    until: Mapped[datetime] = mapped_column(UTCDateTime())
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    companies: Mapped[str | None] = mapped_column(Text, comment="--company filter, comma-joined")
    trigger: Mapped[str] = mapped_column(String(20), default="manual")
    status: Mapped[str] = mapped_column(String(20), index=True)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    watermark: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), comment="set on success of a full, real run: its until"
    )
    pending_since: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), comment="oldest Stripe movement seen not yet final; the next run reads it"
    )
    stripe_entries: Mapped[int] = mapped_column(Integer, default=0)
    ledger_rows: Mapped[int] = mapped_column(Integer, default=0)
    findings: Mapped[int] = mapped_column(Integer, default=0)
    flagged: Mapped[int] = mapped_column(Integer, default=0)
    posted: Mapped[int] = mapped_column(Integer, default=0)
    post_failed: Mapped[int] = mapped_column(Integer, default=0)
    report_path: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    stripe_account: Mapped[str | None] = mapped_column(
        String(255), index=True, comment="the connected account read (acct_…); null: the key's own"
    )


class LedgerEntry(Base):
    """A Moesif billing-report row as last seen; rows are never deleted."""

    __tablename__ = "ledger_rows"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    moesif_id: Mapped[str] = mapped_column(Text, unique=True)
    transaction_id: Mapped[str | None] = mapped_column(Text, index=True)
    entry_type: Mapped[str] = mapped_column(String(20))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    amount_raw: Mapped[str] = mapped_column(Text)
    currency: Mapped[str | None] = mapped_column(Text)
    company_id: Mapped[str | None] = mapped_column(Text)
    subscription_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    description: Mapped[str | None] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    gone_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(),
        comment="when a read of its period no longer returned it; it matches nothing",
    )
    sequence_id: Mapped[int | None] = mapped_column(
        BigInteger, comment="the ending balance's sequence_id; null: the row carries no balance"
    )
    beginning_current_minor: Mapped[int | None] = mapped_column(BigInteger)
    beginning_pending_minor: Mapped[int | None] = mapped_column(BigInteger)
    beginning_available_minor: Mapped[int | None] = mapped_column(BigInteger)
    ending_current_minor: Mapped[int | None] = mapped_column(BigInteger)
    ending_pending_minor: Mapped[int | None] = mapped_column(BigInteger)
    ending_available_minor: Mapped[int | None] = mapped_column(BigInteger)
    balance_changes: Mapped[str | None] = mapped_column(
        Text, comment="the balance_changes amounts in minor units, comma-separated"
    )

    __table_args__ = (
        Index("ix_ledger_rows_company_subscription", "company_id", "subscription_id"),
    )


class ExpectedRow(Base):
    """A credit or debit that Stripe says Moesif should hold, one per transaction id."""

    __tablename__ = "expected_entries"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    transaction_id: Mapped[str] = mapped_column(Text, unique=True)
    source: Mapped[str] = mapped_column(String(20))
    entry_type: Mapped[str] = mapped_column(String(20))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    stripe_object_id: Mapped[str] = mapped_column(Text)
    topup_id: Mapped[str] = mapped_column(Text, index=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(Text)
    company_id: Mapped[str | None] = mapped_column(Text)
    subscription_id: Mapped[str | None] = mapped_column(Text)
    unmapped_reason: Mapped[str | None] = mapped_column(Text)
    first_seen_run_id: Mapped[str] = mapped_column(String(40))
    last_seen_run_id: Mapped[str] = mapped_column(String(40))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    stripe_account: Mapped[str | None] = mapped_column(
        String(255), index=True, comment="the connected account it was read from; null: the key's"
    )


class Posting(Base):
    """A credit or debit sent to Moesif: intent first, outcome after; one per id, ever.

    ``status`` moves ``intent`` → ``confirmed`` | ``failed``; ``unknown`` when the request may
    have reached Moesif without an answer, resolved by reading the ledger back before any resend
    (:mod:`reconcile.posting.next_step`). ``attempts`` is counted, and committed, before each send.
    """

    __tablename__ = "postings"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    transaction_id: Mapped[str] = mapped_column(Text, unique=True)
    origin: Mapped[str] = mapped_column(
        Text, comment="who asked for it: run:<run id>, webhook:<event id>, top-up:<key>"
    )
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"), index=True)
    company_id: Mapped[str] = mapped_column(Text)
    subscription_id: Mapped[str] = mapped_column(Text)
    entry_type: Mapped[str] = mapped_column(String(20))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(Text)
    amount_sent: Mapped[str] = mapped_column(Text, comment="the amount as sent to Moesif")
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Finding(Base):
    """One row of a run's drift report."""

    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    category: Mapped[str] = mapped_column(String(40), index=True)
    action: Mapped[str] = mapped_column(String(20))
    company_id: Mapped[str | None] = mapped_column(Text)
    subscription_id: Mapped[str | None] = mapped_column(Text)
    stripe_customer_id: Mapped[str | None] = mapped_column(Text)
    stripe_object_id: Mapped[str | None] = mapped_column(Text)
    transaction_id: Mapped[str | None] = mapped_column(Text)
    entry_type: Mapped[str | None] = mapped_column(String(20))
    currency: Mapped[str | None] = mapped_column(Text)
    stripe_amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    moesif_amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    stripe_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    moesif_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    moesif_id: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)
    finding_id: Mapped[str | None] = mapped_column(String(64), index=True)


class UnreadableLedgerRow(Base):
    """A Moesif row the job cannot interpret, kept as received (escaped JSON); never deleted."""

    __tablename__ = "unreadable_ledger_rows"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    moesif_id: Mapped[str] = mapped_column(Text, unique=True)
    transaction_id: Mapped[str | None] = mapped_column(Text, index=True)
    company_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(Text)
    raw_json: Mapped[str] = mapped_column(Text, comment="the row as received, as ASCII JSON")
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())


class MoesifSubscription(Base):
    """A Moesif subscription's currency, company and available balance as last read, kept."""

    __tablename__ = "moesif_subscriptions"

    subscription_id: Mapped[str] = mapped_column(Text, primary_key=True)
    currency: Mapped[str | None] = mapped_column(Text, comment="null: Moesif names none")
    company_id: Mapped[str | None] = mapped_column(
        Text, comment="null: not read since this was kept, so it is read again"
    )
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime())
    available_balance_minor: Mapped[int | None] = mapped_column(
        BigInteger, comment="minor units of the currency; null: not read yet"
    )
    balance_read_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    current_balance: Mapped[str | None] = mapped_column(
        Text, comment="the current_balance Moesif reported at fetched_at, exactly as sent"
    )
    balance_sequence_id: Mapped[int | None] = mapped_column(
        BigInteger, comment="the sequence_id of that balance; null: Moesif named none"
    )


class FindingState(Base):
    """A drift followed across runs: open until a run finds it gone or an operator closes it.

    See :mod:`reconcile.rules.lifecycle` for how a run moves it between its states.

    ``finding_id`` is stable (see :func:`reconcile.rules.finding_ids.finding_id`); the amounts
    and ids are those of the latest run that reported it.
    """

    __tablename__ = "finding_states"

    finding_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    category: Mapped[str] = mapped_column(String(40), index=True)
    transaction_id: Mapped[str | None] = mapped_column(Text)
    moesif_id: Mapped[str | None] = mapped_column(Text)
    company_id: Mapped[str | None] = mapped_column(Text)
    subscription_id: Mapped[str | None] = mapped_column(Text)
    stripe_customer_id: Mapped[str | None] = mapped_column(Text)
    stripe_object_id: Mapped[str | None] = mapped_column(Text)
    entry_type: Mapped[str | None] = mapped_column(Text)
    currency: Mapped[str | None] = mapped_column(Text)
    stripe_amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    moesif_amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    delta_minor: Mapped[int | None] = mapped_column(
        BigInteger, comment="the correction the balance needs; positive: the customer is owed"
    )
    detail: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(
        String(20),
        index=True,
        comment="open|assigned|resolved (awaiting a run's check)|closed|ignored",
    )
    first_seen_run_id: Mapped[str] = mapped_column(String(40))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_run_id: Mapped[str] = mapped_column(String(40))
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    runs_seen: Mapped[int] = mapped_column(Integer, default=1)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_by: Mapped[str | None] = mapped_column(String(20), comment="run|operator")
    note: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(Text, comment="who works on it; null: nobody")
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class FindingNote(Base):
    """An operator's or a run's action on a finding, or a comment, with its note; append-only."""

    __tablename__ = "finding_notes"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    finding_id: Mapped[str] = mapped_column(ForeignKey("finding_states.finding_id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    action: Mapped[str] = mapped_column(
        String(20), comment="assigned|commented|corrected|resolved|ignored|reopened|closed"
    )
    note: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(20), comment="cli|page")
    actor: Mapped[str | None] = mapped_column(Text, comment="who: a person, console, or the run")


class Notification(Base):
    """A run's summary waiting for, or past, delivery to ``RECONCILE_NOTIFY_URL`` (the outbox)."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(40), unique=True)
    payload: Mapped[str] = mapped_column(Text, comment="the JSON body, sent unchanged")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class WebhookEvent(Base):
    """A Stripe event received by ``serve``, recorded before it is answered; one per event id.

    ``status`` moves ``received`` → ``posted`` | ``ignored`` | ``unmapped``, or ``retry`` (with
    ``next_attempt_at``) while the posting cannot be done yet.
    """

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    event_id: Mapped[str] = mapped_column(Text, unique=True)
    event_type: Mapped[str] = mapped_column(String(100))
    created: Mapped[datetime] = mapped_column(UTCDateTime(), comment="when Stripe created it")
    payload: Mapped[str] = mapped_column(Text, comment="the event as JSON text")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_webhook_events_status_next", "status", "next_attempt_at"),)


class TopUpKey(Base):
    """A client's ``Idempotency-Key`` on ``/top-up``, stored before the charge, answered after.

    One row per key, whatever the customer: the key is bound to ``request_hash`` (customer,
    amount, currency) and another request under it is refused. ``claimed_until`` is the lease of
    the request charging under the key; ``answer_status`` and ``answer_body`` are its answer,
    replayed to every later request with the same key and request.
    """

    __tablename__ = "topup_keys"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    request_hash: Mapped[str] = mapped_column(
        String(64), comment="sha256 of customer, amount in minor units and currency"
    )
    customer_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    claimed_until: Mapped[datetime] = mapped_column(
        UTCDateTime(), comment="until when the request charging under the key holds it"
    )
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    answer_status: Mapped[int | None] = mapped_column(Integer)
    answer_body: Mapped[str | None] = mapped_column(Text, comment="the answer as JSON text")
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class MoesifBudgetMinute(Base):
    """Moesif requests spent in one calendar minute by every process: the shared budget.

    Each request counts itself with one atomic ``UPDATE … RETURNING`` before it is sent
    (:mod:`reconcile.db.moesif_budget`); used on PostgreSQL, where workers share the database.
    """

    __tablename__ = "moesif_budget"

    minute: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    used: Mapped[int] = mapped_column(Integer, default=0)
