from __future__ import annotations

import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconcile.domain.times import Window
from reconcile.domain.vocab import Category
from reconcile.errors import ExitCode
from reconcile.metrics import write_metrics
from reconcile.rules.miss_rate import Day, MissRate
from reconcile.run import RunOutcome

NIGHT = datetime(2026, 11, 1, 2, tzinfo=UTC)


def parse(text: str) -> dict[str, float]:
    """A tiny Prometheus text parser: every sample must belong to a family with HELP and TYPE."""
    helps: set[str] = set()
    types: dict[str, str] = {}
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind in ("gauge", "counter")
            types[name] = kind
        else:
            key, value = line.rsplit(" ", 1)
            family = key.split("{", 1)[0]
            assert family in helps, f"{family} has no HELP"
            assert family in types, f"{family} has no TYPE"
            if "{" in key:
                assert key.endswith('"}')
            samples[key] = float(value)
    return samples


def outcome(exit_code: ExitCode = ExitCode.DRIFT, posted: int = 2, failed: int = 1) -> RunOutcome:
    return RunOutcome(
        run_id="r1",
        exit_code=exit_code,
        window=Window(NIGHT - timedelta(days=3), NIGHT),
        started_at=NIGHT,
        finished_at=NIGHT + timedelta(seconds=42.5),
        counts={"missing_in_moesif": 3, "duplicate_in_moesif": 1},
        posted=posted,
        post_failed=failed,
    )


def test_a_completed_run_writes_every_metric(tmp_path: Path) -> None:
    path = tmp_path / "reconcile.prom"
    finished = NIGHT + timedelta(seconds=43)
    write_metrics(path, outcome(), now=finished)
    samples = parse(path.read_text())
    assert samples["reconcile_last_run_timestamp_seconds"] == finished.timestamp()
    assert samples["reconcile_last_success_timestamp_seconds"] == finished.timestamp()
    assert samples["reconcile_last_exit_code"] == 1
    assert samples['reconcile_findings{category="missing_in_moesif"}'] == 3
    assert samples['reconcile_findings{category="duplicate_in_moesif"}'] == 1
    for category in Category:
        assert f'reconcile_findings{{category="{category.value}"}}' in samples
    assert samples['reconcile_findings{category="missing_in_stripe"}'] == 0
    assert samples['reconcile_postings_total{outcome="posted"}'] == 2
    assert samples['reconcile_postings_total{outcome="failed"}'] == 1
    assert samples["reconcile_run_duration_seconds"] == 42.5
    assert "# TYPE reconcile_postings_total counter" in path.read_text()


def test_a_failed_run_keeps_the_last_success_and_findings(tmp_path: Path) -> None:
    path = tmp_path / "reconcile.prom"
    write_metrics(path, outcome(), now=NIGHT)
    next_night = NIGHT + timedelta(days=1)
    write_metrics(
        path,
        None,
        failed_exit_code=int(ExitCode.FAILED),
        now=next_night + timedelta(minutes=5),
        started_at=next_night,
    )
    samples = parse(path.read_text())
    assert samples["reconcile_last_success_timestamp_seconds"] == NIGHT.timestamp()
    assert (
        samples["reconcile_last_run_timestamp_seconds"]
        == (next_night + timedelta(minutes=5)).timestamp()
    )
    assert samples["reconcile_last_exit_code"] == 3
    assert samples['reconcile_findings{category="missing_in_moesif"}'] == 3
    assert samples['reconcile_postings_total{outcome="posted"}'] == 2
    assert samples["reconcile_run_duration_seconds"] == 300


def test_a_guardrail_outcome_is_not_a_success(tmp_path: Path) -> None:
    path = tmp_path / "reconcile.prom"
    write_metrics(path, outcome(ExitCode.GUARDRAIL, posted=0, failed=0), now=NIGHT)
    samples = parse(path.read_text())
    assert samples["reconcile_last_exit_code"] == 4
    assert samples["reconcile_last_success_timestamp_seconds"] == 0


def test_a_completed_run_with_unknown_postings_is_not_a_success(tmp_path: Path) -> None:
    path = tmp_path / "m.prom"
    write_metrics(path, outcome(), now=NIGHT)
    write_metrics(path, outcome(ExitCode.FAILED, posted=0, failed=2), now=NIGHT + timedelta(days=1))
    samples = parse(path.read_text())
    assert samples["reconcile_last_exit_code"] == 3
    assert samples["reconcile_last_success_timestamp_seconds"] == NIGHT.timestamp()


def test_first_run_failing_reports_no_success_and_no_duration(tmp_path: Path) -> None:
    path = tmp_path / "reconcile.prom"
    write_metrics(path, None, failed_exit_code=int(ExitCode.LOCKED), now=NIGHT)
    samples = parse(path.read_text())
    assert samples["reconcile_last_exit_code"] == 75
    assert samples["reconcile_last_success_timestamp_seconds"] == 0
    assert samples['reconcile_findings{category="amount_mismatch"}'] == 0
    assert "reconcile_run_duration_seconds" not in samples


def test_postings_counter_accumulates_across_runs(tmp_path: Path) -> None:
    path = tmp_path / "reconcile.prom"
    write_metrics(path, outcome(posted=2, failed=1), now=NIGHT)
    write_metrics(path, outcome(ExitCode.OK, posted=5, failed=0), now=NIGHT + timedelta(days=1))
    samples = parse(path.read_text())
    assert samples['reconcile_postings_total{outcome="posted"}'] == 7
    assert samples['reconcile_postings_total{outcome="failed"}'] == 1


def test_file_is_replaced_atomically_and_readable(tmp_path: Path) -> None:
    path = tmp_path / "textfile" / "reconcile.prom"
    write_metrics(path, outcome(), now=NIGHT)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["reconcile.prom"]


def test_a_failed_write_is_a_warning_and_leaves_no_temporary_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "reconcile.prom"
    path.mkdir()  # renaming a file over a directory fails
    assert write_metrics(path, outcome(), now=NIGHT) is False
    assert [p.name for p in tmp_path.iterdir()] == ["reconcile.prom"]
    assert "could not write the metrics file" in caplog.text


def test_an_unwritable_place_is_a_warning_not_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where a directory belongs")
    assert write_metrics(blocker / "reconcile.prom", None, now=NIGHT) is False
    assert caplog.records[-1].levelname == "WARNING"


def test_a_previous_file_that_is_not_text_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "reconcile.prom"
    path.write_bytes(b"\xff\xfe\x00 not utf-8")
    assert write_metrics(path, outcome(), now=NIGHT) is True
    assert "reconcile_last_exit_code" in path.read_text()


def test_the_live_path_miss_rate_is_a_gauge_a_failed_run_carries_over(tmp_path: Path) -> None:
    path = tmp_path / "reconcile.prom"
    days = (Day(NIGHT.date(), 1, 4),)
    write_metrics(path, replace(outcome(), miss_rate=MissRate(days)), now=NIGHT)
    assert parse(path.read_text())["reconcile_live_path_miss_rate"] == 0.25
    assert "# TYPE reconcile_live_path_miss_rate gauge" in path.read_text()

    write_metrics(path, None, failed_exit_code=3, now=NIGHT + timedelta(days=1))
    assert parse(path.read_text())["reconcile_live_path_miss_rate"] == 0.25

    write_metrics(path, replace(outcome(), miss_rate=MissRate(())), now=NIGHT)
    assert "reconcile_live_path_miss_rate" not in parse(path.read_text())
