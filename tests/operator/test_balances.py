"""Balances: nets summed by the database, Moesif's balances read live, blocked-but-owed first."""

from __future__ import annotations

import csv
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from reconcile.cli import main
from reconcile.config import Secret, Settings
from reconcile.db.engine import make_engine, upgrade_to_head
from reconcile.db.models import ExpectedRow, LedgerEntry, Posting
from reconcile.demo import DEMO_MOESIF_TOKEN, DEMO_STRIPE_KEY, seed
from reconcile.domain.times import to_iso
from reconcile.fakes.moesif import FakeMoesif
from reconcile.fakes.stripe import FakeStripe
from reconcile.operator.balances import (
    BALANCE_COLUMNS,
    CSV_COLUMNS,
    Balance,
    BalanceRow,
    Snapshot,
    build_rows,
    check_balances,
    order_rows,
)
from reconcile.retry import RateLimiter
from tests.operator.conftest import NOW, add_run, add_state


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_order_puts_blocked_customers_owed_credit_first() -> None:
    def row(sub: str, stripe: int, moesif: int, available: str | None) -> BalanceRow:
        balance = (
            None
            if available is None
            else Balance(Decimal(available), Decimal(0), Decimal(available))
        )
        return BalanceRow("c", sub, "usd", stripe, moesif, balance, 0)

    ordered = order_rows(
        [
            row("clean", 100, 100, "0"),
            row("owed", 500, 0, "10.00"),
            row("blocked", 200, 0, "0.00"),
            row("overdrawn", 100, 0, "-3.00"),
            row("too-much", 0, 9000, "90.00"),
            row("unknown", 50, 0, None),
        ]
    )
    assert [r.subscription_id for r in ordered] == [
        "blocked",
        "overdrawn",
        "too-much",
        "owed",
        "unknown",
        "clean",
    ]
    assert ordered[0].blocked_but_owed
    assert not ordered[2].blocked_but_owed


