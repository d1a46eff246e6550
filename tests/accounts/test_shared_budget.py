"""Moesif's budget held in PostgreSQL: every process together stays under it (section 12)."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import Engine, text

from reconcile.accounts.budget import SharedBudget
from reconcile.clients import batch_limiter, live_limiter
from reconcile.config import Secret, Settings
from reconcile.db.moesif_budget import seconds_to_next_minute

pytestmark = pytest.mark.postgres


class Spent(Exception):
    """Raised by the injected sleep: the budget asked to wait for the next minute."""


def _refuse(_seconds: float) -> None:
    raise Spent


@pytest.fixture
def database_url(postgres_database: str) -> str:
    return postgres_database


def _clear(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM moesif_budget"))


def test_concurrent_spenders_never_take_more_than_the_minutes_budget(engine: Engine) -> None:
    _clear(engine)
    granted: list[int] = []
    lock = threading.Lock()

    def spender() -> None:
        budget = SharedBudget(engine, 25, sleep=_refuse)
        for _ in range(10):
            try:
                budget.acquire()
            except Spent:
                return
            with lock:
                granted.append(1)

    threads = [threading.Thread(target=spender) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # 60 asked for within (almost always) one minute: 25 granted. At a minute's edge the next
    # minute's budget grants more, never more than twice the limit.
    assert 25 <= len(granted) <= 50
    with engine.connect() as connection:
        assert max(connection.scalars(text("SELECT used FROM moesif_budget"))) <= 25


def test_the_batch_stops_at_its_share_and_the_live_path_keeps_the_rest(engine: Engine) -> None:
    _clear(engine)
    url = engine.url.render_as_string(hide_password=False)
    settings = Settings(
        Secret("sk_test_x"), Secret("token"), database_url=url, moesif_requests_per_minute=498
    )
    with engine.connect() as connection:
        edge = seconds_to_next_minute(connection)
    if edge < 3:  # the whole test within one calendar minute of the database's clock
        time.sleep(edge + 0.1)
    batch = batch_limiter(settings, sleep=_refuse)
    live = live_limiter(settings, sleep=_refuse)
    assert isinstance(batch, SharedBudget)
    assert isinstance(live, SharedBudget)
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO moesif_budget VALUES (date_trunc('minute', clock_timestamp()), 497)")
        )

    batch.acquire()
    with pytest.raises(Spent):
        batch.acquire()
    live.acquire()
    live.acquire()
    with pytest.raises(Spent):
        live.acquire()
