"""python -m parpy: parpy's command-line tools."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from parpy import _compare


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def _natural(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {value}")
    return value


def _worker_counts(text: str) -> list[int]:
    counts = [_positive(part.strip()) for part in text.split(",") if part.strip()]
    if not counts:
        raise argparse.ArgumentTypeError("no worker counts")
    return counts


def _backend_names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in _compare.BACKENDS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown backend {', '.join(map(repr, unknown)) or '(none given)'}: "
            f"choose from {','.join(_compare.BACKENDS)}"
        )
    return names


def _output(text: str) -> str:
    folder = os.path.dirname(text) or "."
    if text != "-" and not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"no such directory: {folder}")
    return text


# ---- python -m parpy compare -------------------------------------------------


def _add_compare(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    workloads = "; ".join(f"{name}: {w} ({w.about})" for name, w in _compare.WORKLOADS.items())
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
        choices=list(_compare.WORKLOADS),
        metavar="WORKLOAD",
        help=f"a built-in workload (default: %(default)s). {workloads}",
    )
    add(
        "--workers",
        type=_worker_counts,
        metavar="N,N,...",
        help="worker counts to sweep (default: 1, the powers of two below the CPU count, "
        "and the CPU count)",
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
        help=f"backends to run (default: all of {','.join(_compare.BACKENDS)}; serial always runs)",
    )
    add("--count", type=_positive, help="items in the workload (default: its own)")
    add("--json", type=_output, metavar="FILE", help="also write the report as JSON ('-': stdout)")
    add("--plot", type=_output, metavar="FILE.png", help="also save the report's plot")
    add(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="a progress bar on stderr (default: when stderr is a terminal)",
    )
    parser.set_defaults(run=_run_compare)


def _run_compare(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib: pip install matplotlib")
    workload = _compare.WORKLOADS[args.workload]
    try:
        report = _compare.compare(
            args.workload,
            workload.items(args.count),
            backends=args.backends,
            workers=args.workers,
            repeat=args.repeat,
            warmup=args.warmup,
            progress=args.progress,
        )
    except _compare.MismatchError as exc:
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
