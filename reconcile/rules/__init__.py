"""The reconciliation rules: pure functions from plain values to plain values."""
