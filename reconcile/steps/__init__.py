"""The steps of a run that read and write the snapshot; each carries out a rule's answer."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

Sessions = sessionmaker[Session]
"""The run's session factory; each step opens its own short transactions."""
