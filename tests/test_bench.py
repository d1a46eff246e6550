"""The benchmark harness: ``python -m bench --quick`` prints one JSON line per benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


def test_quick_match_prints_its_figures_and_a_yardstick() -> None:
    (result,) = bench("match")
    assert KEYS <= set(result)
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
    if result["yardstick_seconds"] is None:  # datacompy pins an older pandas: optional
        assert result["ratio"] is None
        assert "yardstick_note" in result
    else:
        ratio = result["seconds"] / result["yardstick_seconds"]
        assert abs(result["ratio"] - ratio) < 0.01 * ratio  # both sides rounded to 3 places


def test_quick_ingest_reads_every_object_and_measures_the_httpx_floor() -> None:
    (result,) = bench("ingest")
    assert KEYS | {"objects_per_second"} <= set(result)
    assert result["yardstick"] == "httpx"
    # 2,000 top-ups with their balance transactions, and a refund (with its own) for one in ten
    assert result["objects"] == 2000 * 2 + 200 * 2
    assert result["entries"] == 2000 + 200
    assert result["objects_per_second"] > 0
    ratio = result["seconds"] / result["yardstick_seconds"]
    assert abs(result["ratio"] - ratio) < 0.01 * ratio


def test_quick_incremental_compares_a_long_history_with_a_short_one() -> None:
    (result,) = bench("incremental")
    assert KEYS <= set(result)
    assert result["yardstick"] == "history 100"
    assert result["expected_rows"] > 0
    assert result["ledger_rows"] > 0
    assert isinstance(result["ratio"], float)


def test_quick_post_keeps_to_the_batch_share_with_a_webhook_alongside() -> None:
    (result,) = bench("post")
    assert {"benchmark", "size", "seconds", "peak_mb", "limit_share", "share_429"} <= set(result)
    assert result["postings"] == 500
    assert result["requests"] == result["postings"] + result["webhook_requests"]
    assert result["webhook_requests"] > 0
    assert 0 < result["limit_share"] <= 1
    assert result["share_429"] == 0
    assert result["webhook_share_429"] == 0
