"""``reconcile serve --only console``: the review page alone, and a weak token refused at start."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from reconcile.security_headers import SECURITY_HEADERS
from tests.operator.conftest import sign_in
from tests.serve.test_command import _environment, _free_port, _wait_until_healthy

CONSOLE_TOKEN = "console-only-token-0123456789-abcdef"


def _console_environment(tmp_path: Path) -> dict[str, str]:
    """No Stripe key, no Moesif token, no webhook secret, no top-up token: only the page's."""
    environ = _environment(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    for name in (
        "STRIPE_API_KEY",
        "MOESIF_MANAGEMENT_TOKEN",
        "STRIPE_WEBHOOK_SECRET",
        "RECONCILE_TOPUP_TOKEN",
    ):
        del environ[name]
    environ["RECONCILE_CONSOLE_TOKEN"] = CONSOLE_TOKEN
    return environ


def _serve(tmp_path: Path, environ: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "reconcile", "serve", "--port", str(_free_port()), *extra],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_console_alone_needs_no_webhook_secret_top_up_token_or_api_keys(
    tmp_path: Path,
) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "reconcile", "serve", "--only", "console", "--port", str(port)],
        env=_console_environment(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_healthy(url, process)
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.get("/findings").headers["location"] == "/login"
            assert sign_in(client, CONSOLE_TOKEN).status_code == 303
            assert client.get("/findings").status_code == 200
            for path in ("/webhooks/stripe", "/top-up"):
                refused = client.post(path, content=b"{}")
                assert refused.status_code in (404, 405)
                for name, value in SECURITY_HEADERS.items():
                    assert refused.headers[name] == value
            healthz = client.get("/healthz")
            assert healthz.json() == {"status": "ok"}
            assert healthz.headers["x-frame-options"] == "DENY"
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert CONSOLE_TOKEN not in err


@pytest.mark.parametrize(
    ("token", "only", "line"),
    [
        (
            "short-token",
            ("--only", "console"),
            "RECONCILE_CONSOLE_TOKEN must have at least 32 characters to serve the review page",
        ),
        (
            "",
            ("--only", "console"),
            "RECONCILE_CONSOLE_TOKEN is not set to serve the review page",
        ),
        (
            "thirty-one-characters-000000000",
            (),
            "RECONCILE_CONSOLE_TOKEN must have at least 32 characters to serve the review page",
        ),
    ],
)
def test_a_weak_console_token_is_refused_at_start_with_one_line(
    tmp_path: Path, token: str, only: tuple[str, ...], line: str
) -> None:
    environ = _console_environment(tmp_path)
    environ["RECONCILE_CONSOLE_TOKEN"] = token
    if not only:  # the full server has its own credentials; only the page's token is weak
        full = _environment(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
        environ = {**full, "RECONCILE_CONSOLE_TOKEN": token}
    done = _serve(tmp_path, environ, *only)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"reconcile: error: {line}"]
    if token:
        assert token not in done.stderr
    assert not (tmp_path / "serve.db").exists()  # refused before the database was touched


def test_without_a_console_token_the_full_server_still_starts_with_the_page_off(
    tmp_path: Path,
) -> None:
    environ = _environment(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    assert "RECONCILE_CONSOLE_TOKEN" not in environ
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "reconcile", "serve", "--only", "top-up", "--port", str(port)],
        env=environ,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_healthy(url, process)
        off = httpx.get(f"{url}/login", timeout=30)
        assert off.status_code == 404
        assert off.headers["content-security-policy"] == SECURITY_HEADERS["Content-Security-Policy"]
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert process.returncode == 0
