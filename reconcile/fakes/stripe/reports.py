"""The fake Stripe's Reporting API: the summary report type, its runs and their files.

Only ``balance_change_from_activity.summary.1`` is served. A report run answers ``pending``
to its first retrieval and ``succeeded`` after, with a File whose contents are the summary of
the fake's own balance transactions created in the run's interval: one row per reporting
category and currency (``count``, ``gross``, ``fee``, ``net`` in major units) and a ``total``
row, as Stripe writes it. Switches play the answers a run must survive: a summary that lacks
one movement of one category, a key without permission, a run that fails.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass

from reconcile.domain.money import format_major
from reconcile.fakes.stripe.errors import StripeApiError
from reconcile.fakes.stripe.store import Obj, Query, Store

REPORT_TYPE = "balance_change_from_activity.summary.1"
COLUMNS = ("reporting_category", "currency", "count", "gross", "fee", "net")


@dataclass
class ReportSwitches:
    """How the fake's Reporting API misbehaves; all off by default."""

    short_category: str | None = None
    """The summary lacks one movement (the newest) of this reporting category."""
    refuse: bool = False
    """Every reporting request answers 403, as for a key without the permission."""
    fail: bool = False
    """Report runs end ``failed``."""
    data_available_end: int | None = None
    """The report type's last second of data (Unix); by default an hour past the fake's clock
    (the fake has summed every movement it holds)."""
    pending_polls: int = 1
    """How many retrievals of a run answer ``pending`` before it ends."""


class Reports:
    """Answers ``/v1/reporting/...`` and ``/v1/files/<id>/contents`` from the store."""

    def __init__(self, state: Store, files_url: Callable[[], str]) -> None:
        """Read balance transactions from ``state``; files are served under ``files_url()``."""
        self._state = state
        self._files_url = files_url
        self.switches = ReportSwitches()
        self._runs: dict[str, Obj] = {}
        self._polls: dict[str, int] = {}
        self._files: dict[str, bytes] = {}

    def handles(self, path: str) -> bool:
        """Return whether ``path`` is the Reporting API's or a file's."""
        return path.startswith(("/v1/reporting/", "/v1/files/"))

    def answer(self, method: str, path: str, form: Query) -> Obj | bytes:
        """Answer one request of the Reporting API (JSON) or a file download (bytes)."""
        segments = [part for part in path.split("/") if part]
        if self.switches.refuse:
            raise StripeApiError(
                403,
                "The provided key does not have access to the Reporting API.",
                "permission_error",
            )
        with self._state.lock:
            if segments[1] == "files" and len(segments) == 4 and segments[3] == "contents":
                return self._file(segments[2])
            if segments[2:3] == ["report_types"] and len(segments) == 4 and method == "GET":
                return self._report_type(segments[3])
            if segments[2:3] == ["report_runs"] and len(segments) == 3 and method == "POST":
                return self._create(form)
            if segments[2:3] == ["report_runs"] and len(segments) == 4 and method == "GET":
                return self._retrieve(segments[3])
        raise StripeApiError(404, f"Unrecognized request URL ({method}: {path}).")

    def _available_end(self) -> int:
        end = self.switches.data_available_end
        return self._state.now() + 3600 if end is None else end

    def _report_type(self, name: str) -> Obj:
        if name != REPORT_TYPE:
            raise StripeApiError(404, f"No such report type: '{name}'", "resource_missing")
        return {
            "id": REPORT_TYPE,
            "object": "reporting.report_type",
            "data_available_start": 0,
            "data_available_end": self._available_end(),
            "default_columns": list(COLUMNS),
            "name": "Balance change from activity summary",
            "version": 1,
        }

    def _create(self, form: Query) -> Obj:
        if form.get("report_type") != REPORT_TYPE:
            raise StripeApiError(400, "Invalid report_type", param="report_type")
        try:
            start = int(form["parameters[interval_start]"])
            end = int(form["parameters[interval_end]"])
        except (KeyError, ValueError):
            raise StripeApiError(400, "The interval is required.", param="parameters") from None
        if not 0 <= start < end <= self._available_end():
            raise StripeApiError(
                400,
                "interval_end must be after interval_start and no later than data_available_end.",
                param="parameters[interval_end]",
            )
        run_id = f"frr_fake{self._state.number():012d}"
        self._runs[run_id] = {
            "id": run_id,
            "object": "reporting.report_run",
            "created": self._state.now(),
            "livemode": True,
            "parameters": {
                "interval_start": start,
                "interval_end": end,
                "currency": form.get("parameters[currency]"),
            },
            "report_type": REPORT_TYPE,
            "status": "pending",
            "error": None,
            "result": None,
            "succeeded_at": None,
        }
        self._polls[run_id] = 0
        return dict(self._runs[run_id])

    def _retrieve(self, run_id: str) -> Obj:
        run = self._runs.get(run_id)
        if run is None:
            raise StripeApiError(404, f"No such report run: '{run_id}'", "resource_missing")
        self._polls[run_id] += 1
        if run["status"] == "pending" and self._polls[run_id] > self.switches.pending_polls:
            self._finish(run)
        return dict(run)

    def _finish(self, run: Obj) -> None:
        if self.switches.fail:
            run.update(status="failed", error="An internal error occurred.")
            return
        file_id = f"file_fake{self._state.number():012d}"
        parameters = run["parameters"]
        self._files[file_id] = self._summary(
            parameters["interval_start"], parameters["interval_end"], parameters["currency"]
        )
        run.update(
            status="succeeded",
            succeeded_at=self._state.now(),
            result={
                "id": file_id,
                "object": "file",
                "filename": f"{file_id}.csv",
                "purpose": "finance_report_run",
                "size": len(self._files[file_id]),
                "type": "csv",
                "url": f"{self._files_url()}/v1/files/{file_id}/contents",
            },
        )

    def _file(self, file_id: str) -> bytes:
        found = self._files.get(file_id)
        if found is None:
            raise StripeApiError(404, f"No such file upload: '{file_id}'", "resource_missing")
        return found

    def _summary(self, start: int, end: int, currency: str | None) -> bytes:
        moved = sorted(
            (
                item
                for item in self._state.objects["balance_transaction"].values()
                if start <= item["created"] < end and currency in (None, item["currency"])
            ),
            key=lambda item: (item["created"], item["id"]),
        )
        short = self.switches.short_category
        left_out = [item for item in moved if item["reporting_category"] == short][-1:]
        totals: dict[tuple[str, str], list[int]] = {}
        for item in moved:
            if item in left_out:
                continue
            figures = totals.setdefault((item["reporting_category"], item["currency"]), [0] * 4)
            for place, value in enumerate((1, item["amount"], item["fee"], item["net"])):
                figures[place] += value
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        for (category, code), (count, gross, fee, net) in sorted(totals.items()):
            writer.writerow(
                [category, code, count, *(format_major(v, code) for v in (gross, -fee, net))]
            )
        if len({code for _, code in totals}) == 1:
            code = next(iter(totals))[1]
            sums = [sum(figures[place] for figures in totals.values()) for place in range(4)]
            writer.writerow(
                [
                    "total",
                    code,
                    sums[0],
                    *(format_major(v, code) for v in (sums[1], -sums[2], sums[3])),
                ]
            )
        return out.getvalue().encode("utf-8")
