"""Stripe's own totals of a window: the Reporting API's balance summary, asked for and read.

A report run is created for ``balance_change_from_activity.summary.1`` over the window (cut to
the data Stripe has), polled until it succeeds, and its file downloaded with the same key. Stripe
refusing, failing or taking too long is an answer too: :class:`NoSummary` says why, and the run
goes on without the comparison.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import httpx
import stripe

from reconcile.domain.times import Window, from_unix
from reconcile.rules.control_totals import SUMMARY_REPORT
from reconcile.stripe.client import describe_stripe_error
from reconcile.tls import tls_context

POLL_SECONDS = 5.0
"""How long to wait between two looks at a report run still being computed."""

POLLS = 60
"""How many looks at a report run before giving up on it (five minutes at the pace above)."""

DOWNLOAD_TIMEOUT_SECONDS = 30.0

FILES_HOST = "files.stripe.com"
"""Where Stripe serves report files; the key is sent there and to the API's own host only."""


@dataclass(frozen=True)
class Summary:
    """Stripe's summary rows of ``window`` as its CSV has them, and whether the window was cut."""

    window: Window
    rows: tuple[dict[str, str], ...]
    cut: bool = False
    """Whether the window asked for ended after Stripe's data did, so it was cut to that end."""


@dataclass(frozen=True)
class NoSummary:
    """Why Stripe's summary could not be had."""

    reason: str


def balance_summary(
    client: stripe.StripeClient,
    api_key: str,
    window: Window,
    *,
    api_base: str,
    sleep: Callable[[float], None] = time.sleep,
    http: httpx.Client | None = None,
    poll_seconds: float = POLL_SECONDS,
    polls: int = POLLS,
) -> Summary | NoSummary:
    """Return Stripe's balance summary of ``window``, or why there is none.

    Args:
        client: the run's Stripe client.
        api_key: the key the file is downloaded with (the client's own).
        window: ``[since, until)``, cut to the report type's ``data_available_end``.
        api_base: the API's base URL; its host may serve files too (a Stripe-compatible server).
        sleep: how to wait between polls (tests inject a fake).
        http: the client to download the file with; one is opened when none is given.
        poll_seconds: the wait between polls.
        polls: how many polls before giving up.
    """
    try:
        kind = client.v1.reporting.report_types.retrieve(SUMMARY_REPORT)
        asked = _available(window, int(kind.data_available_start), int(kind.data_available_end))
        if asked is None:
            return NoSummary(f"Stripe has no {SUMMARY_REPORT} data for the window yet")
        run = client.v1.reporting.report_runs.create(
            params={
                "report_type": SUMMARY_REPORT,
                "parameters": {
                    "interval_start": _unix(asked.since),
                    "interval_end": _unix(asked.until),
                },
            }
        )
        for _ in range(polls):
            if run.status != "pending":
                break
            sleep(poll_seconds)
            run = client.v1.reporting.report_runs.retrieve(run.id)
        if run.status == "failed":
            return NoSummary(f"Stripe's report run {run.id} failed: {run.error or 'no reason'}")
        if run.status != "succeeded" or run.result is None or not run.result.url:
            return NoSummary(f"Stripe's report run {run.id} was not ready after {polls} polls")
        text = _download(str(run.result.url), api_key, api_base, http, _account_of(client))
    except stripe.StripeError as error:
        return NoSummary(describe_stripe_error(error))
    except (httpx.HTTPError, ValueError) as error:
        return NoSummary(f"Stripe's report file could not be read ({error})")
    rows = tuple(dict(row) for row in csv.DictReader(io.StringIO(text)))
    return Summary(asked, rows, cut=asked.until < window.until)


def _available(window: Window, start: int, end: int) -> Window | None:
    """Return the part of ``window`` Stripe has data for, or ``None`` when there is none."""
    since = max(window.since, from_unix(start))
    until = min(window.until, from_unix(end))
    return Window(since, until) if _unix(since) < _unix(until) else None


def _unix(moment: datetime) -> int:
    """Return the first whole Unix second at or after ``moment``, as the run's reads do."""
    return math.ceil(moment.timestamp())


def _account_of(client: stripe.StripeClient) -> str | None:
    """Return the connected account the client reads (its ``Stripe-Account``), if any."""
    account = getattr(getattr(client, "_requestor", None), "stripe_account", None)
    return account if isinstance(account, str) and account else None


def _download(
    url: str,
    api_key: str,
    api_base: str,
    http: httpx.Client | None,
    stripe_account: str | None = None,
) -> str:
    """Return a report file's text, sending the key only to Stripe's file or API host.

    A connected account's file is downloaded with its ``Stripe-Account`` header, as its report
    run was made.

    Raises:
        ValueError: the file lies elsewhere, or is not UTF-8 text.
        httpx.HTTPError: the download failed.
    """
    host = urlsplit(url).netloc
    if host not in (FILES_HOST, urlsplit(api_base).netloc):
        raise ValueError(f"the file lies on {host[:80]!r}, not on Stripe's file host")
    headers = {"Authorization": f"Bearer {api_key}"}
    if stripe_account is not None:
        headers["Stripe-Account"] = stripe_account
    if http is not None:
        answer = http.get(url, headers=headers, timeout=DOWNLOAD_TIMEOUT_SECONDS)
    else:
        with httpx.Client(verify=tls_context(), timeout=DOWNLOAD_TIMEOUT_SECONDS) as opened:
            answer = opened.get(url, headers=headers)
    answer.raise_for_status()
    return answer.content.decode("utf-8")
