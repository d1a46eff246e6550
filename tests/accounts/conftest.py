"""The end-to-end world (both fakes on loopback) for the connected-account tests."""

from tests.e2e.conftest import world

__all__ = ["world"]
