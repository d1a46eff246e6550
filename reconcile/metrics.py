"""Run metrics as a Prometheus text file, written atomically for node_exporter's textfile collector.

Gauges describe the last run; ``reconcile_postings_total`` is a counter carried over from the
previous file; the last success time and the findings are carried over when a run fails.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from reconcile.domain import Category
from reconcile.errors import ExitCode
from reconcile.files import write_atomically

if TYPE_CHECKING:
    from reconcile.request import RunOutcome

logger = logging.getLogger(__name__)

SUCCESS_CODES = frozenset({ExitCode.OK, ExitCode.DRIFT})
"""Exit codes of a run that completed: nothing to review, or drift flagged for review."""

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


@dataclass(frozen=True)
class Metric:
    """One metric family: its name, type, help and samples (label text → value)."""

    name: str
    kind: str
    help: str
    samples: Mapping[str, float]

    def render(self) -> str:
        """Return the family in the Prometheus text format."""
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        lines += [f"{self.name}{labels} {_number(v)}" for labels, v in self.samples.items()]
        return "\n".join(lines) + "\n"


def write_metrics(
    path: Path,
    outcome: RunOutcome | None,
    *,
    failed_exit_code: int | None = None,
    now: datetime | None = None,
    started_at: datetime | None = None,
) -> bool:
    """Write the metrics of the run that just ended to ``path``, atomically; never raise.

    A file that cannot be written is a warning (contract section 7): the run's exit code does
    not depend on it. Returns whether the file was written.

    Args:
        path: the ``.prom`` file node_exporter reads.
        outcome: what the run did, or ``None`` when it ended with an error before finishing.
        failed_exit_code: the exit code of a run that produced no outcome (default 3).
        now: when the run ended; the current time by default.
        started_at: when a failed run started, for its duration (an outcome carries its own).
    """
    moment = now or datetime.now(UTC)
    previous = read_samples(path)
    text = render_metrics(
        outcome,
        previous,
        failed_exit_code=failed_exit_code,
        now=moment,
        started_at=started_at,
    )
    try:
        _replace_atomically(path, text)
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        logger.warning("could not write the metrics file %s: %s", path, reason)
        return False
    logger.debug("wrote metrics to %s", path)
    return True


def render_metrics(
    outcome: RunOutcome | None,
    previous: Mapping[str, float],
    *,
    failed_exit_code: int | None = None,
    now: datetime,
    started_at: datetime | None = None,
) -> str:
    """Return the metrics file's text for a run, given the previous file's samples."""
    families = [
        _gauge("reconcile_last_run_timestamp_seconds", "When the last run ended (Unix time).", now),
        _last_success(outcome, previous, now),
        Metric(
            "reconcile_last_exit_code",
            "gauge",
            "Exit code of the last run (0 ok, 1 drift, 2 usage, 3 failed, 4 guardrail, 75 locked).",
            {"": _exit_code(outcome, failed_exit_code)},
        ),
        _findings(outcome, previous),
        _postings(outcome, previous),
    ]
    duration = _duration(outcome, now, started_at)
    if duration is not None:
        families.append(
            Metric(
                "reconcile_run_duration_seconds",
                "gauge",
                "How long the last run took.",
                {"": duration},
            )
        )
    return "".join(family.render() for family in families)


def read_samples(path: Path) -> dict[str, float]:
    """Return the samples of an existing metrics file as ``name{labels}`` → value; {} if none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        logger.warning("could not read the previous metrics file %s: %s", path, reason)
        return {}
    samples: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        try:
            samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
        except ValueError:
            continue
    return samples


def _gauge(name: str, help_text: str, moment: datetime) -> Metric:
    return Metric(name, "gauge", help_text, {"": moment.timestamp()})


def _last_success(
    outcome: RunOutcome | None, previous: Mapping[str, float], now: datetime
) -> Metric:
    name = "reconcile_last_success_timestamp_seconds"
    if outcome is not None and outcome.exit_code in SUCCESS_CODES:
        value = now.timestamp()
    else:
        value = previous.get(name, 0.0)
    return Metric(
        name,
        "gauge",
        "When a run last completed with exit 0 or 1 (Unix time; 0 never).",
        {"": value},
    )


def _exit_code(outcome: RunOutcome | None, failed_exit_code: int | None) -> int:
    if outcome is not None:
        return int(outcome.exit_code)
    return int(failed_exit_code if failed_exit_code is not None else ExitCode.FAILED)


def _findings(outcome: RunOutcome | None, previous: Mapping[str, float]) -> Metric:
    name = "reconcile_findings"
    samples: dict[str, float] = {}
    for category in Category:
        labels = f'{{category="{category.value}"}}'
        if outcome is not None:
            samples[labels] = outcome.counts.get(category.value, 0)
        else:
            samples[labels] = previous.get(name + labels, 0)
    return Metric(name, "gauge", "Findings of the last completed run, by drift category.", samples)


def _postings(outcome: RunOutcome | None, previous: Mapping[str, float]) -> Metric:
    name = "reconcile_postings_total"
    done = {
        "posted": outcome.posted if outcome is not None else 0,
        "failed": outcome.post_failed if outcome is not None else 0,
    }
    samples: dict[str, float] = {}
    for result, count in done.items():
        labels = f'{{outcome="{result}"}}'
        samples[labels] = int(previous.get(name + labels, 0)) + count
    return Metric(name, "counter", "Postings to Moesif over all runs, by outcome.", samples)


def _duration(
    outcome: RunOutcome | None, now: datetime, started_at: datetime | None
) -> float | None:
    if outcome is not None:
        return outcome.duration_seconds
    if started_at is not None:
        return (now - started_at).total_seconds()
    return None


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.3f}"


def _replace_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""

    def write(stream: TextIO) -> None:
        stream.write(text)

    write_atomically(path, write)
