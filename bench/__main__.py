"""``python -m bench [BENCHMARK ...] [--quick] [--size N] [--samples N] [--database URL]``.

Each benchmark prints one JSON line (``benchmark``, ``size``, ``samples``, ``seconds``,
``peak_mb`` and, where it has a yardstick measured in the same run, ``yardstick``,
``yardstick_seconds`` and ``ratio``: ours over the yardstick's, below 1 is faster), then a table
of all of them. Timed parts run ``--samples`` times, ours and the yardstick's in turn:
``seconds`` and ``yardstick_seconds`` are medians, with ``_min`` and ``_max`` beside them, and
``ratio_min``/``ratio_max`` are the extremes of each sample's ratio. Every measured part runs
in a child process of its own, so its peak memory (``ru_maxrss``) is its own; ``peak_mb`` is the
largest of the samples'.
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCHMARKS = ("match", "ingest", "incremental", "post", "balances")
QUICK_SIZE = 2_000
DEFAULT_SIZE = 100_000
DEFAULT_SAMPLES = 5


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["_child"]:
        return _child(arguments[1], json.loads(arguments[2]))
    if arguments[:1] == ["scale"]:  # its own options: accounts over worker processes
        from bench.scale import main as scale

        return scale(arguments[1:])
    parser = _parser()
    options = parser.parse_args(arguments)
    unknown = sorted(set(options.benchmarks) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    size = options.size or (QUICK_SIZE if options.quick else DEFAULT_SIZE)
    if options.samples < 1:
        parser.error("--samples must be at least 1")
    if options.batch_share is not None and not 1 <= options.batch_share <= 500:
        parser.error("--batch-share must be from 1 to 500")
    if options.webhook_per_minute is not None and options.webhook_per_minute < 0:
        parser.error("--webhook-per-minute must not be negative")
    _POST_OPTIONS.clear()
    if options.batch_share is not None:
        _POST_OPTIONS["batch_share"] = options.batch_share
    if options.webhook_per_minute is not None:
        _POST_OPTIONS["webhook_per_minute"] = options.webhook_per_minute
    results = []
    for name in options.benchmarks or list(BENCHMARKS):
        result = _RUNNERS[name](size, options.database, options.samples)
        print(json.dumps(result), flush=True)
        results.append(result)
    print(_table(results))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "benchmarks", nargs="*", metavar="BENCHMARK", help=f"any of {', '.join(BENCHMARKS)} (all)"
    )
    parser.add_argument("--quick", action="store_true", help=f"small sizes ({QUICK_SIZE}), for CI")
    parser.add_argument("--size", type=int, help=f"expected entries (default {DEFAULT_SIZE})")
    parser.add_argument(
        "--samples",
        type=int,
        default=DEFAULT_SAMPLES,
        help=f"times each timed part runs; the median and the spread are reported "
        f"(default {DEFAULT_SAMPLES}; post runs once, its figures are counted on a virtual clock)",
    )
    parser.add_argument(
        "--batch-share",
        type=int,
        help="post: the batch's Moesif requests a minute, 1 to 500 "
        "(default RECONCILE_MOESIF_REQUESTS_PER_MINUTE's, 400); the stream gets the rest",
    )
    parser.add_argument(
        "--webhook-per-minute",
        type=float,
        help="post: the webhook stream's average events a minute (default 90)",
    )
    parser.add_argument(
        "--database",
        help="an empty snapshot database URL to fill (default: a temporary SQLite file)",
    )
    return parser


def _match(size: int, database: str | None, samples: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="reconcile-bench-") as scratch:
        url = database or f"sqlite:///{Path(scratch) / 'snapshot.db'}"
        _spawn("fill", {"url": url, "size": size})
        ours, theirs = [], []
        for _sample in range(samples):
            ours.append(_spawn("ours", {"url": url, "report_dir": scratch}))
            theirs.append(_spawn("yardstick", {"url": url}))
    from bench.match import PHASES  # noqa: PLC0415 - the parent imports no more than it needs

    first = ours[0]
    result: dict[str, Any] = {
        "benchmark": "match",
        "size": size,
        **_measured(ours, theirs, "datacompy"),
        "database": url.split(":", 1)[0],
    }
    for key in PHASES:
        result[key] = round(statistics.median(sample[key] for sample in ours), 3)
    result["other_seconds"] = round(
        statistics.median(sample["other_seconds"] for sample in ours), 3
    )
    for key in ("expected_rows", "ledger_rows", "findings", "exit_code"):
        result[key] = first[key]
    matched = [
        sample["match_seconds"] / their["seconds"] for sample, their in _paired(ours, theirs)
    ]
    result["match_ratio"] = _rounded(statistics.median(matched) if matched else None)
    if "note" in theirs[0]:
        result["yardstick_note"] = theirs[0]["note"]
    else:
        result["yardstick_version"] = theirs[0]["version"]
    return result


def _ingest(size: int, database: str | None, samples: int) -> dict[str, Any]:
    server = subprocess.Popen(
        [sys.executable, "-m", "bench", "_child", "serve", json.dumps({"size": size})],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    ours, theirs = [], []
    try:
        assert server.stdout is not None
        url = json.loads(server.stdout.readline())["url"]
        for _sample in range(samples):
            theirs.append(_spawn("ingest_yardstick", {"url": url}))
            ours.append(_spawn("ingest_ours", {"url": url}))
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=120)
    objects = theirs[0]["objects"]
    measured = _measured(ours, theirs, "httpx")
    return {
        "benchmark": "ingest",
        "size": size,
        **measured,
        "objects": objects,
        "objects_per_second": round(objects / measured["seconds"]),
        "yardstick_objects_per_second": round(objects / measured["yardstick_seconds"]),
        "entries": ours[0]["entries"],
        "database": "sqlite",
    }


def _incremental(size: int, database: str | None, samples: int) -> dict[str, Any]:
    small = max(size // 20, 1)
    window_entries = max(min(size // 20, 50_000), 100)
    timed: dict[int, list[dict[str, Any]]] = {size: [], small: []}
    with tempfile.TemporaryDirectory(prefix="reconcile-bench-") as scratch:
        urls = {}
        for history in (size, small):
            urls[history] = f"sqlite:///{Path(scratch) / f'snapshot-{history}.db'}"
            fill = {"url": urls[history], "history": history, "window": window_entries}
            _spawn("incremental_fill", fill)
        for _sample in range(samples):
            for history in (size, small):
                part = {"url": urls[history], "report_dir": scratch}
                timed[history].append(_spawn("incremental_ours", part))
    ours, theirs = timed[size], timed[small]
    return {
        "benchmark": "incremental",
        "size": size,
        **_measured(ours, theirs, f"history {small}"),
        "window_entries": window_entries,
        "expected_rows": ours[0]["expected_rows"],
        "ledger_rows": ours[0]["ledger_rows"],
        "database": "sqlite",
    }


def _post(size: int, database: str | None, samples: int) -> dict[str, Any]:
    postings = min(max(size // 4, 100), 2_000)
    with tempfile.TemporaryDirectory(prefix="reconcile-bench-") as scratch:
        ours = _spawn("post", {"postings": postings, "scratch": scratch, **_POST_OPTIONS})
    return {
        "benchmark": "post",
        "size": size,
        "samples": 1,
        "seconds": round(ours["seconds"], 3),
        "peak_mb": ours["peak_mb"],
        "yardstick": None,
        "yardstick_seconds": None,
        "ratio": None,
        "limit_share": _rounded(ours["limit_share"]),
        "share_429": round(ours["share_429"] or 0.0, 4),
        "webhook_share_429": round(ours["webhook_share_429"] or 0.0, 4),
        **{
            key: ours[key]
            for key in (
                "postings",
                "requests",
                "first_reads",
                "batch_requests",
                "batch_429",
                "webhook_events",
                "webhook_requests",
                "webhook_429",
                "webhook_latency_seconds",
                "busiest_minute",
                "virtual_seconds",
                "batch_requests_per_minute",
                "webhook_share",
                "webhook_per_minute",
            )
        },
    }


def _balances(size: int, database: str | None, samples: int) -> dict[str, Any]:
    subscriptions = size
    with tempfile.TemporaryDirectory(prefix="reconcile-bench-") as scratch:
        urls = {}
        for name, with_run in (("ours", True), ("yardstick", False)):
            urls[name] = f"sqlite:///{Path(scratch) / f'balances-{name}.db'}"
            if database is not None and name == "ours":
                urls[name] = database
            part = {"url": urls[name], "size": subscriptions, "with_run": with_run}
            filled = _spawn("balances_fill", part)
        check = {"size": subscriptions, "report_dir": scratch}
        ours = [_spawn("balances_check", {**check, "url": urls["ours"]}) for _ in range(samples)]
        # One request per subscription, the way before: counted on the virtual clock, once.
        theirs = _spawn("balances_check", {**check, "url": urls["yardstick"]})
    first = ours[0]
    result: dict[str, Any] = {
        "benchmark": "balances",
        "size": subscriptions,
        "samples": samples,
        **_spread("seconds", [sample["seconds"] for sample in ours]),
        "peak_mb": max(sample["peak_mb"] for sample in ours),
        "yardstick": "one request per subscription",
        "yardstick_seconds": round(theirs["seconds"], 3),
        "yardstick_seconds_min": round(theirs["seconds"], 3),
        "yardstick_seconds_max": round(theirs["seconds"], 3),
        "ratio": round(statistics.median(s["seconds"] for s in ours) / theirs["seconds"], 4),
        "ratio_min": round(min(s["seconds"] for s in ours) / theirs["seconds"], 4),
        "ratio_max": round(max(s["seconds"] for s in ours) / theirs["seconds"], 4),
        "processing_seconds": round(statistics.median(s["processing_seconds"] for s in ours), 3),
        "wait_seconds": round(first["wait_seconds"], 3),
        "moesif_requests": first["moesif_requests"],
        "requests_429": first["requests_429"],
        "busiest_minute": first["busiest_minute"],
        "batch_requests_per_minute": first["batch_requests_per_minute"],
        "rows": first["rows"],
        "ledger_rows": filled["ledger_rows"],
        "yardstick_moesif_requests": theirs["moesif_requests"],
        "yardstick_wait_seconds": round(theirs["wait_seconds"], 3),
        "yardstick_processing_seconds": round(theirs["processing_seconds"], 3),
        "yardstick_requests_429": theirs["requests_429"],
        "database": urls["ours"].split(":", 1)[0],
    }
    return result


_POST_OPTIONS: dict[str, Any] = {}
"""``--batch-share`` and ``--webhook-per-minute`` when given."""


_RUNNERS = {
    "match": _match,
    "ingest": _ingest,
    "incremental": _incremental,
    "post": _post,
    "balances": _balances,
}


def _spawn(role: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Run one part in a child process and return the JSON it prints last."""
    command = [sys.executable, "-m", "bench", "_child", role, json.dumps(arguments)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"bench: the {role} part failed with exit code {done.returncode}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _child(role: str, arguments: dict[str, Any]) -> int:
    if role == "serve":
        return int(_bench("ingest").serve(arguments["size"]))
    if role.startswith("balances_"):
        result = _balances_part(role, arguments)
    else:
        result = _part(role, arguments)
    result["peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(result))
    return 0


def _bench(name: str) -> Any:
    """Import one benchmark module, in a child: a part's peak memory counts its own imports only
    (the ingest part's process never imports pandas; match's did, 90 MB of it)."""
    return importlib.import_module(f"bench.{name}")


def _balances_part(role: str, arguments: dict[str, Any]) -> dict[str, Any]:
    balances = _bench("balances")
    if role == "balances_fill":
        return dict(
            balances.fill(arguments["url"], arguments["size"], with_run=arguments["with_run"])
        )
    if role == "balances_check":
        return dict(
            balances.check(arguments["url"], arguments["size"], Path(arguments["report_dir"]))
        )
    raise SystemExit(f"bench: unknown part {role}")


def _fill(arguments: dict[str, Any]) -> dict[str, Any]:
    _bench("snapshot").fill(arguments["url"], *_bench("data").generate(arguments["size"]))
    return {}


def _fill_incremental(arguments: dict[str, Any]) -> dict[str, Any]:
    _bench("incremental").fill(arguments["url"], arguments["history"], arguments["window"])
    return {}


def _post(arguments: dict[str, Any]) -> dict[str, Any]:
    options = {k: arguments[k] for k in ("batch_share", "webhook_per_minute") if k in arguments}
    return dict(_bench("post").run(arguments["postings"], Path(arguments["scratch"]), **options))


_PARTS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "ingest_ours": lambda a: dict(_bench("ingest").ours(a["url"])),
    "ingest_yardstick": lambda a: dict(_bench("ingest").yardstick(a["url"])),
    "incremental_fill": _fill_incremental,
    "incremental_ours": lambda a: dict(
        _bench("match").ours(a["url"], Path(a["report_dir"]), _bench("incremental").DAY)
    ),
    "post": _post,
    "fill": _fill,
    "ours": lambda a: dict(_bench("match").ours(a["url"], Path(a["report_dir"]))),
    "yardstick": lambda a: dict(_bench("match").yardstick(a["url"])),
}
"""Each part a child runs, by role; each imports only the benchmark modules it uses."""


def _part(role: str, arguments: dict[str, Any]) -> dict[str, Any]:
    if role not in _PARTS:
        raise SystemExit(f"bench: unknown part {role}")
    return _PARTS[role](arguments)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _measured(
    ours: list[dict[str, Any]], theirs: list[dict[str, Any]], yardstick: str
) -> dict[str, Any]:
    """Return the median and spread of our samples and the yardstick's, and their ratio.

    ``ratio`` is our median over the yardstick's; ``ratio_min`` and ``ratio_max`` the extremes
    of the samples' ratios, each sample's ours over the yardstick's measured beside it.
    """
    seconds = [sample["seconds"] for sample in ours]
    result: dict[str, Any] = {
        "samples": len(ours),
        **_spread("seconds", seconds),
        "peak_mb": max(sample["peak_mb"] for sample in ours),
        "yardstick": yardstick,
    }
    pairs = _paired(ours, theirs)
    if not pairs or len(pairs) < len(ours):
        result.update(yardstick_seconds=None, yardstick_peak_mb=None, ratio=None)
        return result
    their_seconds = [their["seconds"] for _, their in pairs]
    ratios = [sample["seconds"] / their["seconds"] for sample, their in pairs]
    result.update(_spread("yardstick_seconds", their_seconds))
    result["yardstick_peak_mb"] = max(their["peak_mb"] for _, their in pairs)
    result["ratio"] = round(statistics.median(seconds) / statistics.median(their_seconds), 3)
    result["ratio_min"] = round(min(ratios), 3)
    result["ratio_max"] = round(max(ratios), 3)
    return result


def _paired(
    ours: list[dict[str, Any]], theirs: list[dict[str, Any]]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Return each of our samples with the yardstick's measured beside it, where it has one."""
    return [(sample, their) for sample, their in zip(ours, theirs, strict=True) if their["seconds"]]


def _spread(name: str, values: list[float]) -> dict[str, float]:
    """Return the median of ``values`` as ``name``, and their least and greatest."""
    return {
        name: round(statistics.median(values), 3),
        f"{name}_min": round(min(values), 3),
        f"{name}_max": round(max(values), 3),
    }


def _table(results: list[dict[str, Any]]) -> str:
    headers = ["benchmark", "size", "seconds", "peak_mb", "yardstick", "yardstick_seconds", "ratio"]
    rows = [headers] + [
        ["" if result.get(key) is None else str(result.get(key)) for key in headers]
        for result in results
    ]
    for result, row in zip(results, rows[1:], strict=False):
        if result.get("status"):
            row[2] = result["status"]
    widths = [max(len(row[column]) for row in rows) for column in range(len(headers))]
    return "\n".join(
        "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


if __name__ == "__main__":
    raise SystemExit(main())
