"""The one Stripe client of a run: pinned API version, paced requests, explicit retries."""

from __future__ import annotations

import json
import logging
import math
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import stripe

from reconcile.config import DEFAULT_STRIPE_API_VERSION, Settings
from reconcile.errors import CredentialsRejected, StripeUnavailable
from reconcile.retry import (
    TIMEOUT,
    Deadline,
    RateLimiter,
    RetryPolicy,
    jittered,
    retry_delay,
)

logger = logging.getLogger(__name__)

MAX_NETWORK_RETRIES = 4
"""Retries after the first attempt of every Stripe request (the SDK's ``max_network_retries``)."""

STRIPE_RETRY_POLICY = RetryPolicy(
    max_attempts=MAX_NETWORK_RETRIES + 1,
    base_delay=0.5,
    max_delay=20.0,
    retry_statuses=frozenset({409, 429, 500, 502, 503, 504}),
)
"""Which Stripe answers are worth another attempt, and how long to wait between attempts."""

REQUEST_TIMEOUT_SECONDS = 30.0
"""How long one Stripe request may take; with retries, at most about 2.5 minutes per call."""

_KEY_PATTERN = re.compile(r"\b(?:sk|rk|pk)_(?:test|live)_[A-Za-z0-9*]+")

Response = tuple[Any, int, Mapping[str, str]]


def stripe_retry_delay(
    policy: RetryPolicy, status: int | None, headers: Mapping[str, str], attempt: int
) -> float | None:
    """Return seconds to wait before retrying a Stripe answer, or ``None`` to stop.

    Stripe's ``Stripe-Should-Retry`` header overrides the status: ``false`` never retries,
    ``true`` retries any status. Otherwise ``policy`` decides (429, 409 and 5xx are transient).

    Args:
        policy: the limits and the transient statuses.
        status: the HTTP status, or ``None`` when there was no answer (timeout, lost connection).
        headers: the answer's headers.
        attempt: how many attempts have been made so far, from 1.
    """
    advice = next((v for k, v in headers.items() if k.lower() == "stripe-should-retry"), None)
    if advice is not None and advice.strip().lower() == "false":
        return None
    if advice is not None and advice.strip().lower() == "true" and status is not None:
        policy = replace(policy, retry_statuses=policy.retry_statuses | {status})
    return retry_delay(policy, status, headers, attempt)


def rate_limiter(
    requests_per_second: float, sleep: Callable[[float], None] = time.sleep
) -> RateLimiter:
    """Return a limiter that allows ``requests_per_second`` on average, fractions included."""
    limit = max(1, math.floor(requests_per_second))
    return RateLimiter(limit, limit / requests_per_second, sleep=sleep)


class PacedHTTPClient(stripe.RequestsClient):
    """The SDK's default ``requests`` transport, paced by a rate limit and retried by our policy.

    The SDK calls :meth:`request_with_retries` for every request; this class replaces the SDK's
    own retry loop so that one policy decides (:func:`stripe_retry_delay`, including 429, which
    the SDK would not retry) and every wait goes through the injected ``sleep``.
    """

    def __init__(
        self,
        limiter: RateLimiter,
        *,
        policy: RetryPolicy = STRIPE_RETRY_POLICY,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        timeout: float = REQUEST_TIMEOUT_SECONDS,
        deadline: Deadline | None = None,
    ) -> None:
        """Wrap a ``requests`` transport with ``limiter`` before each attempt.

        ``deadline`` is checked before every attempt and every wait (``sleep`` refuses waits
        past it), and no request may outlast it.
        """
        super().__init__(timeout=timeout)
        self._deadline = deadline or Deadline.never()
        self._request_timeout = timeout
        self._limiter = limiter
        self._policy = policy
        self._sleep = self._deadline.sleeper(sleep, "the next Stripe request")
        self._rng = rng

    def request_with_retries(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        post_data: object = None,
        max_network_retries: int | None = None,
        *,
        _usage: list[str] | None = None,
    ) -> Response:
        """Send one request, retrying transient failures up to ``max_network_retries`` times.

        Waits are jittered, except that a ``Retry-After`` from Stripe is honoured as given.
        """
        policy = replace(self._policy, max_attempts=(max_network_retries or 0) + 1)
        where = f"{method.upper()} {url.split('?', 1)[0]}"
        attempt = 0
        while True:
            attempt += 1
            self._deadline.check(f"Stripe {where}")
            self._limiter.acquire()
            self._deadline.check(f"Stripe {where}")
            self._timeout = self._deadline.timeout(self._request_timeout)
            try:
                response: Response = self.request(method, url, headers, post_data)
            except stripe.APIConnectionError as error:
                delay = stripe_retry_delay(policy, TIMEOUT, {}, attempt)
                if not error.should_retry or delay is None:
                    raise
                status_text, advised = "no answer", False
            else:
                if 200 <= response[1] < 300 and is_json_object(response[0]):
                    return response
                if 200 <= response[1] < 300:
                    delay = stripe_retry_delay(policy, TIMEOUT, {}, attempt)
                    if delay is None:
                        raise StripeUnavailable(_malformed(where, response))
                    status_text, advised = f"HTTP {response[1]} with no JSON object", False
                    self._wait(delay, advised, status_text, where, attempt, policy)
                    continue
                delay = stripe_retry_delay(policy, response[1], response[2], attempt)
                if delay is None:
                    return response
                status_text = f"HTTP {response[1]}"
                advised = any(name.lower() == "retry-after" for name in response[2])
            self._wait(delay, advised, status_text, where, attempt, policy)

    def _wait(
        self,
        delay: float,
        advised: bool,
        status_text: str,
        where: str,
        attempt: int,
        policy: RetryPolicy,
    ) -> None:
        wait = delay if advised else jittered(delay, self._rng)
        logger.warning(
            "Stripe gave %s to %s; attempt %d of %d in %.2fs",
            status_text,
            where,
            attempt + 1,
            policy.max_attempts,
            wait,
        )
        self._sleep(wait)


