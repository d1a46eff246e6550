"""The benchmark harness: ``python -m bench --quick`` prints one JSON line per benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconcile.fakes.stripe import FakeStripe
from tests.conftest import POSTGRES_ADMIN_URL

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"benchmark", "size", "seconds", "peak_mb", "yardstick", "yardstick_seconds", "ratio"}


def bench(*arguments: str) -> list[dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


SPREAD = {"samples", "seconds_min", "seconds_max"}
PAIRED = {"yardstick_seconds_min", "yardstick_seconds_max", "ratio_min", "ratio_max"}


def assert_spread(result: dict[str, object], samples: int) -> None:
    """The median lies within the samples' least and greatest, and so does each ratio."""
    assert result["samples"] == samples
    assert result["seconds_min"] <= result["seconds"] <= result["seconds_max"]  # type: ignore[operator]
    if result["yardstick_seconds"] is not None:
        assert PAIRED <= set(result)
        low, high = result["yardstick_seconds_min"], result["yardstick_seconds_max"]
        assert low <= result["yardstick_seconds"] <= high  # type: ignore[operator]
        assert result["ratio_min"] <= result["ratio_max"]  # type: ignore[operator]
        seconds, theirs = result["seconds"], result["yardstick_seconds"]
        ratio = seconds / theirs  # type: ignore[operator]
        # each side is rounded to 3 places: allow what that rounding can move the quotient by
        slack = ratio * (0.0005 / seconds + 0.0005 / theirs) + 0.0005  # type: ignore[operator]
        assert abs(result["ratio"] - ratio) <= slack  # type: ignore[operator]


def test_quick_match_runs_the_run_from_its_snapshot_to_its_report() -> None:
    (result,) = bench("match", "--samples", "2")
    assert KEYS | SPREAD <= set(result)
    assert_spread(result, 2)
    assert result["benchmark"] == "match"
    assert result["size"] == 2000
    assert result["yardstick"] == "datacompy"
    assert isinstance(result["seconds"], float)
    assert result["seconds"] > 0
    assert isinstance(result["peak_mb"], int)
    assert result["peak_mb"] > 0
    assert result["expected_rows"] == 2000
    assert isinstance(result["findings"], int)
    assert result["findings"] > 0
    # the run's own steps ran, each timed where the run calls it, and nothing was posted
    from bench.match import PHASES

    for phase in PHASES:
        assert isinstance(result[phase], float), phase
    for phase in ("load_seconds", "match_seconds", "lifecycle_seconds", "store_seconds"):
        assert result[phase] > 0, phase
    assert result["exit_code"] == 4  # the posting guardrail at 0: decided, not sent
    if result["yardstick_seconds"] is None:  # datacompy pins an older pandas: optional
        assert result["ratio"] is None
        assert "yardstick_note" in result
    else:
        assert result["yardstick_version"]
        assert result["match_ratio"] > 0


def test_match_refuses_a_run_that_reaches_moesif(tmp_path: Path) -> None:
    """A subscription currency the snapshot no longer holds fresh would be read from Moesif."""
    from sqlalchemy import create_engine, text

    from bench import data, match, snapshot

    url = f"sqlite:///{tmp_path / 'snapshot.db'}"
    snapshot.fill(url, *data.generate(200))
    result = match.ours(url, tmp_path)
    assert result["findings"] > 0
    assert result["currencies_seconds"] > 0
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE moesif_subscriptions SET fetched_at = '2026-01-01 00:00:00.000000'")
        )
    engine.dispose()
    with pytest.raises(match.Offline, match="GET"):
        match.ours(url, tmp_path)


def test_quick_ingest_reads_every_object_and_measures_the_httpx_floor() -> None:
    (result,) = bench("ingest", "--samples", "2")
    assert KEYS | SPREAD | PAIRED | {"objects_per_second"} <= set(result)
    assert_spread(result, 2)
    assert result["yardstick"] == "httpx"
    # 2,000 top-ups with their balance transactions, and a refund (with its own) for one in ten
    assert result["objects"] == 2000 * 2 + 200 * 2
    assert result["entries"] == 2000 + 200
    assert result["objects_per_second"] > 0
    ratio = result["seconds"] / result["yardstick_seconds"]
    assert abs(result["ratio"] - ratio) < 0.01 * ratio


