"""The one Stripe client of a run: pinned API version, paced requests, explicit retries."""

from __future__ import annotations

import json
import logging
import math
import random
import re
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, NamedTuple

import httpx
import stripe

from reconcile.config import Settings
from reconcile.errors import CredentialsRejected, StripeUnavailable
from reconcile.retry import (
    TIMEOUT,
    Deadline,
    RateLimiter,
    RetryPolicy,
    call_with_retries,
    jittered,
    retry_delay,
)

logger = logging.getLogger(__name__)

MAX_NETWORK_RETRIES = 4
"""Retries after the first attempt in the bare policy; a client takes RECONCILE_RETRY_ATTEMPTS."""

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


class PacedHTTPClient(stripe.HTTPXClient):
    """The SDK's ``httpx`` transport, paced by a rate limit and retried by our policy.

    Built on the SDK's extension points: it is passed as ``http_client`` and overrides the
    public :meth:`request`. It sends with the synchronous ``httpx.Client`` the SDK builds (or
    one the caller injects), one keep-alive pool shared by the extraction's threads: cheaper per
    request than ``requests``, which reads the proxy settings of the environment on every call.
    The body goes as ``content`` (the SDK's own ``HTTPXClient.request`` passes it as ``data``,
    which httpx 0.28 deprecates). Headers pass through untouched, so the SDK's per-request ones
    (``Stripe-Version``, ``Stripe-Account``, ``Idempotency-Key``) reach Stripe as it set them.

    The client it serves is built with ``max_network_retries=0`` so that the SDK's own retry
    loop never runs: that loop sleeps with ``time.sleep``, jitters with the global ``random``
    and does not retry 429. Every attempt and every wait happens here instead, decided by
    :func:`stripe_retry_delay`.

    Stripe sometimes echoes the API key in an error message; the key this transport sends is
    masked in every answer's body before the SDK sees it, so no SDK error carries it.

    A 2xx body is parsed here, once, to tell a JSON object from a proxy's page or a truncated
    document; the body it returns is a :class:`JSONBody` carrying that parse, which
    :func:`get_json` uses instead of parsing the page again.
    """

    def __init__(
        self,
        limiter: RateLimiter,
        *,
        policy: RetryPolicy = STRIPE_RETRY_POLICY,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        timeout: float = REQUEST_TIMEOUT_SECONDS,
        api_key: str | None = None,
        deadline: Deadline | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        """Wrap an ``httpx`` transport with ``limiter`` before each attempt.

        Args:
            limiter: taken before every attempt, retries included.
            policy: how many attempts and which answers are transient.
            sleep: how to wait between attempts (tests inject a fake).
            rng: the source of retry jitter (tests inject a seeded one).
            timeout: seconds allowed for one attempt.
            api_key: the key the requests carry, masked in every answer.
            deadline: checked before every attempt and every wait (``sleep`` refuses waits past
                it), and no request may outlast it.
            http: the ``httpx.Client`` to send with (tests pass one with a mock transport);
                by default the SDK's, which verifies Stripe's certificates with its CA bundle.
        """
        super().__init__(timeout=timeout, allow_sync_methods=http is None)
        if http is None:
            http = self._client
            assert http is not None
            # Ours to close: when the client is closed, or else once nothing refers to it.
            weakref.finalize(self, http.close)
        self._http = http
        self._deadline = deadline or Deadline.never()
        self._request_timeout = timeout
        self._limiter = limiter
        self._policy = policy
        self._sleep = self._deadline.sleeper(sleep, "the next Stripe request")
        self._rng = rng
        self._masks = _echoes_of(api_key)

    # The signature is RequestsClient's; mypy compares it with HTTPClient's, which RequestsClient
    # itself narrows (bytes, and no private ``_usage`` keyword, which the SDK never passes here).
    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: object = None,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        """Send one request, retrying transient failures as the policy allows.

        Waits are jittered, except that a ``Retry-After`` from Stripe is honoured as given. A 2xx
        whose body is not a JSON object (a proxy's page, a truncated document) is retried, then
        reported as a one-line failure.
        """
        where = f"{method.upper()} {url.split('?', 1)[0]}"

        def attempt() -> Answer | stripe.APIConnectionError:
            self._deadline.check(f"Stripe {where}")
            self._limiter.acquire()
            self._deadline.check(f"Stripe {where}")
            timeout = self._deadline.timeout(self._request_timeout)
            return self._send(method, url, headers, post_data, timeout)

        def wait(answer: Answer | stripe.APIConnectionError, seconds: float) -> float:
            return seconds if _advised(answer) else jittered(seconds, self._rng)

        def announce(answer: Answer | stripe.APIConnectionError, made: int, seconds: float) -> None:
            logger.warning(
                "Stripe gave %s to %s; attempt %d of %d in %.2fs",
                _label(answer),
                where,
                made + 1,
                self._policy.max_attempts,
                seconds,
            )

        answer, _ = call_with_retries(
            attempt,
            lambda answer, made: attempt_delay(self._policy, answer, made),
            wait,
            sleep=self._sleep,
            announce=announce,
        )
        if isinstance(answer, stripe.APIConnectionError):
            raise answer
        if answer.succeeded and not answer.readable:
            raise StripeUnavailable(_malformed(where, answer.status, answer.headers))
        return self._masked(answer), answer.status, answer.headers

    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: object,
        timeout: float,
    ) -> Answer | stripe.APIConnectionError:
        """Make one attempt; a connection error is returned, not raised."""
        try:
            response = self._http.request(
                method,
                url,
                headers=headers,
                content=post_data or None,  # type: ignore[arg-type]
                timeout=timeout,
            )
            body = response.content
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            return stripe.APIConnectionError(  # type: ignore[no-untyped-call]
                f"could not reach Stripe ({type(error).__name__})", should_retry=True
            )
        document = json_object(body) if 200 <= response.status_code < 300 else None
        return Answer(body, response.status_code, response.headers, document is not None, document)

    def _masked(self, answer: Answer) -> bytes:
        """Return the answer's body with the key masked; a 2xx's as a :class:`JSONBody`."""
        body = answer.body
        document = answer.document
        if any(echo in body for echo in self._masks):
            for echo in self._masks:
                body = body.replace(echo, b"[key]")
            document = json_object(body) if document is not None else None
        return body if document is None else JSONBody(body, document)


