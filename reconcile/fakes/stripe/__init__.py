"""A fake Stripe API on 127.0.0.1 for tests and the demo: real HTTP, Stripe's list semantics.

Object shapes start from Stripe's own example objects (``stripe_fixtures.json`` in this package,
trimmed from github.com/stripe/openapi ``openapi/fixtures3.json``, MIT) with fields overridden.

- :mod:`.store`: the objects held, by kind, in list order.
- :mod:`.seeding`: customers, PaymentIntents, refunds, disputes and their balance transactions.
- :mod:`.routes`: the SDK's reads (retrieve, list, filters, pages, expansions).
- :mod:`.faults`: error statuses, slow answers and spoiled bodies on cue.
- :mod:`.live`: PaymentIntents for ``/top-up``, idempotency keys, events and webhooks.
- :mod:`.fake`: :class:`FakeStripe`, the server that puts them together.
"""

from reconcile.fakes.stripe.errors import StripeApiError
from reconcile.fakes.stripe.fake import (
    DEFAULT_ORDER_SEED,
    DEFAULT_VERSION,
    FakeStripe,
    RecordedRequest,
)
from reconcile.fakes.stripe.live import (
    IDEMPOTENCY_KEY_LIFETIME,
    TEST_CARDS,
    LivePayments,
    WebhookEndpoint,
    sign,
)
from reconcile.fakes.stripe.routes import FINAL_INVOICE_LINK_VERSION
from reconcile.fakes.stripe.store import COLLECTIONS, TEMPLATES, Obj, Query

__all__ = [
    "COLLECTIONS",
    "DEFAULT_ORDER_SEED",
    "DEFAULT_VERSION",
    "FINAL_INVOICE_LINK_VERSION",
    "IDEMPOTENCY_KEY_LIFETIME",
    "TEMPLATES",
    "TEST_CARDS",
    "FakeStripe",
    "LivePayments",
    "Obj",
    "Query",
    "RecordedRequest",
    "StripeApiError",
    "WebhookEndpoint",
    "sign",
]
