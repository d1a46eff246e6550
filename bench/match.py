"""The ``match`` benchmark: a run from its snapshot to its report, against datacompy's comparison.

Ours (``ours``) calls the run itself, :func:`reconcile.run.execute`, over a filled snapshot with
only its two reading steps stood in for: ``read_stripe`` and ``sync_moesif`` (which read
Stripe and Moesif into the snapshot) do nothing, as if the snapshot were already up to date.
Everything else is the run's own code, in its order: the schema check and the run lock, the
run's row, the open findings of earlier runs, loading both frames, the subscription currencies
(from the snapshot, no Moesif read), ``matching.match``, the posting decisions (the posting
guardrail is set to 0, so nothing is sent: posting is the ``post`` benchmark), finding ids,
redaction, the findings lifecycle, the CSV report, storing the findings and ending the run's
row. The clients are offline: a request to Stripe or Moesif fails the benchmark.

Each step is timed by wrapping the run's own step functions (:data:`PHASES`); ``other`` is
the rest (schema check, lock, the run's row, joining frames, concluding).

The yardstick (``yardstick``), in its own process: the same two frames read by the run's
``frames_of``, then ``datacompy.PandasCompare`` of them joined on ``transaction_id`` (the
comparison only; the read is not counted, so the ratio is conservative for us).
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import wraps
from importlib import import_module
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pandas as pd
from sqlalchemy import delete
from sqlalchemy.orm import sessionmaker

from bench.data import MATCH_WINDOW, WINDOW
from bench.snapshot import SEEDED_AT
from reconcile.clients import Clients
from reconcile.config import Secret, Settings
from reconcile.db.engine import make_engine
from reconcile.db.models import Finding, FindingNote, FindingState, Posting, Run
from reconcile.domain.times import Window
from reconcile.ledger_sync import SyncResult
from reconcile.moesif.client import MoesifClient
from reconcile.request import RunRequest
from reconcile.run import execute
from reconcile.steps import snapshot
from reconcile.stripe.client import build_stripe_client

YARDSTICK = "datacompy"
STRIPE_KEY = "sk_test_bench_offline"
MOESIF_TOKEN = "bench-offline-token"
RUN_AT = SEEDED_AT + timedelta(hours=1)
"""When the benchmark's run starts: just after the snapshot was filled, so the subscription
currencies it holds are fresh and none is read from Moesif."""

PHASES = {
    "open_findings_seconds": ("reconcile.steps.lifecycle", "open_before"),
    "load_seconds": ("reconcile.steps.snapshot", "frames_of"),
    "currencies_seconds": ("reconcile.steps.snapshot", "subscriptions_paid_into"),
    "match_seconds": ("reconcile.matching", "match"),
    "decide_seconds": ("reconcile.steps.sending", "post_missing"),
    "redaction_seconds": ("reconcile.frames", "redacted"),
    "finding_ids_seconds": ("reconcile.steps.lifecycle", "with_ids"),
    "lifecycle_seconds": ("reconcile.steps.lifecycle", "settle"),
    "report_seconds": ("reconcile.report", "write_report"),
    "store_seconds": ("reconcile.steps.ending", "store_findings"),
}
"""Each timed step: the module attribute the run calls it through. None of them calls another."""


class Offline(Exception):
    """The benchmark's run tried to reach Stripe or Moesif."""


def ours(url: str, report_dir: Path, window: Window = WINDOW) -> dict[str, Any]:
    """Run the run over ``window`` once, from the snapshot to the report; return its times."""
    reset(url)
    settings = Settings(
        stripe_api_key=Secret(STRIPE_KEY),
        moesif_token=Secret(MOESIF_TOKEN),
        stripe_api_base="http://127.0.0.1:9",
        moesif_api_base="http://127.0.0.1:9/v1",
        database_url=url,
        report_dir=report_dir,
        match_window=MATCH_WINDOW,
        max_postings=0,
        retry_attempts=1,
    )
    phases: dict[str, float] = defaultdict(float)
    sizes: list[int] = []
    with _offline_clients(settings) as clients, _timed(phases, sizes), _snapshot_as_is():
        began = time.perf_counter()
        outcome = execute(
            settings,
            RunRequest(since=window.since, until=window.until, report_dir=report_dir),
            clients,
            now=RUN_AT,
        )
        seconds = time.perf_counter() - began
    assert outcome.report_path is not None
    expected_rows, ledger_rows = sizes
    return {
        "seconds": seconds,
        **{name: phases[name] for name in PHASES},
        "other_seconds": seconds - sum(phases.values()),
        "expected_rows": expected_rows,
        "ledger_rows": ledger_rows,
        "findings": sum(outcome.counts.values()),
        "report_bytes": outcome.report_path.stat().st_size,
        "exit_code": int(outcome.exit_code),
    }


