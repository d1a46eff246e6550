"""Run metrics as a Prometheus text file, written atomically for node_exporter's textfile collector.

Gauges describe the last run; ``reconcile_postings_total`` is a counter carried over from the
previous file; the last success time and the findings are carried over when a run fails.
prometheus_client formats the file and reads the previous one back; the file is replaced with
:func:`reconcile.files.write_atomically` (flushed to disk, mode 0644, its folder created), which
promises more than ``write_to_textfile``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from reconcile.domain.vocab import Category
from reconcile.errors import ExitCode
from reconcile.files import write_atomically

if TYPE_CHECKING:
    from reconcile.request import RunOutcome

logger = logging.getLogger(__name__)

SUCCESS_CODES = frozenset({ExitCode.OK, ExitCode.DRIFT})
"""Exit codes of a run that completed: nothing to review, or drift flagged for review."""


class _Families(Collector):
    """The families of one run, handed to prometheus_client as they are."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        """Return the families, in the order the file lists them."""
        return self._families


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
    families: list[Metric] = [
        _gauge("reconcile_last_run_timestamp_seconds", "When the last run ended (Unix time).", now),
        _last_success(outcome, previous, now),
        GaugeMetricFamily(
            "reconcile_last_exit_code",
            "Exit code of the last run (0 ok, 1 drift, 2 usage, 3 failed, 4 guardrail, 75 locked).",
            value=_exit_code(outcome, failed_exit_code),
        ),
        _findings(outcome, previous),
        _postings(outcome, previous),
    ]
    missed = _miss_rate(outcome, previous)
    if missed is not None:
        families.append(missed)
    duration = _duration(outcome, now, started_at)
    if duration is not None:
        families.append(
            GaugeMetricFamily(
                "reconcile_run_duration_seconds", "How long the last run took.", value=duration
            )
        )
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Families(families))
    return generate_latest(registry).decode("utf-8")


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
    # Line by line, so that a damaged line loses only itself.
    for line in text.splitlines():
        try:
            families = list(text_string_to_metric_families(line + "\n"))
        except ValueError:
            continue
        for family in families:
            for sample in family.samples:
                samples[_key(sample.name, sample.labels)] = float(sample.value)
    return samples


def _key(name: str, labels: Mapping[str, str]) -> str:
    """Return ``name{label="value",...}``, the way a sample is looked up in ``previous``."""
    if not labels:
        return name
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _gauge(name: str, help_text: str, moment: datetime) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=moment.timestamp())


def _last_success(
    outcome: RunOutcome | None, previous: Mapping[str, float], now: datetime
) -> GaugeMetricFamily:
    name = "reconcile_last_success_timestamp_seconds"
    if outcome is not None and outcome.exit_code in SUCCESS_CODES:
        value = now.timestamp()
    else:
        value = previous.get(name, 0.0)
    return GaugeMetricFamily(
        name, "When a run last completed with exit 0 or 1 (Unix time; 0 never).", value=value
    )


def _exit_code(outcome: RunOutcome | None, failed_exit_code: int | None) -> int:
    if outcome is not None:
        return int(outcome.exit_code)
    return int(failed_exit_code if failed_exit_code is not None else ExitCode.FAILED)


def _findings(outcome: RunOutcome | None, previous: Mapping[str, float]) -> GaugeMetricFamily:
    name = "reconcile_findings"
    family = GaugeMetricFamily(
        name, "Findings of the last completed run, by drift category.", labels=["category"]
    )
    for category in Category:
        if outcome is not None:
            value = float(outcome.counts.get(category.value, 0))
        else:
            value = previous.get(_key(name, {"category": category.value}), 0.0)
        family.add_metric([category.value], value)
    return family


def _postings(outcome: RunOutcome | None, previous: Mapping[str, float]) -> CounterMetricFamily:
    name = "reconcile_postings_total"
    done = {
        "posted": outcome.posted if outcome is not None else 0,
        "failed": outcome.post_failed if outcome is not None else 0,
    }
    # No creation time: the counter lives across runs, in this file.
    family = CounterMetricFamily(
        name, "Postings to Moesif over all runs, by outcome.", labels=["outcome"]
    )
    for result, count in done.items():
        family.add_metric([result], int(previous.get(_key(name, {"outcome": result}), 0)) + count)
    return family


def _miss_rate(
    outcome: RunOutcome | None, previous: Mapping[str, float]
) -> GaugeMetricFamily | None:
    """The live path's miss rate (a ratio, 0 to 1); a failed run carries the last one over."""
    name = "reconcile_live_path_miss_rate"
    if outcome is not None:
        measured = outcome.miss_rate
        value = None if measured is None or measured.rate is None else float(measured.rate)
    else:
        value = previous.get(name)
    if value is None:
        return None
    return GaugeMetricFamily(
        name,
        "Share of the top-up credits of the last 30 days that a run posted (the live path "
        "missed them).",
        value=value,
    )


def _duration(
    outcome: RunOutcome | None, now: datetime, started_at: datetime | None
) -> float | None:
    if outcome is not None:
        return outcome.duration_seconds
    if started_at is not None:
        return (now - started_at).total_seconds()
    return None


def _replace_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""

    def write(stream: TextIO) -> None:
        stream.write(text)

    write_atomically(path, write)
