"""The review page: runs, open findings, closing them with a note, and balances, in a browser."""

from reconcile.console.app import create_console_app
from reconcile.console.settings import ConsoleSettings

__all__ = ["ConsoleSettings", "create_console_app"]
