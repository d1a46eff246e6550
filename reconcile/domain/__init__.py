"""The vocabulary every part of reconcile speaks: values, statuses and categories, id formats.

``values``: the plain values the core works on (expected entries, ledger rows, unreadable
records) and the frames' columns. ``vocab``: every status (posting, run, finding, webhook event),
the drift categories and report actions, entry types and sources. ``ids``: how ids look and are
made (Stripe's prefixes, a finding's id, a posting's description and how it is read back).
``origin``: who asked for a posting, as recorded. Nothing here imports the rest of the package.
"""
