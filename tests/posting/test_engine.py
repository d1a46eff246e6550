"""The posting engine with no run: any caller, concurrent callers, and what each failure records.

The real Moesif client talks HTTP to the fake Moesif; the snapshot database is migrated SQLite
and PostgreSQL. No ``runs`` row exists in any of these tests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from reconcile.config import Secret
from reconcile.db import postings
from reconcile.db.models import Posting, Run
from reconcile.domain import origin
from reconcile.domain.values import Entry
from reconcile.domain.vocab import PostingStatus
from reconcile.errors import MoesifUnavailable
from reconcile.fakes.moesif import Exchange, FakeMoesif, Verdict
from reconcile.moesif.client import MoesifClient
from reconcile.posting.engine import DEFAULT_REPORT_LAG, PostingEngine
from reconcile.posting.first_read import ReadOnce
from reconcile.posting.outcome import Result
from reconcile.retry import RateLimiter, RetryPolicy

NOW = datetime(2026, 11, 20, 2, tzinfo=UTC)
TOKEN = "engine-test-token"
WEBHOOK = origin.for_webhook("evt_1")
TOP_UP = origin.for_top_up("key_1")
ENTRY = Entry("pi_1", "co_1", "sub_1", "credit", 2500, "usd", "top-up pi_1")
LAG = DEFAULT_REPORT_LAG


@pytest.fixture
def moesif() -> Iterator[FakeMoesif]:
    with FakeMoesif(token=TOKEN, clock=lambda: NOW) as fake:
        fake.add_subscription("sub_1", "co_1")
        yield fake


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
def new_poster(
    sessions: sessionmaker[Session], moesif: FakeMoesif
) -> Iterator[Callable[[], PostingEngine]]:
    """Build posting engines, each with its own HTTP client, as separate processes would.

    Each engine's clock stands still at ``at`` (default ``NOW``).
    """
    clients: list[httpx.Client] = []

    def build(at: datetime = NOW) -> PostingEngine:
        http = httpx.Client(base_url=moesif.base_url, timeout=10.0)
        clients.append(http)
        client = MoesifClient(
            http,
            Secret(TOKEN),
            policy=RetryPolicy(max_attempts=2, base_delay=0.01),
            limiter=RateLimiter(1000, 60.0),
            sleep=lambda _seconds: None,
        )
        return PostingEngine(sessions, client, amount_unit="major", clock=lambda: at)

    yield build
    for http in clients:
        http.close()


def _postings(engine: Engine) -> list[Posting]:
    with Session(engine) as session:
        return list(session.scalars(select(Posting)))


def _read_backs(moesif: FakeMoesif) -> list[Exchange]:
    return [e for e in moesif.exchanges if e.method == "GET" and "company_id" in e.query]


def test_a_webhook_posts_with_no_run_and_records_its_origin(
    new_poster: Callable[[], PostingEngine], moesif: FakeMoesif, engine: Engine
) -> None:
    outcome = new_poster().post(ENTRY, origin=WEBHOOK)

    assert (outcome.result, outcome.confirmed, outcome.unknown) == (Result.POSTED, True, False)
    [body] = moesif.posts
    assert (body["transaction_id"], str(body["amount"])) == ("pi_1", "25.00")
    [posting] = _postings(engine)
    assert (posting.origin, posting.run_id, posting.status) == (WEBHOOK, None, "confirmed")
    assert posting.attempts == 1
    assert _read_backs(moesif) == [], "a posting never sent needs no read-back"
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 0


def test_a_run_origin_names_its_run(
    new_poster: Callable[[], PostingEngine], engine: Engine, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        session.add(Run(id="run-7", since=NOW, until=NOW, status="running", started_at=NOW))

    new_poster().post(ENTRY, origin=origin.for_run("run-7"))

    [posting] = _postings(engine)
    assert (posting.origin, posting.run_id) == ("run:run-7", "run-7")


def test_a_posting_confirmed_by_one_caller_is_never_sent_by_another(
    new_poster: Callable[[], PostingEngine], moesif: FakeMoesif, engine: Engine
) -> None:
    assert new_poster().post(ENTRY, origin=WEBHOOK).result is Result.POSTED

    again = new_poster().post(ENTRY, origin=TOP_UP)

    assert again.result is Result.ALREADY_CONFIRMED
    assert "webhook evt_1" in again.detail
    assert moesif.applied_counts() == {"pi_1": 1}
    [posting] = _postings(engine)
    assert posting.origin == WEBHOOK, "the first caller's origin stays"


def test_a_second_caller_never_sends_while_the_first_is_sending(
    new_poster: Callable[[], PostingEngine], moesif: FakeMoesif, engine: Engine
) -> None:
    arrived, release = threading.Event(), threading.Event()

    def hold_the_post(exchange: Exchange) -> Verdict | None:
        if exchange.method == "POST":
            arrived.set()
            release.wait(timeout=30)
        return None

    moesif.on_request = hold_the_post
    first, second = new_poster(), new_poster()
    with ThreadPoolExecutor(max_workers=1) as pool:
        sending = pool.submit(first.post, ENTRY, origin=WEBHOOK)
        assert arrived.wait(timeout=30)

        busy = second.post(ENTRY, origin=TOP_UP)

        release.set()
        assert sending.result(timeout=30).result is Result.POSTED
    assert (busy.result, busy.unknown, busy.confirmed) == (Result.BUSY, True, False)
    assert moesif.applied_counts() == {"pi_1": 1}
    assert second.post(ENTRY, origin=TOP_UP).result is Result.ALREADY_CONFIRMED
    assert moesif.applied_counts() == {"pi_1": 1}
    assert [p.status for p in _postings(engine)] == ["confirmed"]


def test_many_callers_racing_on_one_transaction_id_send_it_once(
    new_poster: Callable[[], PostingEngine], moesif: FakeMoesif, engine: Engine
) -> None:
    callers = [new_poster() for _ in range(6)]
    start = threading.Barrier(len(callers))

    def post(caller: PostingEngine) -> Result:
        start.wait(timeout=30)
        return caller.post(ENTRY, origin=WEBHOOK).result

    with ThreadPoolExecutor(max_workers=len(callers)) as pool:
        results = list(pool.map(post, callers))

    assert results.count(Result.POSTED) == 1
    assert set(results) <= {Result.POSTED, Result.BUSY, Result.ALREADY_CONFIRMED}
    assert moesif.applied_counts() == {"pi_1": 1}
    assert [(p.status, p.attempts) for p in _postings(engine)] == [("confirmed", 1)]


def test_recording_one_intent_at_once_from_many_sessions_inserts_it_once(
    sessions: sessionmaker[Session], engine: Engine
) -> None:
    start = threading.Barrier(6)
    values = {
        "transaction_id": "pi_1",
        "origin": WEBHOOK,
        "run_id": None,
        "company_id": "co_1",
        "subscription_id": "sub_1",
        "entry_type": "credit",
        "amount_minor": 2500,
        "currency": "usd",
        "amount_sent": "25.00",
        "description": "top-up",
        "status": "intent",
        "attempts": 0,
        "created_at": NOW,
        "updated_at": NOW,
    }

    def record(_: int) -> bool:
        start.wait(timeout=30)
        with sessions.begin() as session:
            return postings.record_intent(session, values)

    with ThreadPoolExecutor(max_workers=6) as pool:
        inserted = list(pool.map(record, range(6)))

    assert inserted.count(True) == 1
    assert len(_postings(engine)) == 1


def test_moesif_unavailable_records_failed_and_a_later_call_sends_it_once(
    new_poster: Callable[[], PostingEngine], moesif: FakeMoesif, engine: Engine
) -> None:
    moesif.fail_next(503, count=2, method="POST")
    with pytest.raises(MoesifUnavailable):
        new_poster().post(ENTRY, origin=WEBHOOK)
    [posting] = _postings(engine)
    assert (posting.status, posting.attempts) == ("failed", 1)
    assert "HTTP 503" in (posting.last_error or "")

    assert new_poster().post(ENTRY, origin=WEBHOOK).result is Result.POSTED

    assert moesif.applied_counts() == {"pi_1": 1}
    assert len(_read_backs(moesif)) == 1, "a failed posting is read back before the resend"


def test_a_refused_posting_is_recorded_failed_without_raising(
    new_poster: Callable[[], PostingEngine], moesif: FakeMoesif, engine: Engine
) -> None:
    moesif.on_request = lambda exchange: "reject" if exchange.method == "POST" else None

    outcome = new_poster().post(ENTRY, origin=WEBHOOK)

    assert (outcome.result, outcome.unknown, outcome.confirmed) == (Result.REFUSED, False, False)
    assert "HTTP 400" in outcome.detail
    assert [p.status for p in _postings(engine)] == ["failed"]


def test_a_lost_answer_is_left_unknown_then_resent_as_first_sent(
    new_poster: Callable[..., PostingEngine], moesif: FakeMoesif, engine: Engine
) -> None:
    moesif.on_request = lambda exchange: "drop" if exchange.method == "POST" else None
    lost = new_poster().post(ENTRY, origin=WEBHOOK)
    assert (lost.result, lost.unknown) == (Result.UNKNOWN, True)
    assert [p.status for p in _postings(engine)] == ["unknown"]
    moesif.on_request = None

    changed = Entry("pi_1", "co_1", "sub_1", "credit", 9900, "usd", "another amount")
    assert new_poster(NOW + LAG).post(changed, origin=TOP_UP).result is Result.POSTED

    [body] = moesif.posts
    assert (str(body["amount"]), body["description"]) == ("25.00", "top-up pi_1")


def test_a_lost_answer_whose_row_the_reports_do_not_list_yet_is_not_sent_again(
    new_poster: Callable[[], PostingEngine], moesif: FakeMoesif, engine: Engine
) -> None:
    """Moesif applied the POST but its reports lag its ledger: absence there proves nothing."""
    moesif.unlisted.add("pi_1")
    moesif.on_request = lambda exchange: "apply_then_drop" if exchange.method == "POST" else None
    lost = new_poster().post(ENTRY, origin=WEBHOOK)
    assert lost.result is Result.UNKNOWN
    moesif.on_request = None

    new_poster().post(ENTRY, origin=WEBHOOK)

    assert moesif.applied_counts() == {"pi_1": 1}


def test_a_lost_answer_read_back_within_the_report_lag_waits_unsent(
    new_poster: Callable[..., PostingEngine], moesif: FakeMoesif, engine: Engine
) -> None:
    """Moesif applied the POST, its reports do not list it yet: every call within the lag waits."""
    moesif.unlisted.add("pi_1")
    moesif.on_request = lambda exchange: "apply_then_drop" if exchange.method == "POST" else None
    new_poster().post(ENTRY, origin=WEBHOOK)
    moesif.on_request = None

    waits = [
        new_poster(NOW + late).post(ENTRY, origin=TOP_UP)
        for late in (timedelta(0), timedelta(minutes=5), LAG - timedelta(seconds=1))
    ]

    assert [w.result for w in waits] == [Result.UNKNOWN] * 3
    assert all(w.unknown and "not sent again" in w.detail for w in waits)
    assert "2026-11-20T02:15:00+00:00" in waits[0].detail, "it says when a read-back decides"
    assert len(moesif.posts) == 1
    assert moesif.applied_counts() == {"pi_1": 1}
    [posting] = _postings(engine)
    assert (posting.status, posting.attempts) == ("unknown", 1)
    assert len(_read_backs(moesif)) == 4, "each call read back, none concluded absence"


def test_a_lost_answer_read_back_after_the_lag_and_still_absent_is_resent_exactly_once(
    new_poster: Callable[..., PostingEngine], moesif: FakeMoesif, engine: Engine
) -> None:
    moesif.on_request = lambda exchange: "drop" if exchange.method == "POST" else None
    new_poster().post(ENTRY, origin=WEBHOOK)
    moesif.on_request = None
    assert new_poster(NOW + LAG - timedelta(seconds=1)).post(ENTRY, origin=WEBHOOK).unknown

    after = [
        new_poster(NOW + LAG + timedelta(minutes=m)).post(ENTRY, origin=WEBHOOK) for m in range(3)
    ]

    assert [o.result for o in after] == [
        Result.POSTED,
        Result.ALREADY_CONFIRMED,
        Result.ALREADY_CONFIRMED,
    ]
    assert moesif.applied_counts() == {"pi_1": 1}
    [posting] = _postings(engine)
    assert (posting.status, posting.attempts) == ("confirmed", 2)


def test_a_lost_answer_found_on_read_back_within_the_lag_is_confirmed_unsent(
    new_poster: Callable[..., PostingEngine], moesif: FakeMoesif, engine: Engine
) -> None:
    """Waiting only guards absence: a row the reports do list confirms at once."""
    moesif.unlisted.add("pi_1")
    moesif.on_request = lambda exchange: "apply_then_drop" if exchange.method == "POST" else None
    new_poster().post(ENTRY, origin=WEBHOOK)
    moesif.on_request = None
    moesif.unlisted.clear()

    assert new_poster(NOW + timedelta(minutes=1)).post(ENTRY, origin=WEBHOOK).result is Result.FOUND
    assert moesif.applied_counts() == {"pi_1": 1}


def test_an_intent_whose_send_never_settled_waits_for_the_lag(
    new_poster: Callable[..., PostingEngine],
    moesif: FakeMoesif,
    engine: Engine,
    sessions: sessionmaker[Session],
) -> None:
    """A process that died mid-send leaves an intent with an attempt: it may have been applied."""
    moesif.unlisted.add("pi_1")
    moesif.on_request = lambda exchange: "apply_then_drop" if exchange.method == "POST" else None
    new_poster().post(ENTRY, origin=WEBHOOK)
    moesif.on_request = None
    with sessions.begin() as session:  # as if it died before recording the outcome
        postings.set_status(session, "pi_1", PostingStatus.INTENT, NOW)

    within = new_poster(NOW + timedelta(minutes=1)).post(ENTRY, origin=WEBHOOK)
    moesif.unlisted.clear()
    after = new_poster(NOW + LAG).post(ENTRY, origin=WEBHOOK)

    assert (within.result, after.result) == (Result.UNKNOWN, Result.FOUND)
    assert (len(moesif.posts), moesif.applied_counts()) == (1, {"pi_1": 1})


def _first_reads(moesif: FakeMoesif) -> list[Exchange]:
    return [e for e in moesif.exchanges if e.method == "GET" and "company_id" not in e.query]


def test_a_row_someone_else_wrote_under_the_id_is_held_and_nothing_is_sent(
    new_poster: Callable[[], PostingEngine], moesif: FakeMoesif, engine: Engine
) -> None:
    moesif.add_row(
        "co_1", "sub_1", "credit", Decimal("25.00"), NOW - timedelta(minutes=5), "pi_1", "older"
    )

    outcome = new_poster().post(ENTRY, origin=WEBHOOK)

    assert (outcome.result, outcome.action) == (Result.HELD, "none")
    assert "already in Moesif" in outcome.detail
    assert moesif.posts == []
    assert moesif.held("pi_1") == 1
    assert _postings(engine) == [], "an intent never sent is withdrawn, nothing recorded"
    assert len(_first_reads(moesif)) == 1


def test_a_row_under_the_id_on_another_subscription_is_misapplied_and_nothing_is_sent(
    new_poster: Callable[[], PostingEngine], moesif: FakeMoesif, engine: Engine
) -> None:
    moesif.add_subscription("sub_9", "co_9")
    stray = moesif.add_row(
        "co_9", "sub_9", "credit", Decimal("25.00"), NOW - timedelta(minutes=5), "pi_1"
    )

    outcome = new_poster().post(ENTRY, origin=WEBHOOK)

    assert (outcome.result, outcome.action) == (Result.MISAPPLIED, "flagged")
    assert outcome.verdict is not None
    assert outcome.verdict.row is not None
    assert outcome.verdict.row.moesif_id == stray.id
    assert "co_9" in outcome.detail
    assert "sub_1" in outcome.detail
    assert moesif.posts == []
    assert _postings(engine) == []

    moesif.remove_row(stray.id)
    assert new_poster().post(ENTRY, origin=WEBHOOK).result is Result.POSTED
    assert moesif.applied_count("pi_1") == 1


def test_a_first_read_that_fails_sends_nothing_and_a_later_call_posts_once(
    new_poster: Callable[[], PostingEngine], moesif: FakeMoesif, engine: Engine
) -> None:
    moesif.fail_next(503, count=2, method="GET")
    with pytest.raises(MoesifUnavailable):
        new_poster().post(ENTRY, origin=WEBHOOK)
    assert moesif.posts == []
    [posting] = _postings(engine)
    assert (posting.status, posting.attempts) == ("intent", 0)

    assert new_poster().post(ENTRY, origin=WEBHOOK).result is Result.POSTED
    assert moesif.applied_count("pi_1") == 1


def test_the_first_read_looks_back_from_the_movement_not_from_the_intent(
    new_poster: Callable[[], PostingEngine], moesif: FakeMoesif
) -> None:
    three_days = NOW - timedelta(days=3)
    moesif.add_row("co_1", "sub_1", "credit", Decimal("25.00"), three_days, "pi_1")

    outcome = new_poster().post(replace(ENTRY, occurred_at=three_days), origin=WEBHOOK)

    assert outcome.result is Result.HELD
    assert moesif.posts == []


def test_a_batch_reads_moesif_once_before_its_first_sends(
    sessions: sessionmaker[Session], moesif: FakeMoesif, new_poster: Callable[[], PostingEngine]
) -> None:
    moesif.add_row("co_1", "sub_1", "credit", Decimal("5.00"), NOW - timedelta(days=1), "pi_3")
    entries = [
        replace(ENTRY, transaction_id=f"pi_{n}", occurred_at=NOW - timedelta(days=n))
        for n in (1, 2, 3)
    ]
    poster = new_poster()
    batch = PostingEngine(
        sessions,
        poster._moesif,  # noqa: SLF001 - the same client, read once for the batch
        amount_unit="major",
        clock=lambda: NOW,
        first_read=ReadOnce(poster._moesif, lambda: NOW, entries),  # noqa: SLF001
    )

    results = [batch.post(entry, origin=WEBHOOK).result for entry in entries]

    assert results == [Result.POSTED, Result.POSTED, Result.HELD]
    assert len(_first_reads(moesif)) == 1
    assert sorted(post["transaction_id"] for post in moesif.posts) == ["pi_1", "pi_2"]
