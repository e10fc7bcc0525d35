"""The README's lead: the default comparison, its plot and its table.

    python benchmarks/readme_figures.py [--output docs/compare.png]

(from the repository root, with parpy and matplotlib installed: ``pip install -e '.[test]'``)

Runs what ``python -m parpy compare`` runs with its defaults, ``parpy.compare("iterative")``:
the book's loop over the workload's own 120 values of n on every backend, on 1 worker, the
powers of two below the CPU count and the CPU count, median of 5 runs after 1 warm-up. Writes
the report's plot to ``docs/compare.png`` (900 x 400 px) and prints on stdout the Markdown that
the README shows: the command's output in a code block, the figure, and the verdicts as a list.
On stderr: how long it took, and the load average before and after. Run it on a quiet machine:
other processes' work shows up in the figures.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time
from pathlib import Path

import parpy

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT, DPI = 9.0, 4.0, 100  # inches, and dots per inch: 900 x 400 px
BUSY = 0.5  # a load average above this, per CPU, makes the figures noisy


def png_size(path: Path) -> tuple[int, int]:
    """The width and height of a PNG file, from its IHDR chunk."""
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG")
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def markdown(report: parpy.Report, figure: str) -> str:
    """The README's lead: the terminal output, the figure and the verdicts."""
    return "\n".join(
        [
            "```text",
            "$ python -m parpy compare",
            str(report),
            "```",
            "",
            f"![python -m parpy compare: time and speedup against workers]({figure})",
            "",
            *(f"- {verdict}" for verdict in report.verdicts.values()),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "docs" / "compare.png",
        help="where to write the plot (default: docs/compare.png)",
    )
    args = parser.parse_args(argv)

    cpus = os.cpu_count() or 1
    load = os.getloadavg()[0]
    if load > BUSY * cpus:
        print(
            f"warning: load average {load:.2f} on {cpus} CPUs: the figures will be noisy",
            file=sys.stderr,
        )

    start = time.perf_counter()
    report = parpy.compare("iterative", repeat=5, warmup=1)  # python -m parpy compare
    took = time.perf_counter() - start

    figure = report.plot()
    figure.set_size_inches(WIDTH, HEIGHT)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.output, dpi=DPI)
    size = png_size(args.output)
    if size != (round(WIDTH * DPI), round(HEIGHT * DPI)):
        raise RuntimeError(f"{args.output} is {size[0]} x {size[1]} px")

    print(markdown(report, os.path.relpath(args.output, ROOT)))
    print(
        f"compare took {took:.1f} s; load average {load:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after; wrote {args.output} ({size[0]} x {size[1]} px)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