def test_ingest_yardstick_reads_the_very_pages_the_run_reads() -> None:
    from bench import ingest  # noqa: PLC0415 - the benchmark's own module, not the harness

    def pages(read: Callable[[str], dict[str, Any]]) -> Counter[tuple[str, frozenset[object]]]:
        with FakeStripe(api_key=ingest.API_KEY, clock=lambda: ingest.WINDOW.until) as fake:
            ingest.seed(fake, 300)
            read(fake.base_url)
            return Counter(
                (request.path, frozenset(request.query.items())) for request in fake.requests
            )

    ours, theirs = pages(ingest.ours), pages(ingest.yardstick)
    assert ours == theirs
    expanded = {item for _, query in ours for item in query if str(item[0]).startswith("expand")}
    assert ("expand[0]", "data.customer") in expanded
    assert ("expand[1]", "data.payment_intent.customer") in expanded


def test_storing_stripes_read_imports_neither_pandas_nor_the_columnar_readers() -> None:
    # 90 MB of the ingest benchmark's process (it extracts and stores) were such imports.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from bench.__main__ import _part\n"
            "from bench.ingest import API_KEY, WINDOW, seed\n"
            "from reconcile.fakes.stripe import FakeStripe\n"
            "with FakeStripe(api_key=API_KEY, clock=lambda: WINDOW.until) as fake:\n"
            "    seed(fake, 20)\n"
            "    assert _part('ingest_ours', {'url': fake.base_url})['entries'] == 22\n"
            "print(sorted({'pandas', 'adbc_driver_manager'} & set(sys.modules)))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert done.stdout.strip() == "[]"


def test_quick_incremental_compares_a_long_history_with_a_short_one() -> None:
    (result,) = bench("incremental", "--samples", "3")
    assert KEYS | SPREAD | PAIRED <= set(result)
    assert_spread(result, 3)
    assert result["yardstick"] == "history 100"
    assert result["expected_rows"] > 0
    assert result["ledger_rows"] > 0
    assert isinstance(result["ratio"], float)


def test_quick_post_keeps_to_the_batch_share_with_a_webhook_stream_alongside() -> None:
    (result,) = bench("post")
    assert {"benchmark", "size", "seconds", "peak_mb", "limit_share", "share_429"} <= set(result)
    assert result["postings"] == 500
    assert result["webhook_events"] > 0
    assert result["requests"] == result["batch_requests"] + result["webhook_requests"]
    retried = result["batch_429"] + result["webhook_429"]
    # one read of Moesif before the batch's first send, one around each webhook posting
    assert result["first_reads"] == 1 + result["webhook_events"]
    posts = result["postings"] + result["webhook_events"]
    assert result["requests"] == posts + result["first_reads"] + retried
    assert 0 < result["limit_share"] <= 1
    assert result["busiest_minute"] <= 500
    # the two shares add up to Moesif's 500 a minute and each client keeps to its own
    assert result["share_429"] == 0
    assert result["webhook_share_429"] == 0
    assert result["webhook_latency_seconds"]["max"] >= 0


def test_post_counts_the_429s_when_the_shares_exceed_moesifs_limit() -> None:
    """The batch at all 500 a minute leaves the stream 1, over the limit: its request is refused."""
    from bench import post

    memory = Path("/dev/shm")  # the snapshot's commits would wait on the disk otherwise
    with tempfile.TemporaryDirectory(dir=memory if memory.is_dir() else None) as scratch:
        result = post.run(510, Path(scratch), batch_share=500, webhook_per_minute=60)
    assert result["webhook_events"] >= 1
    assert result["webhook_429"] >= 1
    assert result["webhook_share_429"] > 0
    assert result["busiest_minute"] == 500
    retried = result["batch_429"] + result["webhook_429"]
    assert result["first_reads"] == 1 + result["webhook_events"]
    assert result["requests"] == 510 + result["webhook_events"] + result["first_reads"] + retried


def test_quick_balances_asks_moesif_only_for_the_quiet_and_new_subscriptions() -> None:
    (result,) = bench("balances", "--samples", "1")
    assert KEYS | SPREAD <= set(result)
    assert_spread(result, 1)
    assert (result["benchmark"], result["size"], result["rows"]) == ("balances", 2000, 2000)
    # 1% without a Moesif row and 2% quiet since before the last run: 60 of 2,000 asked.
    assert result["moesif_requests"] == 60
    assert result["wait_seconds"] == 0  # within the first minute's share of 400
    assert result["yardstick_moesif_requests"] == 2000  # one per subscription, as before
    assert result["yardstick_wait_seconds"] == pytest.approx(240, abs=1)  # 400 a minute
    assert result["requests_429"] == result["yardstick_requests_429"] == 0
    assert result["busiest_minute"] <= 400


