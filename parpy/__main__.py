"""python -m parpy: parpy's command-line tools."""

from __future__ import annotations

import argparse
import contextlib
import inspect
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from parpy import comparison
from parpy._support import progress as _progress
from parpy.crawler import CrawlResult, crawl
from parpy.pipeline import BACKENDS as PIPELINE_BACKENDS


def _integer(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be >= {least}, not {value}")
    return value


def _positive(text: str) -> int:
    return _integer(text, 1)


def _natural(text: str) -> int:
    return _integer(text, 0)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be > 0 and finite, not {text}")
    return value


def _worker_counts(text: str) -> list[int]:
    parts = [part.strip() for part in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(f"an empty worker count in {text!r}")
    counts = [_positive(part) for part in parts]
    try:
        return comparison.worker_counts(counts)
    except ValueError as exc:  # over the bound
        raise argparse.ArgumentTypeError(str(exc)) from None


def _backend_names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in comparison.BACKENDS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown backend {', '.join(map(repr, unknown)) or '(none given)'}: "
            f"choose from {','.join(comparison.BACKENDS)}"
        )
    return names


def _output(text: str) -> str:
    folder = os.path.dirname(text) or "."
    if text != "-" and not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"no such directory: {folder}")
    return text


# ---- python -m parpy compare -------------------------------------------------


