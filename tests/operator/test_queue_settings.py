"""The exception queue's priority thresholds from the environment (``RECONCILE_PRIORITY_*``)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from reconcile.config import priority_rules_from_env
from reconcile.errors import ConfigError
from reconcile.rules.priority import DEFAULT_RULES, Priority


def test_unset_thresholds_are_section_10a_defaults() -> None:
    assert priority_rules_from_env({}) == DEFAULT_RULES


def test_each_threshold_is_read_from_its_variable() -> None:
    rules = priority_rules_from_env(
        {
            "RECONCILE_PRIORITY_CRITICAL_AMOUNT": "50000",
            "RECONCILE_PRIORITY_HIGH_AGE": "2d",
            "RECONCILE_PRIORITY_MEDIUM_DUE": "48h",
            "RECONCILE_PRIORITY_LOW_DUE": "14d",
        }
    )
    critical, high, medium = rules.levels
    assert (critical.priority, critical.amount_major) == (Priority.CRITICAL, 50_000)
    assert high.age == timedelta(days=2)
    assert medium.due_in == timedelta(hours=48)
    assert rules.low_due_in == timedelta(days=14)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RECONCILE_PRIORITY_HIGH_AMOUNT", "1.5"),
        ("RECONCILE_PRIORITY_HIGH_AMOUNT", "-3"),
        ("RECONCILE_PRIORITY_CRITICAL_AGE", "soon"),
        ("RECONCILE_PRIORITY_MEDIUM_DUE", "0"),
        ("RECONCILE_PRIORITY_LOW_DUE", "0"),
    ],
)
def test_a_malformed_threshold_is_refused_naming_its_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        priority_rules_from_env({name: value})