def test_checks_time_the_balance_chains_and_the_control_totals_over_every_row() -> None:
    from bench import checks

    chained = checks.chains(300)
    assert (chained["rows_checked"], chained["subscriptions"]) == (300, 30)
    assert chained["reported_compared"] == 30  # every kept balance compared, none broken
    assert chained["breaks"] == 0
    totals = checks.totals(300)
    assert (totals["gaps"], totals["mismatches"]) == (0, 0)
    assert totals["seconds"] >= totals["counterparts_seconds"] >= 0


# --- scale: connected accounts over worker processes ------------------------------------------


def _scale_sample(workers: int, seconds: float, peak: int, **extra: object) -> dict[str, object]:
    return {
        "accounts": 200,
        "workers": workers,
        "seconds": seconds,
        "moesif_peak_per_minute": peak,
        "moesif_requests": 440,
        "posted": 20,
        "exit_code": 0,
        "stripe_latency": 0.05,
        "load_average": "1.00",
        **extra,
    }


def test_scale_measures_the_worker_counts_round_after_round() -> None:
    from bench.scale import rounds

    assert rounds([1, 2, 4], 3) == [[1, 2, 4], [1, 2, 4], [1, 2, 4]]
    assert rounds([4], 2) == [[4], [4]]


def test_scale_starts_a_round_only_if_one_as_long_as_the_longest_ends_in_time() -> None:
    from datetime import UTC, datetime, timedelta

    from bench.scale import another_round_fits

    now = datetime(2026, 12, 3, 8, 45, tzinfo=UTC)
    stop_by = datetime(2026, 12, 3, 9, 10, tzinfo=UTC)
    assert another_round_fits(now, timedelta(minutes=25), stop_by)
    assert not another_round_fits(now, timedelta(minutes=25, seconds=1), stop_by)
    assert another_round_fits(now, timedelta(0), stop_by)  # the first round always runs


def test_scale_reports_the_median_the_spread_and_the_busiest_minute_of_any_sample() -> None:
    from bench.scale import summarized, table

    taken = {
        1: [_scale_sample(1, s, p) for s, p in ((240.0, 120), (230.0, 130), (250.0, 110))],
        4: [_scale_sample(4, s, p) for s, p in ((130.0, 230), (120.0, 240), (125.0, 220))],
    }
    one, four = summarized(taken)

    assert (one["workers"], one["samples"], one["seconds"]) == (1, 3, 240.0)
    assert (one["seconds_min"], one["seconds_max"]) == (230.0, 250.0)
    assert one["seconds_each"] == [240.0, 230.0, 250.0]
    assert (four["seconds"], four["moesif_peak_per_minute"]) == (125.0, 240)
    assert (four["moesif_requests"], four["posted"], four["same_work"], four["ok"]) == (
        440,
        20,
        True,
        True,
    )
    assert "240.0 [230.0-250.0]" in table([one, four])


def test_scale_flags_samples_that_did_not_do_the_same_work_or_failed() -> None:
    from bench.scale import summarized

    uneven = {
        1: [_scale_sample(1, 240.0, 120), _scale_sample(1, 230.0, 120, posted=19)],
        2: [_scale_sample(2, 160.0, 150), _scale_sample(2, 170.0, 150)],
    }
    one, two = summarized(uneven)
    assert (one["same_work"], one["ok"], one["posted"]) == (False, False, [20, 19])
    assert (two["same_work"], two["ok"], two["posted"]) == (False, False, [20, 20])

    failed = {1: [_scale_sample(1, 240.0, 120), _scale_sample(1, 230.0, 120, exit_code=3)]}
    [only] = summarized(failed)
    assert (only["same_work"], only["ok"], only["exit_code"]) == (True, False, 3)


@pytest.mark.postgres
@pytest.mark.usefixtures("postgres_database")  # skips where PostgreSQL does not answer
def test_quick_scale_spreads_a_few_accounts_over_each_worker_count() -> None:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "bench", "scale", "--accounts", "2", "--stripe-latency", "0"),
            *("--workers", "1", "2", "--samples", "1", "--database", POSTGRES_ADMIN_URL),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [result["workers"] for result in results] == [1, 2]
    for result in results:
        assert result["samples"] == len(result["seconds_each"]) == 1
        assert result["seconds_min"] == result["seconds"] == result["seconds_max"] > 0
        assert (result["benchmark"], result["accounts"], result["exit_code"]) == ("scale", 2, 0)
        assert (result["posted"], result["same_work"]) == (1, True)  # account 0 misses a credit
        assert 0 < result["moesif_peak_per_minute"] <= 400
    order = [line.split()[3] for line in done.stderr.splitlines() if "scale round" in line]
    assert order == ["1", "2"]  # the interleaving of more rounds: the test of rounds()
