"""The review page: runs, open findings, closing them with a note, and balances, in a browser."""

from reconcile.operator.console.app import create_console_app
from reconcile.operator.console.settings import ConsoleSettings

__all__ = ["ConsoleSettings", "create_console_app"]
