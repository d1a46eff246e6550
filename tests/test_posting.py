"""The posting engine as a run uses it, against the fake Moesif over HTTP, on a migrated DB."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from reconcile.config import Secret
from reconcile.db.models import Posting, Run
from reconcile.domain.values import Entry
from reconcile.domain.vocab import Action
from reconcile.errors import GuardrailTripped
from reconcile.fakes.moesif import FakeMoesif
from reconcile.moesif.client import MoesifClient
from reconcile.posting.engine import PostingEngine
from reconcile.posting.entry import moesif_amount
from reconcile.posting.guardrails import check_guardrails
from reconcile.posting.next_step import DEFAULT_REPORT_LAG
from reconcile.retry import RateLimiter, RetryPolicy

NOW = datetime(2026, 11, 20, 2, tzinfo=UTC)
TOKEN = "posting-test-token"
RUN = "run:run-1"


def _order(
    transaction_id: str = "pi_1", subscription_id: str = "sub_1", minor: int = 1050
) -> Entry:
    return Entry(transaction_id, "co_1", subscription_id, "credit", minor, "usd", "top-up")


@pytest.fixture
def moesif() -> Iterator[FakeMoesif]:
    with FakeMoesif(token=TOKEN, clock=lambda: NOW) as fake:
        fake.add_subscription("sub_1", "co_1")
        fake.add_subscription("sub_2", "co_1")
        yield fake


@pytest.fixture
def poster(engine: Engine, moesif: FakeMoesif) -> Iterator[PostingEngine]:
    sessions = sessionmaker(engine, expire_on_commit=False)
    with sessions.begin() as session:
        session.add(Run(id="run-1", since=NOW, until=NOW, status="running", started_at=NOW))
    import httpx

    with httpx.Client(base_url=moesif.base_url, timeout=5.0) as http:
        client = MoesifClient(
            http,
            Secret(TOKEN),
            policy=RetryPolicy(max_attempts=2, base_delay=0.01),
            limiter=RateLimiter(1000, 60.0),
            sleep=lambda _seconds: None,
        )
        yield PostingEngine(sessions, client, amount_unit="major", clock=lambda: NOW)


def _statuses(engine: Engine) -> dict[str, str]:
    with Session(engine) as session:
        return {
            tid: status
            for tid, status in session.execute(select(Posting.transaction_id, Posting.status))
        }


def test_a_posting_is_sent_once_and_recorded_confirmed(
    poster: PostingEngine, moesif: FakeMoesif, engine: Engine
) -> None:
    assert poster.post(_order(), origin=RUN).action == Action.POSTED
    again = poster.post(_order(), origin=RUN)

    assert again.action == Action.FLAGGED
    assert "not sent again" in again.detail
    assert [body["amount"] for body in moesif.posts] == [Decimal("10.50")]
    assert _statuses(engine) == {"pi_1": "confirmed"}


def test_an_unfinished_posting_found_in_moesif_is_confirmed_without_a_resend(
    poster: PostingEngine, moesif: FakeMoesif, engine: Engine
) -> None:
    moesif.on_request = lambda exchange: "apply_then_drop" if exchange.method == "POST" else None
    first = poster.post(_order(), origin=RUN)
    assert first.action == Action.POSTED
    assert "read-back" in first.detail
    assert moesif.applied_counts() == {"pi_1": 1}
    assert _statuses(engine) == {"pi_1": "confirmed"}


def test_a_post_with_no_answer_and_no_row_stays_unknown_and_is_not_resent_in_the_run(
    poster: PostingEngine, moesif: FakeMoesif, engine: Engine
) -> None:
    moesif.on_request = lambda exchange: "drop" if exchange.method == "POST" else None
    outcome = poster.post(_order(), origin=RUN)

    assert (outcome.action, outcome.unknown) == (Action.POST_FAILED, True)
    assert _statuses(engine) == {"pi_1": "unknown"}
    assert moesif.posts == []


def test_an_unknown_posting_is_resent_as_first_sent_but_a_failed_one_as_now_ordered(
    poster: PostingEngine, moesif: FakeMoesif, engine: Engine
) -> None:
    moesif.on_request = lambda exchange: "drop" if exchange.method == "POST" else None
    poster.post(_order("pi_unknown", subscription_id="sub_1"), origin=RUN)
    moesif.on_request = None
    _sent_a_report_lag_ago(engine, "pi_unknown")
    with Session(engine) as session, session.begin():
        session.add(
            Posting(
                transaction_id="pi_failed",
                origin=RUN,
                run_id="run-1",
                company_id="co_1",
                subscription_id="sub_1",
                entry_type="credit",
                amount_minor=1050,
                currency="usd",
                amount_sent="10.50",
                description="top-up",
                status="failed",
                attempts=1,
                created_at=NOW,
                updated_at=NOW,
            )
        )

    poster.post(_order("pi_unknown", subscription_id="sub_2"), origin=RUN)
    poster.post(_order("pi_failed", subscription_id="sub_2"), origin=RUN)

    sent = {body["transaction_id"]: body["subscription_id"] for body in moesif.posts}
    assert sent == {"pi_unknown": "sub_1", "pi_failed": "sub_2"}
    assert set(_statuses(engine).values()) == {"confirmed"}


def test_guardrails_count_and_total_in_major_units() -> None:
    orders = [_order(f"pi_{n}", minor=5000) for n in range(3)]
    check_guardrails(orders, max_postings=3, max_total=Decimal("150"))
    with pytest.raises(GuardrailTripped, match="RECONCILE_MAX_POSTINGS=2"):
        check_guardrails(orders, max_postings=2, max_total=None)
    with pytest.raises(GuardrailTripped, match="RECONCILE_MAX_POSTING_TOTAL=149.99"):
        check_guardrails(orders, max_postings=10, max_total=Decimal("149.99"))


def test_amounts_go_out_in_the_configured_unit() -> None:
    assert moesif_amount(1050, "usd", "major") == Decimal("10.50")
    assert moesif_amount(1050, "usd", "minor") == Decimal(1050)
    assert moesif_amount(5000, "jpy", "major") == Decimal(5000)


def _sent_a_report_lag_ago(engine: Engine, transaction_id: str) -> None:
    """Date a posting's last send back by the report lag, so a read-back now may prove absence."""
    with Session(engine) as session, session.begin():
        session.execute(
            update(Posting)
            .where(Posting.transaction_id == transaction_id)
            .values(updated_at=NOW - DEFAULT_REPORT_LAG)
        )


