"""``python -m bench.live`` measures what it says: every event credited once, numbers present."""

from __future__ import annotations

from pathlib import Path

from bench.live import measure
from reconcile.fakes.moesif import FakeMoesif
from reconcile.fakes.stripe import FakeStripe


def test_the_live_bench_credits_each_event_once_and_reports_rate_and_latency(
    tmp_path: Path,
) -> None:
    with FakeStripe(api_key="sk_test_bench") as stripe, FakeMoesif(token="bench-token") as moesif:
        found = measure(stripe, moesif, f"sqlite:///{tmp_path / 'live.db'}", 6, 3)
    assert found["credited"] == 6
    assert found["moesif_posts"] == 6
    assert found["deliveries"] == 12
    assert isinstance(found["events_per_second"], float)
    assert found["events_per_second"] > 0
    latency = found["latency_ms"]
    assert isinstance(latency, dict)
    assert 0 < latency["median"] <= latency["p95"]
