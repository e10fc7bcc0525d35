"""Helpers shared by the test modules: a Fibonacci oracle and child Pythons.

Everything that can hang (a child process, a line from its output) takes a
timeout, so that a deadlock fails a test instead of hanging the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

LOG2_PHI = 0.69424191363061737991  # F(n) has about n * LOG2_PHI bits
FIB_GMP_MAX_N = 197945663547  # largest n whose F(n) fits in a GMP integer here
U64 = 1 << 64

# Errors parpy raises for bad input, for ``except`` clauses in loops.
INPUT_ERRORS = (TypeError, ValueError, OverflowError, MemoryError)


class Index:
    """Not an int, but usable as one through __index__."""

    def __init__(self, value):
        self.value = value

    def __index__(self):
        return self.value


# ---- oracle ------------------------------------------------------------------


@functools.cache
def fib_table(n_max: int) -> tuple[int, ...]:
    """F(0) .. F(n_max) by the plain loop: independent of the code under test."""
    table = [0, 1]
    while len(table) <= n_max:
        table.append(table[-1] + table[-2])
    return tuple(table[: n_max + 1])


def fib_exact(n: int) -> int:
    """F(n) for moderate n, by the plain loop (cached per table size)."""
    return fib_table(max(n, 1))[n]


def mismatches(got, expected):
    """Indices (at most 10) where two equal-length sequences differ."""
    assert len(got) == len(expected), (len(got), len(expected))
    return [i for i, (g, e) in enumerate(zip(got, expected, strict=True)) if g != e][:10]


# ---- child Pythons -------------------------------------------------------------

# For a child script: mapped(), the bytes of address space the process maps now.
MAPPED = """
def mapped():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
"""


def child_env(**overrides: str | None) -> dict[str, str]:
    """The environment for a child Python that imports parpy from the checkout.

    OMP_NUM_THREADS is removed unless given; a value of None removes a name.
    """
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + path if path else "")
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def child_code(body: str, *, rlimits: dict[str, int] | None = None) -> str:
    """A child script: optional resource limits set first, then ``body``."""
    head = ["import resource"]
    for name, value in (rlimits or {}).items():
        head.append(f"resource.setrlimit(resource.{name}, ({value}, {value}))")
    return "\n".join(head) + "\n" + textwrap.dedent(body)


def run_python(
    body: str,
    *,
    timeout: float = 60,
    rlimits: dict[str, int] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Runs ``body`` in a fresh Python and returns its completed process.

    A child that outlives ``timeout`` is killed and the test fails.
    """
    try:
        return subprocess.run(
            [sys.executable, "-c", child_code(body, rlimits=rlimits)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env or child_env(),
            cwd=REPO,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"child Python did not finish within {timeout} s\n"
            f"stdout: {exc.stdout!r}\nstderr: {exc.stderr!r}"
        ) from None


@dataclasses.dataclass
class ChildResult:
    returncode: int | None  # None: killed at the deadline
    stdout: str
    stderr: str

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


class BackgroundPython:
    """A child Python started now and collected later, with a deadline."""

    def __init__(self, body: str, *, rlimits: dict[str, int] | None = None, env=None):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", child_code(body, rlimits=rlimits)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env or child_env(),
            cwd=REPO,
        )
        self._result: ChildResult | None = None

    def result(self, deadline: float) -> ChildResult:
        """Waits until the monotonic ``deadline``; a child still running is killed."""
        if self._result is None:
            try:
                out, err = self.proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
                self._result = ChildResult(self.proc.returncode, out, err)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, err = self.proc.communicate(timeout=30)
                self._result = ChildResult(None, out, err)
        return self._result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=30)


class LineReader:
    """Reads lines from a child's stdout pipe (bytes) with a timeout per line."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.fd = proc.stdout.fileno()
        self.buffer = b""
        self.seen: list[str] = []

    def readline(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line from the child within {timeout} s; seen {self.seen}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    raise AssertionError(f"child closed stdout; seen {self.seen}")
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        text = line.decode()
        self.seen.append(text)
        return text

    def expect(self, prefix: str, timeout: float) -> str:
        line = self.readline(timeout)
        assert line.startswith(prefix), f"expected {prefix!r}, got {line!r}; seen {self.seen}"
        return line


def start_interactive(body: str, *args: str) -> tuple[subprocess.Popen, LineReader]:
    """Starts a child (``sys.argv[1:]`` is ``args``) whose stdout is read line by line."""
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", textwrap.dedent(body), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
        cwd=REPO,
    )
    return proc, LineReader(proc)


@contextlib.contextmanager
def interactive(body: str, *args: str) -> Iterator[tuple[subprocess.Popen, LineReader]]:
    """start_interactive for a with block: a child still running at its end is killed."""
    proc, out = start_interactive(body, *args)
    try:
        yield proc, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)


def interrupt_rounds(
    proc: subprocess.Popen, out: LineReader, *, pause: float, rounds: int = 2, timeout: float = 60
) -> list[float]:
    """Ctrl-C, ``rounds`` times: once the child prints "READY k", waits ``pause``
    seconds, sends SIGINT and waits for "INTERRUPTED k". Returns the seconds
    from each SIGINT to its line."""
    latencies = []
    for round in range(rounds):
        out.expect(f"READY {round}", timeout=timeout)
        time.sleep(pause)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out.expect(f"INTERRUPTED {round}", timeout=timeout)
        latencies.append(time.monotonic() - sent)
    return latencies


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    """Waits for a child to exit (killing it after ``timeout``)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
        raise AssertionError(f"child did not exit within {timeout} s; stderr: {err!r}") from None
    return proc.returncode, out.decode(), err.decode()


def local_cluster():
    """The Dask tests' cluster: a LocalCluster of two worker processes of one
    thread each, on loopback (its dashboard on a free port)."""
    import logging

    import distributed

    return distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
        silence_logs=logging.CRITICAL,
    )
