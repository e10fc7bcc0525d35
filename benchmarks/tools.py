"""The README's tables of the material's tools: threading, multiprocessing, Parallel Python (pp)
and Celery, with Dask and parpy, on the Fibonacci loop, on tiny tasks and on the crawl.

    python benchmarks/tools.py [--repeat 5] [--json FILE]

(from the repository root, with ``pip install -e '.[test]'``: pp, Celery, redis-server, Dask.)

One run of one script: each workload is one ``parpy.compare`` over every backend at 1 and 2
workers, and the tables below come from those reports. Columns:

- time at 1 and at 2 workers (medians of the timed runs), and the speedup of 2 over serial;
- per-task overhead: on the "tiny" workload (items of about a microsecond of work), the time
  at 1 worker less serial's, per item; what one task costs the backend beyond its work;
- start-up: seconds to start the backend's pool, processes, servers or cluster at 2 workers,
  outside the timed runs.

Rows marked busy were measured while other processes kept cores busy (see the report).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import parpy

BACKENDS = (
    "serial,threading,multiprocessing,process-pool,pp,celery,dask,parpy,parpy-pool,parpy-dask"
)
WORKERS = [1, 2]


def _median_time(report: parpy.Report, backend: str, workers: int) -> float | None:
    for row in report.rows:
        if row.backend == backend and row.workers == workers:
            return row.median
    return None


def _startup(report: parpy.Report, backend: str, workers: int) -> float | None:
    for t in report.timings:
        if t.backend == backend and t.workers == workers:
            return t.startup
    return None


def table(report: parpy.Report, tiny: parpy.Report | None) -> list[str]:
    """Markdown rows: backend, time at 1 and 2, speedup at 2, per-task overhead, start-up."""
    serial = _median_time(report, "serial", 1)
    tiny_serial = _median_time(tiny, "serial", 1) if tiny is not None else None
    lines = [
        "| backend | 1 worker | 2 workers | speedup (2) | per-task overhead | start-up |",
        "|---|---|---|---|---|---|",
    ]
    seen = list(dict.fromkeys(row.backend for row in report.rows))
    for backend in seen:
        one, two = _median_time(report, backend, 1), _median_time(report, backend, 2)
        overhead = "-"
        if tiny is not None and tiny_serial is not None and backend != "serial":
            t1 = _median_time(tiny, backend, 1)
            if t1 is not None:
                overhead = f"{(t1 - tiny_serial) / tiny.items * 1e6:.1f} µs"
        start = _startup(report, backend, 2 if two is not None else 1)
        lines.append(
            f"| {backend} | {_ms(one)} | {_ms(two)} | "
            f"{'-' if two is None or serial is None else f'{serial / two:.2f}x'} | {overhead} | "
            f"{'-' if not start else f'{start:.2f} s'} |"
        )
    for skip in report.skipped:
        lines.append(f"| {skip.backend} | skipped: {skip.reason} | | | | |")
    return lines


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each (default: 5)")
    parser.add_argument("--json", metavar="FILE", help="also write the three reports as JSON")
    args = parser.parse_args()
    began = time.monotonic()
    settings = dict(workers=WORKERS, repeat=args.repeat, progress=False)
    fib = parpy.compare("iterative", backends=BACKENDS, **settings)
    tiny = parpy.compare("tiny", backends=BACKENDS, **settings)
    crawl = parpy.compare("crawl", backends=BACKENDS.replace(",parpy-dask", ""), **settings)
    for title, report in (("Fibonacci loop", fib), ("Tiny tasks", tiny), ("Crawl", crawl)):
        print(f"### {title}: {report.work}\n")
        print("\n".join(table(report, tiny)))
        print()
        print("\n".join(f"- {backend}: {text}" for backend, text in report.verdicts.items()))
        print()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    k: json.loads(r.to_json())
                    for k, r in (("iterative", fib), ("tiny", tiny), ("crawl", crawl))
                },
                f,
                indent=1,
            )
    print(f"took {time.monotonic() - began:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