def _add_compare(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    workloads = "; ".join(f"{name}: {w} ({w.about})" for name, w in comparison.WORKLOADS.items())
    parser = commands.add_parser(
        "compare",
        help="time one workload on serial Python, threading, multiprocessing, "
        "concurrent.futures and parpy",
        description="Run one workload on every backend, check that they agree, and print each "
        "one's times, speedups and efficiency over a sweep of worker counts (the table on "
        "stdout, progress on stderr). The Python backends run the pure-Python twin of the "
        "kernel that the parpy backends run.",
    )
    add = parser.add_argument
    add(
        "workload",
        nargs="?",
        default="iterative",
        choices=list(comparison.WORKLOADS),
        metavar="WORKLOAD",
        help=f"a built-in workload (default: %(default)s). {workloads}",
    )
    add(
        "--workers",
        type=_worker_counts,
        metavar="N,N,...",
        help="worker counts to sweep, each at most "
        f"{comparison.WORKERS_PER_CPU} x the CPU count (default: 1, the powers of two below the "
        "CPU count, and the CPU count; for crawl, "
        f"{','.join(map(str, comparison.CRAWL_WORKERS))})",
    )
    add("--repeat", type=_positive, default=5, help="timed runs of each (default: %(default)s)")
    add(
        "--warmup",
        type=_natural,
        default=1,
        help="untimed runs of each before them; the first is checked (default: %(default)s)",
    )
    add(
        "--backends",
        type=_backend_names,
        metavar="NAME,...",
        help=f"backends to run, of {','.join(comparison.BACKENDS)} (default: all but "
        f"{','.join(comparison.DASK_BACKENDS)}, which need Dask and start a local cluster "
        f"unless given --dask, and {','.join(comparison.TOOL_BACKENDS)}, which start servers "
        "of their own; serial always runs)",
    )
    add(
        "--dask",
        metavar="ADDRESS",
        help="run the Dask backends (and, without --backends, every other) on the cluster whose "
        "scheduler is at ADDRESS (e.g. tcp://scheduler:8786)",
    )
    add(
        "--pp-servers",
        metavar="N|HOST:PORT,...",
        help="for the pp backend: start N ppservers on 127.0.0.1, or use the running ones at "
        "these addresses (with --pp-secret)",
    )
    add("--pp-secret", metavar="SECRET", help="the secret of the ppservers at --pp-servers")
    add(
        "--celery-broker",
        metavar="URL",
        help="for the celery backend: a running Redis broker (redis://host:port/db) with "
        "workers; by default compare starts redis-server and workers on 127.0.0.1",
    )
    add(
        "--count",
        type=_positive,
        help="items in the workload, for crawl its pages (default: its own)",
    )
    add("--json", type=_output, metavar="FILE", help="also write the report as JSON ('-': stdout)")
    add(
        "--plot",
        type=_output,
        metavar="FILE.png",
        help="also save the report's plot, in the format of its extension (png, pdf, svg, ...)",
    )
    add(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="a progress bar on stderr (default: when stderr is a terminal)",
    )
    parser.set_defaults(run=_run_compare)


def _check_plot(path: str, parser: argparse.ArgumentParser) -> None:
    """A usage error unless matplotlib is installed and can write ``path``'s format."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        parser.error("--plot needs matplotlib: pip install matplotlib")
    formats = FigureCanvasBase.get_supported_filetypes()
    ext = os.path.splitext(path)[1][1:].lower()
    if ext not in formats:
        parser.error(
            f"--plot {path}: {f'no format {ext!r}' if ext else 'no extension'}: "
            f"matplotlib writes {', '.join(sorted(formats))}"
        )


def _run_compare(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.plot is not None:
        _check_plot(args.plot, parser)
    workload = comparison.WORKLOADS[args.workload]
    with contextlib.ExitStack() as stack:
        client = None
        if args.dask is not None:
            client = stack.enter_context(_dask_client(args.dask, parser))
        try:  # the backends asked for, with Dask where they need it
            comparison.backend_names(args.backends, client)
        except (ImportError, ValueError) as exc:
            parser.error(str(exc))
        try:
            report = comparison.compare(
                args.workload,
                workload.items(args.count),
                backends=args.backends,
                workers=args.workers,
                repeat=args.repeat,
                warmup=args.warmup,
                progress=args.progress,
                client=client,
                pp_servers=_pp_servers(args.pp_servers),
                pp_secret=args.pp_secret,
                celery_broker=args.celery_broker,
            )
        except comparison.MismatchError as exc:
            print(f"{parser.prog}: the backends disagree: {exc}", file=sys.stderr)
            return 1
    if args.json == "-":
        print(report.to_json())
    else:
        print(report)
    if args.json not in (None, "-"):
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(report.to_json())
        print(f"wrote {args.json}", file=sys.stderr)
    if args.plot is not None:
        report.plot().savefig(args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


# ---- python -m parpy crawl ---------------------------------------------------


def _add_crawl(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    default = {name: p.default for name, p in inspect.signature(crawl).parameters.items()}
    parser = commands.add_parser(
        "crawl",
        help="crawl from URLs, breadth first, and print what each page gave",
        description="Fetch the URLs and, up to --depth links away, the pages they link to "
        "(parpy.crawl: a pipeline of fetches, then parpy.extract_links). Prints a table of the "
        "pages (their status, type, size, links and error) on stdout, progress on stderr. "
        "Failed pages are part of the result: the exit status is 0 whenever the crawl "
        "finishes, 130 on Ctrl-C (after printing the pages fetched so far).",
    )
    add = parser.add_argument
    add("urls", nargs="+", metavar="URL", help="http or https URLs to start from")
    add(
        "--depth",
        type=_natural,
        default=default["depth"],
        help="links to follow from the start URLs (default: %(default)s: the start URLs only)",
    )
    add(
        "--workers",
        type=_positive,
        default=default["workers"],
        help="fetches at once (default: %(default)s)",
    )
    add(
        "--per-host",
        type=_positive,
        default=default["per_host"],
        help="fetches at once to one host (default: %(default)s)",
    )
    add(
        "--timeout",
        type=_seconds,
        default=default["timeout"],
        metavar="SECONDS",
        help="for each request (default: %(default)s)",
    )
    add("--max-pages", type=_natural, metavar="N", help="fetch at most N URLs (default: no limit)")
    add(
        "--same-host",
        action=argparse.BooleanOptionalAction,
        default=default["same_host"],
        help="follow links to the start URLs' hosts only (default: %(default)s)",
    )
    add(
        "--robots",
        action=argparse.BooleanOptionalAction,
        default=default["respect_robots"],
        help="obey each host's robots.txt (default: %(default)s)",
    )
    add(
        "--backend",
        choices=PIPELINE_BACKENDS,
        default=default["backend"],
        help="the pipeline's backend (default: %(default)s)",
    )
    add(
        "--json",
        type=_output,
        metavar="FILE",
        help="also write the result as JSON ('-': to stdout, instead of the table)",
    )
    add(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="a progress bar on stderr (default: when stderr is a terminal)",
    )
    parser.set_defaults(run=_run_crawl)


def _run_crawl(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        progress = _progress.wanted(args.progress)
    except ImportError as exc:
        parser.error(f"--progress: {exc}")
    try:
        result = crawl(
            args.urls,
            depth=args.depth,
            workers=args.workers,
            same_host=args.same_host,
            timeout=args.timeout,
            max_pages=args.max_pages,
            per_host=args.per_host,
            respect_robots=args.robots,
            progress=progress,
            backend=args.backend,
        )
    except (TypeError, ValueError) as exc:  # a URL crawl() does not take
        parser.error(str(exc))
    except KeyboardInterrupt as exc:
        partial = getattr(exc, "result", None)
        if partial is not None:
            _print_crawl(partial, args.json)
        raise
    _print_crawl(result, args.json)
    return 0


def _print_crawl(result: CrawlResult, json_file: str | None) -> None:
    """The table on stdout, or the JSON there with --json -; the JSON to the file."""
    if json_file == "-":
        print(result.to_json(indent=2))
        return
    print(result)
    if json_file is not None:
        with open(json_file, "w", encoding="utf-8") as f:
            f.write(result.to_json(indent=2) + "\n")
        print(f"wrote {json_file}", file=sys.stderr)


def _pp_servers(text: str | None) -> int | str | None:
    """--pp-servers: a number, or the addresses as compare() takes them."""
    return int(text) if text is not None and text.isdigit() else text


def _dask_client(address: str, parser: argparse.ArgumentParser) -> Any:
    try:
        from distributed import Client
    except ImportError:
        parser.error("--dask needs Dask's distributed scheduler: pip install 'parpy[dask]'")
    try:
        return Client(address, timeout=30)
    except (OSError, ValueError, TypeError) as exc:  # unreachable, or not a scheduler address
        parser.error(f"--dask {address}: cannot connect: {exc}")


# ---- python -m parpy fib -----------------------------------------------------


def _add_fib(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "fib",
        help="print F(N) in decimal, exactly",
        description="Print the Fibonacci number F(N) in decimal, exactly (parpy's kernels, "
        "and parpy.to_decimal for the digits).",
    )
    parser.add_argument("n", type=_natural, metavar="N", help="which Fibonacci number, >= 0")
    parser.add_argument(
        "--algorithm",
        choices=("doubling", "iterative", "recursive"),
        default="doubling",
        help="fast doubling, the loop a, b = b, a + b, or naive recursion (N <= 93) "
        "(default: %(default)s)",
    )
    parser.set_defaults(run=_run_fib)


def _run_fib(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import parpy

    kernel = {
        "doubling": parpy.fib,
        "iterative": parpy.fib_iterative,
        "recursive": parpy.fib_recursive,
    }[args.algorithm]
    try:
        digits = parpy.to_decimal(kernel(args.n))
    except (OverflowError, MemoryError) as exc:
        parser.error(f"F({args.n}): {exc}")
    sys.stdout.write(digits + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parpy", description=__doc__)
    commands = parser.add_subparsers(title="commands", dest="command", required=True)
    _add_compare(commands)
    _add_crawl(commands)
    _add_fib(commands)
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace, argparse.ArgumentParser], int] = args.run
    try:
        return run(args, commands.choices[args.command])
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