def _leave_intent(
    engine: Engine, order: Entry, *, sent_at: datetime = NOW - DEFAULT_REPORT_LAG
) -> None:
    """A posting an earlier run recorded and then died on; the snapshot knows nothing of it.

    The earlier run sent it at ``sent_at``, by default the report lag before now.
    """
    with Session(engine) as session, session.begin():
        session.add(
            Posting(
                transaction_id=order.transaction_id,
                origin=RUN,
                run_id="run-1",
                company_id=order.company_id,
                subscription_id=order.subscription_id,
                entry_type=order.entry_type,
                amount_minor=order.amount_minor,
                currency=order.currency,
                amount_sent="10.50",
                description=order.description,
                status="intent",
                attempts=1,
                created_at=sent_at,
                updated_at=sent_at,
            )
        )


@pytest.mark.parametrize("transaction_id", ["pi_1", None])
def test_an_unfinished_posting_moesif_already_holds_is_confirmed_not_resent(
    poster: PostingEngine, moesif: FakeMoesif, engine: Engine, transaction_id: str | None
) -> None:
    _leave_intent(engine, _order())
    moesif.add_row("co_1", "sub_1", "credit", Decimal("10.50"), NOW, transaction_id=transaction_id)

    outcome = poster.post(_order(), origin=RUN)

    assert outcome.action == Action.POSTED
    assert "read-back" in outcome.detail
    assert moesif.posts == []
    assert _statuses(engine) == {"pi_1": "confirmed"}


def test_an_unfinished_posting_moesif_lacks_is_sent_once(
    poster: PostingEngine, moesif: FakeMoesif, engine: Engine
) -> None:
    _leave_intent(engine, _order())
    moesif.add_row("co_1", "sub_1", "credit", Decimal("99.00"), NOW)

    assert poster.post(_order(), origin=RUN).action == Action.POSTED

    assert [body["transaction_id"] for body in moesif.posts] == ["pi_1"]


def test_an_unfinished_posting_sent_within_the_report_lag_is_not_sent_again(
    poster: PostingEngine, moesif: FakeMoesif, engine: Engine
) -> None:
    """A run right after one that died mid-send: Moesif's reports may not list the row yet."""
    _leave_intent(engine, _order(), sent_at=NOW - DEFAULT_REPORT_LAG + timedelta(seconds=1))

    outcome = poster.post(_order(), origin=RUN)

    assert (outcome.unknown, outcome.action) == (True, Action.POST_FAILED)
    assert moesif.posts == []
    assert _statuses(engine) == {"pi_1": "intent"}


@pytest.fixture
def idless_poster(engine: Engine) -> Iterator[tuple[PostingEngine, FakeMoesif]]:
    """A Moesif whose reports leave transaction ids out."""
    with FakeMoesif(token=TOKEN, clock=lambda: NOW, include_transaction_id=False) as fake:
        fake.add_subscription("sub_1", "co_1")
        sessions = sessionmaker(engine, expire_on_commit=False)
        with sessions.begin() as session:
            session.add(Run(id="run-1", since=NOW, until=NOW, status="running", started_at=NOW))
        import httpx

        with httpx.Client(base_url=fake.base_url, timeout=5.0) as http:
            client = MoesifClient(
                http,
                Secret(TOKEN),
                limiter=RateLimiter(1000, 60.0),
                sleep=lambda _seconds: None,
            )
            yield (
                PostingEngine(sessions, client, amount_unit="major", clock=lambda: NOW),
                fake,
            )


@pytest.mark.parametrize("description", ["top-up", "reconcile: credit for Stripe {tid}"])
@pytest.mark.parametrize("arrived", [False, True])
def test_without_ids_in_reports_a_lost_post_is_confirmed_only_if_it_arrived(
    idless_poster: tuple[PostingEngine, FakeMoesif], description: str, arrived: bool
) -> None:
    """A twin's row (same place, type, amount, no id) must not confirm a post that never came."""
    poster, moesif = idless_poster
    twin, lost = (
        Entry(tid, "co_1", "sub_1", "credit", 5000, "usd", description.format(tid=tid))
        for tid in ("pi_A", "pi_B")
    )
    assert poster.post(twin, origin=RUN).action == Action.POSTED
    verdict = "apply_then_drop" if arrived else "drop"
    moesif.on_request = lambda exchange: verdict if exchange.method == "POST" else None

    outcome = poster.post(lost, origin=RUN)

    if arrived:
        assert outcome.action == Action.POSTED
        assert len(moesif.rows()) == 2
        assert moesif.applied_counts() == {"pi_A": 1, "pi_B": 1}
    else:
        assert (outcome.action, outcome.unknown) == (Action.POST_FAILED, True)
        assert len(moesif.rows()) == 1
        assert moesif.applied_counts() == {"pi_A": 1}
