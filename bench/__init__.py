"""Benchmarks of reconcile on generated, seeded data: ``python -m bench [match|ingest|...]``."""