class JSONBody(bytes):
    """A 2xx body as the SDK reads it (bytes), with the JSON object it holds, parsed once."""

    document: dict[str, Any]

    def __new__(cls, body: bytes, document: dict[str, Any]) -> JSONBody:
        """Return ``body``, carrying ``document``, its parse."""
        made = super().__new__(cls, body)
        made.document = document
        return made


class Answer(NamedTuple):
    """Stripe's answer to one attempt."""

    body: bytes
    status: int
    headers: Mapping[str, str]
    readable: bool
    """Whether it is a 2xx the SDK can read: its body a JSON object."""
    document: dict[str, Any] | None = None
    """That JSON object, parsed (a readable 2xx only)."""

    @property
    def succeeded(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300


def attempt_delay(
    policy: RetryPolicy, answer: Answer | stripe.APIConnectionError, attempt: int
) -> float | None:
    """Return seconds to wait after ``answer`` to attempt ``attempt``, or ``None`` to stop there.

    A readable answer ends the calls; an unreadable 2xx counts as no answer; a connection error
    the SDK marks as not worth retrying is final.
    """
    if isinstance(answer, stripe.APIConnectionError):
        return stripe_retry_delay(policy, TIMEOUT, {}, attempt) if answer.should_retry else None
    if answer.readable:
        return None
    if answer.succeeded:
        return stripe_retry_delay(policy, TIMEOUT, {}, attempt)
    return stripe_retry_delay(policy, answer.status, answer.headers, attempt)


def _advised(answer: Answer | stripe.APIConnectionError) -> bool:
    """Whether Stripe said how long to wait (``Retry-After`` on an error status)."""
    if isinstance(answer, stripe.APIConnectionError) or answer.succeeded:
        return False
    return any(name.lower() == "retry-after" for name in answer.headers)


def _label(answer: Answer | stripe.APIConnectionError) -> str:
    if isinstance(answer, stripe.APIConnectionError):
        return "no answer"
    if answer.succeeded:
        return f"HTTP {answer.status} with no JSON object"
    return f"HTTP {answer.status}"


def is_json_object(body: object) -> bool:
    """Return whether a 2xx body is a UTF-8 JSON object, the only answer the SDK can read.

    A proxy's HTML page, a truncated document, an array where an object belongs or bytes that
    are not UTF-8 are not.
    """
    return json_object(body) is not None


def json_object(body: object) -> dict[str, Any] | None:
    """Return the JSON object a body holds, as plain dicts; ``None`` if it holds none."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else str(body)
        document = json.loads(text)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _malformed(where: str, status: int, headers: Mapping[str, str]) -> str:
    request_id = next((v for k, v in headers.items() if k.lower() == "request-id"), None)
    named = f"request {' '.join(str(request_id).split())[:100]}" if request_id else "no request id"
    return (
        f"Stripe failed (HTTP {status}, {named}): {where} answered with a body that is "
        "not a JSON object"
    )


def _echoes_of(api_key: str | None) -> tuple[bytes, ...]:
    """Return the ways ``api_key`` can appear in a JSON body: as is and JSON-escaped."""
    if not api_key:
        return ()
    escaped = json.dumps(api_key)[1:-1]
    return tuple(dict.fromkeys((escaped.encode(), api_key.encode())))


def build_stripe_client(
    settings: Settings,
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    deadline: Deadline | None = None,
    stripe_account: str | None = None,
) -> stripe.StripeClient:
    """Return the Stripe client: pinned version, paced, retried as the retry settings say.

    Args:
        settings: the API key, base URL, API version, request rate and retry settings
            (``RECONCILE_RETRY_ATTEMPTS``, ``RECONCILE_RETRY_BASE_DELAY``).
        sleep: how to wait, for the rate limit and between retries (tests inject a fake).
        rng: the source of retry jitter (tests inject a seeded one).
        deadline: the run's deadline, checked before every request and every wait.
        stripe_account: a connected account (``acct_…``) every request reads, with the
            ``Stripe-Account`` header; ``None``: the key's own account.
    """
    api_key = settings.stripe_api_key.reveal()
    bounded = (deadline or Deadline.never()).sleeper(sleep, "the next Stripe request")
    policy = replace(
        STRIPE_RETRY_POLICY,
        max_attempts=settings.retry_attempts,
        base_delay=settings.retry_base_delay,
    )
    http_client = PacedHTTPClient(
        rate_limiter(settings.stripe_max_requests_per_second, bounded),
        policy=policy,
        sleep=sleep,
        rng=rng,
        api_key=api_key,
        deadline=deadline,
    )
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": settings.stripe_api_base},
        stripe_version=settings.stripe_api_version,
        # The transport retries (see PacedHTTPClient); the SDK's own loop must not add its own.
        max_network_retries=0,
        http_client=http_client,
        stripe_account=stripe_account,
    )


def get_json(
    client: stripe.StripeClient, path: str, params: Mapping[str, object]
) -> dict[str, Any]:
    """GET ``path`` through the SDK and return the JSON object Stripe answered, parsed once.

    The SDK builds the request exactly as its ``raw_request`` does (the key, the pinned API
    version, the client's ``Stripe-Account``, ``params`` form-encoded, expansions too) and
    sends it through the client's transport, which paces, retries and checks it. A 2xx comes
    back as the transport parsed it (plain dicts, see :class:`JSONBody`); ``raw_request`` would
    parse it a second time, into ``OrderedDict``s, about a sixth of an extraction's CPU. Any other
    answer is interpreted by the SDK, which raises its error for it.

    This is the one use of the SDK's requestor (``StripeClient._requestor``, what
    ``raw_request`` calls), pinned by the lock files and exercised by every listing's test.

    Raises:
        stripe.StripeError: as the SDK raises it (see :func:`stripe_errors`).
        StripeUnavailable: a 2xx that is not a JSON object, after retries.
    """
    requestor = client._requestor
    body, status, headers = requestor.request_raw(
        "get",
        path,
        params=dict(params),
        options={},
        base_address="api",
        api_mode="V1",
        usage=["raw_request"],
    )
    if isinstance(body, JSONBody) and 200 <= status < 300:
        return body.document
    answer = requestor._interpret_response(body, status, headers, "V1").data
    if not isinstance(answer, dict):
        raise StripeUnavailable(f"Stripe answered GET {path} with a body that is not a JSON object")
    return answer


@contextmanager
def stripe_errors() -> Iterator[None]:
    """Turn Stripe SDK errors raised inside the block into the job's errors, without secrets.

    The client's own key never reaches an SDK error (its transport masks it, see
    :class:`PacedHTTPClient`); anything else shaped like a Stripe key is masked here.

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
        raise StripeUnavailable(describe_stripe_error(error)) from None


def describe_stripe_error(error: stripe.StripeError) -> str:
    """Return a one-line description of a Stripe failure with its request id and no key.

    Args:
        error: what the SDK raised; anything in it shaped like a Stripe key is masked.
    """
    status = f"HTTP {error.http_status}" if error.http_status else "no answer"
    request = f"request {error.request_id}" if error.request_id else "no request id"
    message = str(error.user_message or type(error).__name__)
    if isinstance(error, stripe.APIConnectionError):
        message = "could not connect"
    return f"Stripe failed ({status}, {_scrub(request)}): {_scrub(message)[:200]}"


def _scrub(text: str) -> str:
    """Return ``text`` on one line with anything shaped like a Stripe key masked."""
    return _KEY_PATTERN.sub("[key]", " ".join(text.split()))
