"""``reconcile serve``: build settings and clients, wire the posting step, run uvicorn."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import uvicorn
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette

from reconcile.clients import live_limiter, posting_engine
from reconcile.config import Settings, serve_settings
from reconcile.config import environment as config_environment
from reconcile.db.engine import make_engine, upgrade_to_head
from reconcile.domain.values import Entry
from reconcile.errors import ExitCode, ReconcileError
from reconcile.moesif.client import MoesifClient, open_http_client
from reconcile.posting.outcome import Outcome
from reconcile.serve.app import ServeParts, check_credentials, create_app
from reconcile.serve.destinations import Destinations
from reconcile.serve.limits import server_config
from reconcile.serve.worker import PostOrder
from reconcile.stripe.client import build_stripe_client

log = logging.getLogger("reconcile")

ConsolePage = Callable[
    [Mapping[str, str], Path, sessionmaker[Session], Callable[[], datetime]], Starlette
]
"""Builds the review page from the environment, the report folder, the sessions and the clock.

The command line passes it in, so that the server does not import the operator's tools.
"""


def parser(parser_class: type[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Return the parser of ``reconcile serve``."""
    parsed = parser_class(
        prog="reconcile serve",
        description="Serve the Stripe webhook and the /top-up API, posting through the "
        "exactly-once engine. Exit codes: 0 stopped, 2 configuration error, 3 failed.",
    )
    parsed.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parsed.add_argument("--port", type=int, default=4242, help="port to listen on")
    parsed.add_argument(
        "--only", choices=("webhook", "top-up"), help="serve only one endpoint (and /healthz)"
    )
    parsed.add_argument("--log-format", choices=("text", "json"), help="log line format")
    parsed.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    return parsed


def serve(namespace: argparse.Namespace, console: ConsolePage | None = None) -> int:
    """Serve until SIGINT or SIGTERM, with ``console`` mounted at ``/``; return the exit code.

    Raises:
        ReconcileError: configuration, database or credentials problems (one line each).
    """
    from reconcile.observability import configure_logging

    values = config_environment()
    settings = Settings.from_env(values, dotenv=None)
    extra = serve_settings(values)
    check_credentials(extra, namespace.only)
    configure_logging(
        logging.DEBUG if namespace.verbose else logging.INFO,
        "json" if (namespace.log_format or settings.log_format) == "json" else "text",
        settings.secret_values() + extra.secret_values(),
    )
    engine = make_engine(settings.database_url)
    upgrade_to_head(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    try:
        with posting_step(settings, sessions, _utc_now) as live:
            app = create_app(
                ServeParts(
                    settings=extra,
                    sessions=sessions,
                    stripe_client=build_stripe_client(settings),
                    post=live.post,
                    destinations=live.destinations,
                    clock=_utc_now,
                    only=namespace.only,
                    console=(
                        None
                        if console is None
                        else console(values, settings.report_dir, sessions, _utc_now)
                    ),
                )
            )
            config = server_config(app, namespace.host, namespace.port)
            log.info("serving on http://%s:%d", namespace.host, namespace.port)
            _run_until_stopped(uvicorn.Server(config))
    finally:
        engine.dispose()
    return ExitCode.OK


@contextlib.contextmanager
def posting_step(
    settings: Settings, sessions: sessionmaker[Session], clock: Callable[[], datetime]
) -> Iterator[LiveSteps]:
    """Yield the posting step ``serve`` uses and the posting rule it asks first.

    The exactly-once posting engine the nightly run uses, with this process's own Moesif client,
    kept to what the batch job's share leaves of Moesif's budget; the same client reads what
    the rule needs of Moesif.
    """
    with open_http_client(settings) as http:
        moesif = MoesifClient(
            http,
            settings.moesif_token,
            policy=settings.retry_policy(),
            limiter=live_limiter(settings),
            read_cap=settings.moesif_read_cap,
        )
        engine = posting_engine(sessions, moesif, settings, clock)

        def post(order: Entry, origin: str) -> Outcome:
            return engine.post(order, origin=origin)

        yield LiveSteps(post, Destinations(sessions, moesif, clock))


class LiveSteps(NamedTuple):
    """What ``serve`` posts with: the posting step, and the rule it asks before posting."""

    post: PostOrder
    destinations: Destinations


class _Stopped(Exception):
    """SIGTERM arrived; the server has already finished what was in flight."""


def _raise_stopped(_signum: int, _frame: object) -> None:
    raise _Stopped


def _run_until_stopped(server: uvicorn.Server) -> None:
    """Run until SIGINT or SIGTERM; uvicorn finishes requests, the worker its posting, first."""
    previous = signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        server.run()
    except (_Stopped, KeyboardInterrupt):
        log.info("stopped")
    finally:
        signal.signal(signal.SIGTERM, previous)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def main(
    args: Sequence[str],
    parser_class: type[argparse.ArgumentParser],
    console: ConsolePage | None = None,
) -> int:
    """Parse ``args`` and serve; a problem is one line on stderr and its exit code."""
    namespace = parser(parser_class).parse_args(list(args))
    try:
        return serve(namespace, console)
    except ReconcileError as failure:
        import sys

        print(f"reconcile: error: {' '.join(str(failure).split())}", file=sys.stderr)  # noqa: T201
        return int(failure.exit_code)
