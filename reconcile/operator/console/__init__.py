"""The review page: runs, open findings, closing them with a note, and balances, in a browser.

``app.create_console_app`` builds it from ``settings.ConsoleSettings``.
"""
