"""``python -m reconcile serve`` as a process: configuration errors, serving, posting, stopping."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path

import httpx

import reconcile
from reconcile.fakes.moesif import FakeMoesif
from reconcile.fakes.stripe import FakeStripe
from tests.serve.conftest import MOESIF_TOKEN, SECRET, STRIPE_KEY, TOKEN


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _environment(tmp_path: Path, stripe_base: str, moesif_base: str) -> dict[str, str]:
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("STRIPE_", "MOESIF_", "RECONCILE_"))
    }
    # The code under test, not an installed copy (whose migrations may lag this tree's).
    environ["PYTHONPATH"] = os.pathsep.join(
        filter(
            None, [str(Path(reconcile.__file__).resolve().parents[1]), environ.get("PYTHONPATH")]
        )
    )
    environ.update(
        STRIPE_API_KEY=STRIPE_KEY,
        STRIPE_API_BASE=stripe_base,
        MOESIF_MANAGEMENT_TOKEN=MOESIF_TOKEN,
        MOESIF_API_BASE=moesif_base,
        RECONCILE_DATABASE_URL=f"sqlite:///{tmp_path / 'serve.db'}",
        STRIPE_WEBHOOK_SECRET=f"whsec_old,{SECRET}",
        RECONCILE_TOPUP_TOKEN=TOKEN,
        # The process runs the code under test, not an installed copy (cwd is tmp_path).
        PYTHONPATH=os.pathsep.join(
            [
                str(Path(__file__).resolve().parents[2]),
                *filter(None, [os.environ.get("PYTHONPATH")]),
            ]
        ),
    )
    return environ


def test_a_missing_credential_is_exit_2_with_one_line(tmp_path: Path) -> None:
    environ = _environment(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    del environ["RECONCILE_TOPUP_TOKEN"]
    done = subprocess.run(
        [sys.executable, "-m", "reconcile", "serve", "--port", str(_free_port())],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "reconcile: error: RECONCILE_TOPUP_TOKEN is required to serve /top-up (or --only webhook)"
    ]


def test_serve_credits_a_top_up_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    with FakeStripe(api_key=STRIPE_KEY) as fake, FakeMoesif(token=MOESIF_TOKEN) as moesif:
        moesif.add_subscription("sub_m1", "co_1")
        customer = fake.add_customer(
            metadata={"moesif_company_id": "co_1", "moesif_subscription_id": "sub_m1"}
        )
        fake.set_default_payment_method(customer, "pm_card_visa")
        port = _free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "reconcile", "serve", "--port", str(port)],
            env=_environment(tmp_path, fake.base_url, moesif.base_url),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_healthy(url, process)
            answer = httpx.post(
                f"{url}/top-up",
                json={"customer_id": customer, "amount": "12.34", "currency": "usd"},
                headers={"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "a"},
                timeout=30,
            )
            assert answer.status_code == 200
            fake.configure_webhook(f"{url}/webhooks/stripe", SECRET, duplicates=True)
            assert set(fake.deliver()) == {200}
            _wait_for(lambda: len(moesif.posts) >= 1, process)
        finally:
            process.send_signal(signal.SIGTERM)
            _out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        assert [(post["transaction_id"], post["amount"]) for post in moesif.posts] == [
            (answer.json()["payment_intent_id"], Decimal("12.34"))
        ]
        assert TOKEN not in err
        assert SECRET not in err


def _wait_until_healthy(url: str, process: subprocess.Popen[str]) -> None:
    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    _wait_for(healthy, process)


def _wait_for(condition: object, process: subprocess.Popen[str]) -> None:
    """Poll ``condition`` until true; fail if the process ends first (pytest-timeout bounds it)."""
    pause = threading.Event()
    while not condition():  # type: ignore[operator]
        assert process.poll() is None, process.communicate()[1]
        pause.wait(0.05)
