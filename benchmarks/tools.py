"""The README's tables of the material's tools: threading, multiprocessing, Parallel Python (pp)
and Celery, with Dask and parpy, on the Fibonacci loop, on tiny tasks and on the crawl.

    python benchmarks/tools.py [--repeat 5] [--json FILE]

(from the repository root, with ``pip install -e '.[test]'``: pp, Celery, redis-server, Dask.)

One run of one script: each workload is one ``parpy.compare`` over every backend at 1 and 2
workers, and the tables below come from those reports. Columns:

- time at 1 and at 2 workers (medians of the timed runs), and the speedup of 2 over serial;
- per item on tiny tasks (Fibonacci table only): on the "tiny" workload (TINY items of about a
  microsecond of Python work each), the time at 1 worker per item, work included: serial's is
  the work itself, the rest is what the backend adds per item (for the ``[chunksize=1]`` rows,
  one task or job per item: the cost of a task);
- start-up: seconds to start the backend's pool, processes, servers or cluster at 2 workers,
  outside the timed runs.

Rows marked busy were measured while other processes kept cores busy (see the report).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import parpy
from parpy.comparison import WORKLOADS

BACKENDS = (
    "serial,threading,multiprocessing,process-pool,pp,celery,dask,parpy,parpy-pool,parpy-dask"
)
WORKERS = [1, 2]
TINY = 1000  # items of the tiny workload: a task per item costs Celery milliseconds


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
    """Markdown rows: backend, time at 1 and 2, speedup at 2, (per item on tiny tasks),
    start-up."""
    serial = _median_time(report, "serial", 1)
    head = "| backend | 1 worker | 2 workers | speedup (2) |"
    head += " per item on tiny tasks |" if tiny is not None else ""
    lines = [head + " start-up |", "|---" * (head.count("|")) + "|"]
    for backend in dict.fromkeys(row.backend for row in report.rows):
        one, two = _median_time(report, backend, 1), _median_time(report, backend, 2)
        cells = [backend, _ms(one), _ms(two)]
        cells.append("-" if two is None or serial is None else f"{serial / two:.2f}x")
        if tiny is not None:
            t1 = _median_time(tiny, backend, 1)
            cells.append("-" if t1 is None else f"{t1 / tiny.items * 1e6:.1f} µs")
        start = _startup(report, backend, 2 if two is not None else 1)
        cells.append("-" if not start else f"{start:.2f} s")
        lines.append("| " + " | ".join(cells) + " |")
    for skip in report.skipped:
        lines.append(f"| {skip.backend} | skipped: {skip.reason} |")
    return lines


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each (default: 3)")
    parser.add_argument("--json", metavar="FILE", help="also write the three reports as JSON")
    args = parser.parse_args()
    began = time.monotonic()
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.2f} before\n"
    )
    settings = dict(workers=WORKERS, repeat=args.repeat, progress=False)
    fib = parpy.compare("iterative", backends=BACKENDS, **settings)
    tiny = parpy.compare("tiny", WORKLOADS["tiny"].items(TINY), backends=BACKENDS, **settings)
    crawl = parpy.compare("crawl", backends=BACKENDS.replace(",parpy-dask", ""), **settings)
    for title, report, per_item in (("Fibonacci loop", fib, tiny), ("Crawl", crawl, None)):
        print(f"### {title}: {report.work}\n")
        print("\n".join(table(report, per_item)))
        print()
        print("\n".join(f"- {text}" for text in report.verdicts.values()))
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