def yardstick(url: str) -> dict[str, Any]:
    """Time datacompy's plain comparison of the same two frames; note it when not installed."""
    try:
        import datacompy  # noqa: PLC0415 - optional: it pins an older pandas than ours
    except ImportError as error:
        return {"seconds": None, "note": f"datacompy cannot be imported: {error}"}
    expected, ledger = load(url)
    began = time.perf_counter()
    comparison = datacompy.PandasCompare(expected, ledger, join_columns=["transaction_id"])
    matches = comparison.matches()
    return {
        "seconds": time.perf_counter() - began,
        "matches": bool(matches),
        "intersect_rows": len(comparison.intersect_rows),
        "version": datacompy.__version__,
    }


def load(url: str, window: Window = WINDOW) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the widened window's expected entries and ledger rows with the run's ``frames_of``."""
    engine = make_engine(url)
    try:
        sessions = sessionmaker(engine, expire_on_commit=False)
        with _offline_clients(_offline_settings(url)) as clients:
            loaded = snapshot.frames_of(
                sessions,
                clients.stripe,
                window.widened(MATCH_WINDOW),
                (),
                run_id="bench",
                now=RUN_AT,
            )
    finally:
        engine.dispose()
    if loaded.unreadable:
        raise Offline("the benchmark's snapshot held a movement the run could not read")
    return loaded.expected, loaded.ledger


def reset(url: str) -> None:
    """Remove what an earlier run left (its row, findings, states), so each sample starts alike."""
    engine = make_engine(url)
    try:
        with sessionmaker(engine).begin() as session:
            for table in (FindingNote, Finding, FindingState, Posting, Run):
                session.execute(delete(table))
    finally:
        engine.dispose()


def _offline_settings(url: str) -> Settings:
    return Settings(
        stripe_api_key=Secret(STRIPE_KEY),
        moesif_token=Secret(MOESIF_TOKEN),
        stripe_api_base="http://127.0.0.1:9",
        database_url=url,
        retry_attempts=1,
    )


@contextlib.contextmanager
def _offline_clients(settings: Settings) -> Iterator[Clients]:
    """Yield the run's own client types, each failing the benchmark on any request."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise Offline(f"the benchmark's run reached {request.method} {request.url}")

    def no_sleep(seconds: float) -> None:
        raise Offline(f"the benchmark's run waited {seconds:.1f} s for Stripe or Moesif")

    with httpx.Client(
        base_url=settings.moesif_api_base, transport=httpx.MockTransport(refuse)
    ) as http:
        moesif = MoesifClient(http, settings.moesif_token, sleep=no_sleep)
        stripe_client = build_stripe_client(settings, sleep=no_sleep)
        yield Clients(stripe_client, moesif, clock=lambda: RUN_AT, sleep=no_sleep)


@contextlib.contextmanager
def _snapshot_as_is() -> Iterator[None]:
    """Stand in for the run's two reading steps: the snapshot is taken as already up to date."""

    def read_stripe(*_args: object, **_kwargs: object) -> snapshot.StripeRead:
        return snapshot.StripeRead(pending_since=None)

    def sync_moesif(*_args: object, **_kwargs: object) -> SyncResult:
        return SyncResult(rows_seen=0, rows_new=0, rows_updated=0)

    with (
        mock.patch.object(snapshot, "read_stripe", read_stripe),
        mock.patch.object(snapshot, "sync_moesif", sync_moesif),
    ):
        yield


@contextlib.contextmanager
def _timed(phases: dict[str, float], sizes: list[int]) -> Iterator[None]:
    """Wrap each step of :data:`PHASES` where the run calls it, adding its time to ``phases``.

    ``sizes`` gets the lengths of the two frames the run loaded.
    """

    def loaded(frames: snapshot.Frames) -> None:
        sizes[:] = [len(frames.expected), len(frames.ledger)]

    with contextlib.ExitStack() as stack:
        for name, (module, attribute) in PHASES.items():
            target = import_module(module)
            observe = loaded if name == "load_seconds" else None
            step = _clocked(getattr(target, attribute), name, phases, observe)
            stack.enter_context(mock.patch.object(target, attribute, step))
        yield


def _clocked(
    step: Callable[..., Any],
    name: str,
    phases: dict[str, float],
    observe: Callable[[Any], None] | None = None,
) -> Callable[..., Any]:
    @wraps(step)
    def clocked(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            answer = step(*args, **kwargs)
            if observe is not None:
                observe(answer)
            return answer
        finally:
            phases[name] += time.perf_counter() - began

    return clocked