def test_balances_after_filling_the_snapshot_from_the_demo_history(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    monkeypatch.chdir(tmp_path)
    with (
        FakeStripe(api_key=DEMO_STRIPE_KEY) as stripe,
        FakeMoesif(token=DEMO_MOESIF_TOKEN) as moesif,
    ):
        seed(stripe, moesif, now)
        for name, value in {
            "STRIPE_API_KEY": DEMO_STRIPE_KEY,
            "STRIPE_API_BASE": stripe.base_url,
            "MOESIF_MANAGEMENT_TOKEN": DEMO_MOESIF_TOKEN,
            "MOESIF_API_BASE": moesif.base_url,
            "RECONCILE_DATABASE_URL": database_url,
            "STRIPE_MAX_REQUESTS_PER_SECOND": "1000",
        }.items():
            monkeypatch.setenv(name, value)
        reports = tmp_path / "reports"
        since = to_iso(now - timedelta(days=8))
        code = main(["balances", "--since", since, "--report-dir", str(reports)])
        assert moesif.posts == []  # filling is a dry run: balances never posts
    assert code == 1
    [path] = sorted(reports.glob("balances-*.csv"))
    assert "balances:" in capsys.readouterr().out
    with path.open(encoding="utf-8") as handle:
        header = handle.readline().strip().split(",")
    assert header == CSV_COLUMNS
    assert header[: len(BALANCE_COLUMNS)] == BALANCE_COLUMNS  # the contract's, then ours
    rows = {(r["company_id"], r["currency"]): r for r in _rows(path)}
    order = [(r["company_id"], r["currency"]) for r in _rows(path)]
    # Blocked while owed credit first: the JPY top-up never credited.
    assert order[0] == ("umbrella", "jpy")
    assert rows["umbrella", "jpy"]["delta"] == "5000"
    assert rows["umbrella", "jpy"]["available_balance"] == "0"
    assert (rows["umbrella", "jpy"]["blocked"], rows["umbrella", "jpy"]["owed"]) == (
        "blocked",
        "owed",
    )
    # The EUR top-up on a USD plan shows none of the USD subscription's figures ...
    hooli = rows["hooli", "eur"]
    assert (hooli["delta"], hooli["owed"], hooli["subscription_currency"]) == (
        "30.00",
        "owed",
        "usd",
    )
    assert [hooli[name] for name in ("current_balance", "available_balance", "as_of")] == [""] * 3
    assert hooli["blocked"] == ""
    # ... which stand on a row of the subscription's own currency.
    assert (rows["hooli", "usd"]["delta"], rows["hooli", "usd"]["available_balance"]) == (
        "0.00",
        "0",
    )
    assert rows["acme", "usd"]["stripe_net"] == "70.00"  # 50 + 25 - 5 refunded
    assert rows["acme", "usd"]["moesif_net"] == "50.00"
    assert rows["acme", "usd"]["delta"] == "20.00"
    assert Decimal(rows["acme", "usd"]["current_balance"]) == Decimal("50")
    # acme's figures are its latest row's, as of that row's time: no request was needed.
    assert rows["acme", "usd"]["as_of"] == to_iso(now - timedelta(days=5, minutes=-1))
    assert rows["globex", "usd"]["delta"] == "-100.00"  # the webhook's retry credited twice
    assert rows["initech", "usd"]["moesif_net"] == "1070.00"  # the promotion is not counted
    assert order[-1] == ("hooli", "usd")  # zero delta last


def _settings(moesif: FakeMoesif, database_url: str, reports: Path) -> Settings:
    return Settings(
        stripe_api_key=Secret("unused"),
        moesif_token=Secret(moesif.token),
        moesif_api_base=moesif.base_url,
        database_url=database_url,
        report_dir=reports,
    )


def test_confirmed_postings_count_before_the_ledger_shows_them(
    database_url: str, tmp_path: Path
) -> None:
    engine = make_engine(database_url)
    upgrade_to_head(engine)
    sessions = sessionmaker(engine)
    with sessions.begin() as session:
        add_run(session, "r1")
        _movement(session, "pi_a", 4000)
        _movement(session, "pi_b", 1000)
        _posting(session, "pi_a", 4000)  # confirmed, not yet in the reports
        _posting(session, "pi_b", 1000)  # confirmed, the report shows it without its id
        session.add(
            _ledger("m1", None, 1000, description="reconcile: credit pi_b for Stripe pi_b (run r1)")
        )
        add_state(session, moesif_id="m1", company_id="acme", subscription_id="sub_acme")
    engine.dispose()
    with FakeMoesif(token="tok") as moesif:
        moesif.add_subscription("sub_acme", "acme")
        moesif.add_subscription("sub_other", "other")
        check = check_balances(
            _settings(moesif, database_url, tmp_path), clock=lambda: NOW, companies=("acme",)
        )
    [row] = check.rows
    assert (row.stripe_net_minor, row.moesif_net_minor, row.delta_minor) == (5000, 5000, 0)
    assert row.open_findings == 1
    assert check.exit_code == 0
    assert _rows(check.path)[0]["open_findings"] == "1"


def _movement(session: Session, transaction_id: str, amount: int) -> None:
    session.add(
        ExpectedRow(
            transaction_id=transaction_id,
            source="topup",
            entry_type="credit",
            amount_minor=amount,
            currency="usd",
            created_at=NOW,
            stripe_object_id=transaction_id,
            topup_id=transaction_id,
            stripe_customer_id="cus_1",
            company_id="acme",
            subscription_id="sub_acme",
            first_seen_run_id="r1",
            last_seen_run_id="r1",
            updated_at=NOW,
        )
    )


def _posting(session: Session, transaction_id: str, amount: int) -> None:
    session.add(
        Posting(
            transaction_id=transaction_id,
            origin="run:r1",
            run_id="r1",
            company_id="acme",
            subscription_id="sub_acme",
            entry_type="credit",
            amount_minor=amount,
            currency="usd",
            amount_sent=str(amount),
            description="",
            status="confirmed",
            attempts=1,
            created_at=NOW,
            updated_at=NOW,
            confirmed_at=NOW,
        )
    )


def _ledger(moesif_id: str, transaction_id: str | None, amount: int, **extra: str) -> LedgerEntry:
    return LedgerEntry(
        moesif_id=moesif_id,
        transaction_id=transaction_id,
        entry_type="credit",
        amount_minor=amount,
        amount_raw=str(amount),
        currency="usd",
        company_id="acme",
        subscription_id="sub_acme",
        created_at=NOW,
        first_seen_at=NOW,
        last_seen_at=NOW,
        **extra,
    )


class VirtualTime:
    """A clock that only moves when someone sleeps: elapsed time is computed, never waited."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def monotonic(self) -> float:
        return self.seconds

    def sleep(self, seconds: float) -> None:
        self.seconds += seconds

    def utc(self) -> datetime:
        return datetime(2026, 12, 1, tzinfo=UTC) + timedelta(seconds=self.seconds)


def balances_duration(
    subscriptions: int, database_url: str, reports: Path, per_minute: int
) -> tuple[float, Counter[datetime]]:
    """Return the seconds a balance check of ``subscriptions`` takes at ``per_minute``."""
    engine = make_engine(database_url)
    upgrade_to_head(engine)
    with sessionmaker(engine).begin() as session:
        session.add_all(
            LedgerEntry(
                moesif_id=f"m{i}",
                transaction_id=None,
                entry_type="credit",
                amount_minor=100,
                amount_raw="1.00",
                currency="usd",
                company_id=f"c{i}",
                subscription_id=f"s{i}",
                created_at=NOW,
                first_seen_at=NOW,
                last_seen_at=NOW,
            )
            for i in range(subscriptions)
        )
    engine.dispose()
    time = VirtualTime()
    with FakeMoesif(token="tok", clock=time.utc) as moesif:
        for i in range(subscriptions):
            moesif.add_subscription(f"s{i}", f"c{i}")
        check = check_balances(
            _settings(moesif, database_url, reports),
            clock=time.utc,
            limiter=RateLimiter(per_minute, 60.0, clock=time.monotonic, sleep=time.sleep),
        )
        per_minute_seen = Counter(moesif.requests_per_minute())
    assert len(check.rows) == subscriptions
    return time.seconds, per_minute_seen


def test_a_thousand_subscriptions_take_a_minute_at_moesifs_limit(
    sqlite_url: str, tmp_path: Path
) -> None:
    seconds, per_minute = balances_duration(1000, sqlite_url, tmp_path, per_minute=500)
    # 500 answered at once, the next 500 a minute later; Moesif never had to say 429.
    assert seconds == pytest.approx(60.0)
    assert max(per_minute.values()) <= 500
    assert sum(per_minute.values()) == 1000


def test_a_bad_rate_setting_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MOESIF_MANAGEMENT_TOKEN", "tok")
    monkeypatch.setenv("RECONCILE_MOESIF_REQUESTS_PER_MINUTE", "900")
    assert main(["balances"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "RECONCILE_MOESIF_REQUESTS_PER_MINUTE must be a whole number from 1 to 500" in error


def test_since_fills_the_snapshot_through_the_run_first(sqlite_url: str, tmp_path: Path) -> None:
    calls: list[tuple[datetime, tuple[str, ...], Path]] = []

    def fill(settings: Settings, since: datetime, companies: object, report_dir: Path) -> int:
        calls.append((since, tuple(companies), report_dir))  # type: ignore[arg-type]
        return 0

    with FakeMoesif(token="tok") as moesif:
        check = check_balances(
            _settings(moesif, sqlite_url, tmp_path),
            since=NOW - timedelta(days=900),
            companies=("acme",),
            clock=lambda: NOW,
            fill=fill,
        )
    assert calls == [(NOW - timedelta(days=900), ("acme",), tmp_path)]
    assert check.rows == ()
    assert check.exit_code == 0


def test_order_weighs_deltas_within_their_currency_only() -> None:
    def row(sub: str, currency: str, delta: int) -> BalanceRow:
        balance = Balance(Decimal(5), Decimal(0), Decimal(5))
        return BalanceRow("c", sub, currency, delta, 0, balance, 0)

    ordered = order_rows(
        [row("usd-60", "usd", 6000), row("yen", "jpy", 5000), row("usd-100", "usd", 10000)]
    )
    # 5,000 JPY (about 33 USD) is never weighed against 10,000 US cents: each currency apart.
    assert [r.subscription_id for r in ordered] == ["yen", "usd-100", "usd-60"]


def test_a_currency_mismatch_row_shows_none_of_the_subscriptions_figures() -> None:
    usd = Balance(Decimal("12.00"), Decimal(0), Decimal("12.00"), NOW, "usd")
    snapshot = Snapshot(
        nets={
            ("hooli", "sub_hooli", "eur"): (3000, 0),
            ("acme", "sub_acme", "usd"): (1000, 1000),
            ("acme", "sub_acme", "eur"): (500, 0),
            ("gone", "sub_gone", "eur"): (700, 0),
        },
        open_counts={("hooli", "sub_hooli"): 1},
        kept={"sub_gone": "USD"},
    )
    rows = build_rows(snapshot, {"sub_hooli": usd, "sub_acme": usd, "sub_gone": None})
    by_key = {(r.subscription_id, r.currency): r for r in rows}
    assert set(by_key) == {
        ("sub_hooli", "eur"),
        ("sub_hooli", "usd"),  # added: the subscription's own figures, on a row of its own
        ("sub_acme", "usd"),
        ("sub_acme", "eur"),
        ("sub_gone", "eur"),  # Moesif no longer knows it: no figures to show on a row of its own
    }
    assert by_key["sub_gone", "eur"].currency_mismatch  # by the currency it was last read in
    for key in (("sub_hooli", "eur"), ("sub_acme", "eur")):
        mismatch = by_key[key]
        assert mismatch.currency_mismatch
        assert mismatch.balance is None
        assert not mismatch.blocked
        assert mismatch.subscription_currency == "usd"
    own = by_key["sub_hooli", "usd"]
    assert (own.delta_minor, own.balance, own.currency_mismatch) == (0, usd, False)
    assert by_key["sub_acme", "usd"].balance == usd


def _customer(stripe: FakeStripe, moesif: FakeMoesif, company: str) -> str:
    moesif.add_subscription(f"sub_{company}", company)
    return stripe.add_customer(
        metadata={"moesif_company_id": company, "moesif_subscription_id": f"sub_{company}"}
    )


def _environment(
    monkeypatch: pytest.MonkeyPatch, stripe: FakeStripe, moesif: FakeMoesif, database_url: str
) -> None:
    for name, value in {
        "STRIPE_API_KEY": DEMO_STRIPE_KEY,
        "STRIPE_API_BASE": stripe.base_url,
        "MOESIF_MANAGEMENT_TOKEN": DEMO_MOESIF_TOKEN,
        "MOESIF_API_BASE": moesif.base_url,
        "RECONCILE_DATABASE_URL": database_url,
        "STRIPE_MAX_REQUESTS_PER_SECOND": "1000",
    }.items():
        monkeypatch.setenv(name, value)


def test_balances_ask_moesif_only_for_quiet_new_and_unseen_subscriptions(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    day, hour = timedelta(days=1), timedelta(hours=1)
    monkeypatch.chdir(tmp_path)
    reports = tmp_path / "reports"
    with (
        FakeStripe(api_key=DEMO_STRIPE_KEY) as stripe,
        FakeMoesif(token=DEMO_MOESIF_TOKEN) as moesif,
    ):
        # busy: credited 3 days ago, metered 2 hours ago: its latest row is in the last window.
        paid = stripe.add_payment_intent(
            _customer(stripe, moesif, "busy"), 5000, created=now - 3 * day
        )
        moesif.add_row("busy", "sub_busy", "credit", Decimal("50.00"), now - 3 * day, paid)
        moesif.add_row(
            "busy", "sub_busy", "usage", Decimal("1"), now - 2 * hour, billing_meter_id="m"
        )
        # quiet: nothing since its credit 20 days ago, before the last run's window.
        paid = stripe.add_payment_intent(
            _customer(stripe, moesif, "quiet"), 2000, created=now - 20 * day
        )
        moesif.add_row("quiet", "sub_quiet", "credit", Decimal("20.00"), now - 20 * day, paid)
        # topped: a recent row, then a top-up the last run posted, which no row shows yet.
        topped = _customer(stripe, moesif, "topped")
        paid = stripe.add_payment_intent(topped, 1000, created=now - 5 * hour)
        moesif.add_row("topped", "sub_topped", "credit", Decimal("10.00"), now - 5 * hour, paid)
        stripe.add_payment_intent(topped, 500, created=now - hour)
        # newcomer: its first top-up, posted by the last run; no row of it in the snapshot.
        stripe.add_payment_intent(_customer(stripe, moesif, "newcomer"), 1500, created=now - hour)
        _environment(monkeypatch, stripe, moesif, database_url)
        fill = ["--since", to_iso(now - 30 * day), "--dry-run", "--report-dir", str(reports)]
        assert main(fill) == 1  # two top-ups missing in Moesif
        assert main(["--since", to_iso(now - day), "--report-dir", str(reports)]) == 0
        assert len(moesif.posts) == 2  # topped's and newcomer's, confirmed
        before = len(moesif.exchanges)
        capsys.readouterr()
        assert main(["balances", "--report-dir", str(reports)]) == 0
        asked = moesif.exchanges[before:]
    assert sorted((e.method, e.path) for e in asked) == [
        ("GET", f"/v1/search/~/subscriptions/sub_{name}")
        for name in ("newcomer", "quiet", "topped")
    ]
    assert "balances read from Moesif now: 3" in capsys.readouterr().out
    [path] = sorted(reports.glob("balances-*.csv"))
    rows = {r["company_id"]: r for r in _rows(path)}
    assert rows["busy"]["as_of"] == to_iso(now - 2 * hour)  # its latest row's time
    assert Decimal(rows["busy"]["current_balance"]) == Decimal(49)  # 50.00 less its usage
    assert Decimal(rows["topped"]["current_balance"]) == Decimal(15)  # the posting counted
    assert Decimal(rows["newcomer"]["current_balance"]) == Decimal(15)
    for read in ("quiet", "topped", "newcomer"):
        assert rows[read]["as_of"] >= to_iso(now)  # read now
    assert all(r["delta"] == "0.00" and r["owed"] == "" for r in rows.values())


def _recent_rows(database_url: str, subscriptions: int, quiet: int, status: str) -> None:
    """Fill a snapshot: each subscription one credit row carrying its balance, and one run.

    The first ``quiet`` rows are older than the run's window, the others in it.
    """
    engine = make_engine(database_url)
    upgrade_to_head(engine)
    with sessionmaker(engine).begin() as session:
        run = add_run(session, "r1", started_at=NOW)
        run.since, run.status = NOW - timedelta(days=1), status
        session.add_all(
            LedgerEntry(
                moesif_id=f"m{i}",
                transaction_id=f"t{i}",
                entry_type="credit",
                amount_minor=100,
                amount_raw="1.00",
                currency="usd",
                company_id=f"c{i}",
                subscription_id=f"s{i}",
                created_at=NOW - timedelta(days=5 if i < quiet else 0, hours=1),
                first_seen_at=NOW,
                last_seen_at=NOW,
                sequence_id=1,
                ending_current_minor=100,
                ending_pending_minor=0,
                ending_available_minor=100,
            )
            for i in range(subscriptions)
        )
    engine.dispose()


@pytest.mark.parametrize(("status", "requests"), [("succeeded", 10), ("failed", 1000)])
def test_a_thousand_subscriptions_with_recent_rows_ask_moesif_for_the_quiet_ones_only(
    database_url: str, tmp_path: Path, status: str, requests: int
) -> None:
    _recent_rows(database_url, 1000, quiet=10, status=status)
    time = VirtualTime()
    with FakeMoesif(token="tok", clock=time.utc) as moesif:
        for i in range(1000):
            moesif.add_subscription(f"s{i}", f"c{i}")
        check = check_balances(
            _settings(moesif, database_url, tmp_path),
            clock=time.utc,
            limiter=RateLimiter(400, 60.0, clock=time.monotonic, sleep=time.sleep),
        )
        asked = {e.path.rsplit("/", 1)[-1] for e in moesif.exchanges}
    assert len(check.rows) == 1000
    assert (check.read_from_moesif, len(asked)) == (requests, requests)
    if status == "succeeded":  # a failed run proves nothing: every balance is read
        assert asked == {f"s{i}" for i in range(10)}
        assert time.seconds == 0  # 10 requests fit in the first minute's share
        row = next(r for r in check.rows if r.subscription_id == "s500")
        assert row.balance is not None
        assert row.balance.as_of == NOW - timedelta(hours=1)
        assert row.balance.current_balance == Decimal("1.00")
    else:
        assert time.seconds == pytest.approx(120.0)  # 400, 400, then 200 a minute later each
