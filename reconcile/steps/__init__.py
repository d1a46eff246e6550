"""The steps of a run that read and write the snapshot; each carries out a rule's answer."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from reconcile.rules.conclusion import Tally

Sessions = sessionmaker[Session]
"""The run's session factory; each step opens its own short transactions."""


@dataclass(frozen=True)
class Posted:
    """The findings with what was decided and sent, the postings counted, and any guardrail."""

    findings: pd.DataFrame
    counted: Tally
    guardrail: str = ""
    """Why nothing was posted, empty if it was."""
