"""``python -m bench [match|ingest|incremental|post] [--quick] [--size N] [--database URL]``.

Each benchmark prints one JSON line (``benchmark``, ``size``, ``seconds``, ``peak_mb`` and, where
it has a yardstick measured in the same run, ``yardstick``, ``yardstick_seconds`` and ``ratio``:
ours over the yardstick's, below 1 is faster), then a table of all of them. Every measured part
runs in a child process of its own, so its peak memory (``ru_maxrss``) is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCHMARKS = ("match", "ingest", "incremental", "post")
QUICK_SIZE = 2_000
DEFAULT_SIZE = 100_000


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["_child"]:
        return _child(arguments[1], json.loads(arguments[2]))
    parser = _parser()
    options = parser.parse_args(arguments)
    unknown = sorted(set(options.benchmarks) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    size = options.size or (QUICK_SIZE if options.quick else DEFAULT_SIZE)
    results = []
    for name in options.benchmarks or list(BENCHMARKS):
        result = _RUNNERS[name](size, options.database)
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
        "--database",
        help="an empty snapshot database URL to fill (default: a temporary SQLite file)",
    )
    return parser


def _match(size: int, database: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="reconcile-bench-") as scratch:
        url = database or f"sqlite:///{Path(scratch) / 'snapshot.db'}"
        _spawn("fill", {"url": url, "size": size})
        ours = _spawn("ours", {"url": url, "report_dir": scratch})
        theirs = _spawn("yardstick", {"url": url})
    result: dict[str, Any] = {
        "benchmark": "match",
        "size": size,
        "seconds": round(ours["seconds"], 3),
        "peak_mb": ours["peak_mb"],
        "yardstick": "datacompy",
        "yardstick_seconds": _rounded(theirs["seconds"]),
        "yardstick_peak_mb": theirs["peak_mb"],
        "ratio": _rounded(ours["seconds"] / theirs["seconds"] if theirs["seconds"] else None),
        "database": url.split(":", 1)[0],
    }
    for key in ("load_seconds", "match_seconds", "report_seconds"):
        result[key] = round(ours[key], 3)
    for key in ("expected_rows", "ledger_rows", "findings"):
        result[key] = ours[key]
    if "note" in theirs:
        result["yardstick_note"] = theirs["note"]
    return result


def _ingest(size: int, database: str | None) -> dict[str, Any]:
    server = subprocess.Popen(
        [sys.executable, "-m", "bench", "_child", "serve", json.dumps({"size": size})],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = json.loads(server.stdout.readline())["url"]
        theirs = _spawn("ingest_yardstick", {"url": url})
        ours = _spawn("ingest_ours", {"url": url})
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=120)
    objects = theirs["objects"]
    return {
        "benchmark": "ingest",
        "size": size,
        "seconds": round(ours["seconds"], 3),
        "peak_mb": ours["peak_mb"],
        "yardstick": "httpx",
        "yardstick_seconds": round(theirs["seconds"], 3),
        "yardstick_peak_mb": theirs["peak_mb"],
        "ratio": round(ours["seconds"] / theirs["seconds"], 3),
        "objects": objects,
        "objects_per_second": round(objects / ours["seconds"]),
        "yardstick_objects_per_second": round(objects / theirs["seconds"]),
        "entries": ours["entries"],
        "database": "sqlite",
    }


def _incremental(size: int, database: str | None) -> dict[str, Any]:
    small = max(size // 20, 1)
    window_entries = max(min(size // 20, 50_000), 100)
    timed = {}
    for history in (size, small):
        with tempfile.TemporaryDirectory(prefix="reconcile-bench-") as scratch:
            url = f"sqlite:///{Path(scratch) / 'snapshot.db'}"
            _spawn("incremental_fill", {"url": url, "history": history, "window": window_entries})
            timed[history] = _spawn("incremental_ours", {"url": url, "report_dir": scratch})
    ours, theirs = timed[size], timed[small]
    return {
        "benchmark": "incremental",
        "size": size,
        "seconds": round(ours["seconds"], 3),
        "peak_mb": ours["peak_mb"],
        "yardstick": f"history {small}",
        "yardstick_seconds": round(theirs["seconds"], 3),
        "yardstick_peak_mb": theirs["peak_mb"],
        "ratio": round(ours["seconds"] / theirs["seconds"], 3),
        "window_entries": window_entries,
        "expected_rows": ours["expected_rows"],
        "ledger_rows": ours["ledger_rows"],
        "database": "sqlite",
    }


def _post(size: int, database: str | None) -> dict[str, Any]:
    postings = min(max(size // 4, 100), 2_000)
    with tempfile.TemporaryDirectory(prefix="reconcile-bench-") as scratch:
        ours = _spawn("post", {"postings": postings, "scratch": scratch})
    return {
        "benchmark": "post",
        "size": size,
        "seconds": round(ours["seconds"], 3),
        "peak_mb": ours["peak_mb"],
        "yardstick": None,
        "yardstick_seconds": None,
        "ratio": None,
        "limit_share": round(ours["limit_share"], 3),
        "share_429": round(ours["share_429"] or 0.0, 4),
        "webhook_share_429": round(ours["webhook_share_429"] or 0.0, 4),
        **{
            key: ours[key]
            for key in (
                "postings",
                "requests",
                "webhook_requests",
                "virtual_seconds",
                "batch_requests_per_minute",
            )
        },
    }


_RUNNERS = {
    "match": _match,
    "ingest": _ingest,
    "incremental": _incremental,
    "post": _post,
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
    from bench import data, incremental, ingest, match, post, snapshot  # noqa: PLC0415 - children only

    if role == "serve":
        return ingest.serve(arguments["size"])
    if role == "ingest_ours":
        result = ingest.ours(arguments["url"])
    elif role == "ingest_yardstick":
        result = ingest.yardstick(arguments["url"])
    elif role == "incremental_fill":
        incremental.fill(arguments["url"], arguments["history"], arguments["window"])
        result = {}
    elif role == "incremental_ours":
        result = match.ours(arguments["url"], Path(arguments["report_dir"]), incremental.DAY)
    elif role == "post":
        result = post.run(arguments["postings"], Path(arguments["scratch"]))
    elif role == "fill":
        snapshot.fill(arguments["url"], *data.generate(arguments["size"]))
        result: dict[str, Any] = {}
    elif role == "ours":
        result = match.ours(arguments["url"], Path(arguments["report_dir"]))
    elif role == "yardstick":
        result = match.yardstick(arguments["url"])
    else:
        raise SystemExit(f"bench: unknown part {role}")
    result["peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(result))
    return 0


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


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
