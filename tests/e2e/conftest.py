"""Fixtures for end-to-end runs: both fakes on loopback and an environment pointing at them."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconcile.domain.times import to_iso
from reconcile.fakes.moesif import FakeMoesif
from reconcile.fakes.stripe import FakeStripe

STRIPE_KEY = "sk_test_e2e_secret_key_1234"
MOESIF_TOKEN = "moesif-e2e-secret-token-5678"


@dataclass
class World:
    """The fakes, the time the history was seeded at, and where the run writes."""

    stripe: FakeStripe
    moesif: FakeMoesif
    now: datetime
    database_url: str
    report_dir: Path
    environment: dict[str, str]

    @property
    def since(self) -> str:
        return to_iso(self.now - timedelta(days=7))

    def reports(self) -> list[Path]:
        return sorted(self.report_dir.glob("drift-*.csv"), key=lambda path: path.stat().st_mtime)

    def report_rows(self, path: Path | None = None) -> list[dict[str, str]]:
        chosen = path or self.reports()[-1]
        with chosen.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    def posted_ids(self) -> list[str]:
        return [str(body["transaction_id"]) for body in self.moesif.posts]


@pytest.fixture
def world(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.chdir(tmp_path)
    report_dir = tmp_path / "reports"
    with FakeStripe(api_key=STRIPE_KEY) as stripe, FakeMoesif(token=MOESIF_TOKEN) as moesif:
        environment = {
            "STRIPE_API_KEY": STRIPE_KEY,
            "STRIPE_API_BASE": stripe.base_url,
            "MOESIF_MANAGEMENT_TOKEN": f"Bearer {MOESIF_TOKEN}",
            "MOESIF_API_BASE": moesif.base_url,
            "RECONCILE_DATABASE_URL": database_url,
            "RECONCILE_REPORT_DIR": str(report_dir),
            "STRIPE_MAX_REQUESTS_PER_SECOND": "1000",
            # Retries still happen, as often as in production, but no test waits on backoff.
            "RECONCILE_RETRY_BASE_DELAY": "0.001",
            "RECONCILE_STRIPE_REPORT_POLL_SECONDS": "0.001",
        }
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        yield World(
            stripe=stripe,
            moesif=moesif,
            now=datetime.now(UTC).replace(microsecond=0),
            database_url=database_url,
            report_dir=report_dir,
            environment=environment,
        )
