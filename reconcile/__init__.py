"""Reconcile prepaid API credit between Stripe payments and the Moesif balance ledger."""

__version__ = "0.1.0"
