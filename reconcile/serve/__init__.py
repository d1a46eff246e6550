"""The real-time path: Stripe's webhook and the ``/top-up`` API, on the exactly-once engine."""
