"""How findings are ranked by amount when their currencies differ (contract sections 10, 10a).

Amounts of two currencies are never compared: 5,000 JPY is not more than 100.00 USD. Findings
whose customer Moesif blocks while owed credit come first; then each finding takes its place in
its own currency's order (the largest absolute delta in major units first), and the first of
every currency comes before the second of any. Within one currency minor units order as major
units do, so no conversion is needed. Findings without a known delta or currency come last.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from reconcile.domain.money import is_iso_currency


@dataclass(frozen=True)
class Sized:
    """What ranking by amount needs of one finding.

    Attributes:
        finding_id: its stable id, the last tie-breaker.
        currency: its currency code, when known.
        delta_minor: its signed delta in minor units (section 7), when known.
        blocked: whether Moesif shows its subscription no available credit (zero or less).
    """

    finding_id: str
    currency: str | None
    delta_minor: int | None
    blocked: bool = False

    @property
    def code(self) -> str | None:
        """Return its currency code in lower case, or ``None`` without a valid one."""
        return self.currency.lower() if is_iso_currency(self.currency) and self.currency else None

    @property
    def blocked_but_owed(self) -> bool:
        """Return whether the customer is blocked while owed credit (a positive delta)."""
        return self.blocked and self.delta_minor is not None and self.delta_minor > 0

    @property
    def known(self) -> bool:
        """Return whether its delta can be ranked: a delta and a currency code."""
        return self.delta_minor is not None and self.code is not None


def by_amount(findings: Sequence[Sized]) -> list[int]:
    """Return the indexes of ``findings`` in amount order (see the module's docstring).

    Blocked-but-owed first; then by place within the finding's own currency (largest absolute
    delta first); findings at the same place go by currency code, then id; unknown amounts last.
    """
    groups: dict[tuple[bool, str], list[int]] = defaultdict(list)
    for index, finding in enumerate(findings):
        if finding.known:
            groups[(finding.blocked_but_owed, finding.code or "")].append(index)
    place: dict[int, int] = {}
    for group in groups.values():
        group.sort(key=lambda i: (-abs(findings[i].delta_minor or 0), findings[i].finding_id))
        place.update({index: position for position, index in enumerate(group)})

    def key(index: int) -> tuple[bool, bool, int, str, str]:
        finding = findings[index]
        return (
            not finding.known,
            not finding.blocked_but_owed,
            place.get(index, 0),
            finding.code or "",
            finding.finding_id,
        )

    return sorted(range(len(findings)), key=key)
