"""python -m parpy: parpy's command-line tools."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from parpy.compare import add_arguments as add_compare_arguments


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parpy", description=__doc__)
    commands = parser.add_subparsers(title="commands", dest="command", required=True)
    add_compare_arguments(
        commands.add_parser(
            "compare",
            help="time one Fibonacci batch on serial Python, threading, multiprocessing and parpy",
            description="Time one Fibonacci batch on serial Python, threading, multiprocessing "
            "and parpy, check that they agree, and print their times and speedups.",
        )
    )
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace, argparse.ArgumentParser], int] = args.run
    return run(args, commands.choices[args.command])


if __name__ == "__main__":
    sys.exit(main())
