"""``python -m reconcile``: the command line."""

from reconcile.cli import main

raise SystemExit(main())