def is_json_object(body: object) -> bool:
    """Return whether a 2xx body is a UTF-8 JSON object, the only answer the SDK can read.

    A proxy's HTML page, a truncated document, an array where an object belongs or bytes that
    are not UTF-8 are not.
    """
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else str(body)
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _malformed(where: str, response: Response) -> str:
    request_id = next((v for k, v in response[2].items() if k.lower() == "request-id"), None)
    named = f"request {' '.join(str(request_id).split())[:100]}" if request_id else "no request id"
    return (
        f"Stripe failed (HTTP {response[1]}, {named}): {where} answered with a body that is "
        "not a JSON object"
    )


def build_stripe_client(
    settings: Settings,
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    deadline: Deadline | None = None,
) -> stripe.StripeClient:
    """Return the run's Stripe client: pinned version, explicit retries, client-side rate limit.

    Args:
        settings: the API key, base URL, API version and request rate.
        sleep: how to wait, for the rate limit and between retries (tests inject a fake).
        rng: the source of retry jitter (tests inject a seeded one).
        deadline: the run's deadline, checked before every request and every wait.
    """
    bounded = (deadline or Deadline.never()).sleeper(sleep, "the next Stripe request")
    http_client = PacedHTTPClient(
        rate_limiter(settings.stripe_max_requests_per_second, bounded),
        sleep=sleep,
        rng=rng,
        deadline=deadline,
    )
    return stripe.StripeClient(
        settings.stripe_api_key.reveal(),
        base_addresses={"api": settings.stripe_api_base},
        stripe_version=settings.stripe_api_version,
        max_network_retries=MAX_NETWORK_RETRIES,
        http_client=http_client,
    )


def api_key_of(client: stripe.StripeClient) -> str | None:
    """Return the API key ``client`` sends, for scrubbing it from messages (never to show it)."""
    # Like the version, the key lives only on the SDK's requestor.
    key = client._requestor._options.api_key
    return key or None


def api_version_of(client: stripe.StripeClient) -> str:
    """Return the API version ``client`` sends in ``Stripe-Version`` (it decides object shapes)."""
    # The SDK keeps the version only on its requestor; nothing public exposes it.
    version = client._requestor._options.stripe_version
    return version or DEFAULT_STRIPE_API_VERSION


@contextmanager
def stripe_errors(client: stripe.StripeClient | None = None) -> Iterator[None]:
    """Turn Stripe SDK errors raised inside the block into the job's errors, without secrets.

    Args:
        client: the client whose requests the block makes; its API key, in whatever format, is
            scrubbed from the messages (without it only ``sk_``/``rk_``/``pk_`` keys are).

    Raises:
        CredentialsRejected: Stripe refused the key (401) or its permissions (403).
        StripeUnavailable: any other Stripe failure left after retries, with the request id.
    """
    try:
        yield
    except (stripe.AuthenticationError, stripe.PermissionError) as error:
        raise CredentialsRejected(
            f"Stripe refused the API key (HTTP {error.http_status or 401})"
        ) from None
    except stripe.StripeError as error:
        key = api_key_of(client) if client is not None else None
        raise StripeUnavailable(describe_stripe_error(error, key)) from None


def describe_stripe_error(error: stripe.StripeError, api_key: str | None = None) -> str:
    """Return a one-line description of a Stripe failure with its request id and no key.

    Args:
        error: what the SDK raised.
        api_key: the key the request was made with; any echo of it in the server's message is
            replaced by ``[key]``, whatever its format. Keys shaped like Stripe's always are.
    """
    status = f"HTTP {error.http_status}" if error.http_status else "no answer"
    request = f"request {error.request_id}" if error.request_id else "no request id"
    message = str(error.user_message or type(error).__name__)
    if isinstance(error, stripe.APIConnectionError):
        message = "could not connect"
    return f"Stripe failed ({status}, {_scrub(request, api_key)}): {_scrub(message, api_key)[:200]}"


def _scrub(text: str, api_key: str | None) -> str:
    """Return ``text`` on one line with ``api_key`` and anything shaped like a Stripe key masked."""
    if api_key:
        text = text.replace(api_key, "[key]")
    return _KEY_PATTERN.sub("[key]", " ".join(text.split()))
