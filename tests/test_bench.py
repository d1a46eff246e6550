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


def test_benchmarks_not_built_yet_say_so() -> None:
    results = bench("ingest", "incremental", "post")
    assert [result["benchmark"] for result in results] == ["ingest", "incremental", "post"]
    assert all(result["status"] == "not yet" for result in results)
