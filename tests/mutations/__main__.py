"""``python -m tests.mutations [MUTANT ...]``: run the mutation check (README, Testing)."""

import sys

from tests.mutations.check import main

sys.exit(main(sys.argv[1:]))
