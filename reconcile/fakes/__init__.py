"""Fake Stripe and Moesif servers on loopback, for the demo, the tests and the benchmarks."""
