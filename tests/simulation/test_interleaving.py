"""Never grant twice, never grant wrong: webhooks, /top-up and nightly runs interleaved (issue 15).

Each example plays one generated history (``interleaving.py``) against a running ``serve`` app,
the fake Stripe and the fake Moesif on one database: webhook events delivered one to three
times in a drawn order, ``/top-up`` calls retried with their Idempotency-Key or the key reused
for another amount, refunds, payments the posting rule refuses, and nightly runs at drawn points
whose reads leave rows out or answer at the read cap. Then the worker is drained and the nightly
run repeated until it changes nothing. What Moesif applied must be exactly what the nightly
rules alone imply, each movement once; no row Moesif still holds is marked gone; a refused
top-up charged nothing.

CI runs the hand-made history and a few generated ones with a fixed seed, on SQLite and
PostgreSQL; ``--soak`` runs many with a random seed. The seed is printed with a replay line.
"""

from __future__ import annotations

import random
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import event as cover
from hypothesis import seed as hypothesis_seed

from tests.conftest import _empty_postgres
from tests.simulation.interleaving import (
    COVERED,
    Customer,
    History,
    Payment,
    Played,
    Stage,
    Step,
    applied,
    histories,
    nothing_held_is_gone,
    owed,
    play,
    rich_history,
    stage,
    stripe_payment_intents,
)

CI_SEED = 20261215
EXAMPLES = {("sqlite", False): 6, ("postgresql", False): 3, ("sqlite", True): 200}
EXAMPLES[("postgresql", True)] = 80
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _database(request: pytest.FixtureRequest, backend: str, directory: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{directory / 'snapshot.db'}"
    url: str = request.getfixturevalue("postgres_database")
    _empty_postgres(url)
    return url


def check_invariants(world: Stage, history: History, played: Played) -> None:
    """What Moesif holds is exactly what the nightly rules imply; nothing held is marked gone."""
    want, got = owed(history, played), applied(world.moesif)
    twice = {movement: count for movement, count in got.items() if count > 1}
    assert not twice, f"applied more than once: {twice}"
    assert got == want, f"Moesif applied {sorted(got - want)} too many, {sorted(want - got)} short"
    nothing_held_is_gone(world)
    charged = {played.ids[p.key] for p in history.payments if p.key in played.ids}
    unaccounted = stripe_payment_intents(world) - charged
    assert not unaccounted, f"PaymentIntents no step accounts for: {sorted(unaccounted)}"
    for payment in history.payments:
        answer = played.topups.get(payment.key)
        if answer is not None:
            assert answer.status_code == (200 if payment.allowed else 409), payment
    refused = any(
        (not p.allowed or p.legacy == "misapplied") and p.key in played.ids
        for p in history.payments
    )
    assert played.exits[-1] == (1 if refused else 0), played.exits


def _play_one(request: pytest.FixtureRequest, backend: str, history: History) -> Played:
    with tempfile.TemporaryDirectory(dir=request.getfixturevalue("tmp_path")) as scratch:
        directory = Path(scratch)
        with stage(_database(request, backend, directory), directory) as world:
            played = play(world, history)
            check_invariants(world, history, played)
    return played


@pytest.mark.parametrize("backend", BACKENDS)
def test_interleaved_webhooks_top_ups_and_nightly_runs_grant_each_movement_once(
    request: pytest.FixtureRequest, backend: str
) -> None:
    soak = bool(request.config.getoption("--soak"))
    chosen = request.config.getoption("hypothesis_seed", default=None)
    chosen_seed = int(chosen) if chosen else (random.randrange(2**32) if soak else CI_SEED)
    request.node.add_report_section(
        "call",
        "interleaving seed",
        f"seed {chosen_seed}: replay with pytest '{request.node.nodeid}' "
        f"--hypothesis-seed={chosen_seed}{' --soak' * soak}",
    )
    rich = rich_history()
    covered: Counter[str] = Counter()

    def check(history: History) -> None:
        played = _play_one(request, backend, history)
        for kind in sorted(played.covered):
            cover(kind)
        covered.update(played.covered | {"example"})
        if history is rich:
            assert played.covered >= set(COVERED), set(COVERED) - played.covered

    runner = settings(
        max_examples=EXAMPLES[(backend, soak)],
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if soak else []),
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )
    try:
        runner(hypothesis_seed(chosen_seed)(example(rich)(given(histories())(check))))()
    finally:
        request.node.add_report_section(
            "call",
            "interleaving coverage",
            ", ".join(f"{kind}: {count}" for kind, count in sorted(covered.items())),
        )


@pytest.mark.parametrize("legacy", ["held", "misapplied"])
def test_a_row_written_elsewhere_since_the_last_nightly_run_is_not_credited_again(
    request: pytest.FixtureRequest, legacy: str
) -> None:
    customer = Customer("c0", "ok", "usd")
    payment = Payment("p0", customer, "webhook", "usd", 1500, legacy=legacy)
    steps = (Step("create", "p0"), Step("deliver", "p0", "payment"), Step("drain"))
    _play_one(request, "sqlite", History((customer,), (payment,), steps))
