"""parpy.lab.divide_and_conquer: one F(n) and its digits split over threads, traced (work,
span, parallelism) and timed on 1 and 2 workers; exact, and stopped by Ctrl-C.

Every blocking wait here has a bound: the lab's calls by their arguments (n about 4 million:
F(n) and its digits in tens of milliseconds), the child Pythons of the Ctrl-C tests by
``finish`` and ``LineReader`` timeouts, and the whole file by pytest-timeout.
"""

from __future__ import annotations

import io
import json
import pickle

import pytest
from _util import finish, interactive, interrupt_rounds

import parpy
from parpy import _core, lab
from parpy.lab import _divide
from parpy.lab._divide import KINDS, DivideReport, Task

N = 4 * 10**6  # F(N) has 2.8 million bits: split on 2 threads, its digits too
SMALLEST = _divide._smallest_split(2)  # the smallest n whose F(n) is split


class NoNative:
    """Stands in for parpy._core: any native call fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"{name} was called: bad input reached the native code")


class SplitOnly:
    """parpy._core for the size check alone: _split_threads (and the kernel it is asked
    about); any other native call fails the test."""

    fib = _core.fib
    _split_threads = staticmethod(_core._split_threads)

    def __getattr__(self, name):
        raise AssertionError(f"{name} was called: bad input reached the native code")


# ---- bad input: an error before any native work ----------------------------------------

BAD = [
    (dict(n=-1), ValueError),
    (dict(n=_divide.MAX_N + 1), ValueError),
    (dict(n=4e6), TypeError),
    (dict(n=True), TypeError),
    (dict(n="4000000"), TypeError),
    (dict(n=N, workers=1), ValueError),
    (dict(n=N, workers=0), ValueError),
    (dict(n=N, workers=lab.MAX_THREADS + 1), ValueError),
    (dict(n=N, workers=2.0), TypeError),
    (dict(n=N, workers=False), TypeError),
    (dict(n=N, repeat=0), ValueError),
    (dict(n=N, repeat=_divide.MAX_REPEAT + 1), ValueError),
    (dict(n=N, repeat="3"), TypeError),
]


@pytest.mark.parametrize("kwargs, error", BAD, ids=[str(kw) for kw, _ in BAD])
def test_bad_input_raises_before_any_native_work(monkeypatch, kwargs, error):
    monkeypatch.setattr(_divide, "_core", NoNative())
    with pytest.raises(error):
        lab.divide_and_conquer(**kwargs)


@pytest.mark.parametrize("n", [0, 93, 10**6, SMALLEST - 1])
def test_an_n_too_small_to_split_names_the_smallest_that_is(monkeypatch, n):
    monkeypatch.setattr(_divide, "_core", SplitOnly())
    with pytest.raises(ValueError, match=f"at least {SMALLEST:,} for parpy.fib to split"):
        lab.divide_and_conquer(n, workers=2)


def test_the_smallest_n_named_is_where_fib_starts_to_split():
    # F(n) of 2**21 bits: n about 3.0 million (the README's rule).
    assert 3.0e6 < SMALLEST < 3.1e6
    for workers in (2, 6):
        assert _core._split_threads(parpy.fib, SMALLEST - 1, workers) == 1
        assert _core._split_threads(parpy.fib, SMALLEST, workers) > 1
    assert _divide._smallest_split(6) == SMALLEST


def test_the_smallest_n_is_traced():
    report = lab.divide_and_conquer(SMALLEST, workers=2, repeat=1)
    assert report.fib.threads == report.to_decimal.threads == 2


# ---- the traced runs are exact ---------------------------------------------------------


@pytest.mark.parametrize("workers", [2, 3, 6])
def test_the_traced_values_are_exact(workers):
    expected = parpy.fib(N, workers=1)  # GMP's mpz_fib_ui, on one thread
    value, threads, tasks = _core._lab_divide("fib", N, workers)
    assert value == expected and threads == (6 if workers >= 6 else 2)
    assert {t[2] for t in tasks} == set(range(threads))
    digits, threads, tasks = _core._lab_divide("to_decimal", expected, workers)
    assert threads == workers and {t[2] for t in tasks} <= set(range(threads))
    assert digits == parpy.to_decimal(expected, workers=1)  # GMP's mpz_get_str
    # And checked without GMP: the last digits, and the count of them.
    assert int(digits[-40:]) == expected % 10**40
    assert 10 ** (len(digits) - 1) <= expected < 10 ** len(digits)


class WrongFib:
    """parpy._core whose fib on one worker is off by one."""

    def __getattr__(self, name):
        return getattr(_core, name)

    @staticmethod
    def fib(n, *, workers=None):
        value = _core.fib(n, workers=workers)
        return value + 1 if workers == 1 else value

    @staticmethod
    def _split_threads(kernel, x, workers):
        return _core._split_threads(_core.fib, x, workers)


def test_a_call_that_differs_from_the_trace_is_an_error(monkeypatch):
    monkeypatch.setattr(_divide, "_core", WrongFib())
    with pytest.raises(RuntimeError, match="fib on 1 worker differs from the traced split"):
        lab.divide_and_conquer(N, workers=2, repeat=1)


# ---- work, span, parallelism -----------------------------------------------------------


@pytest.fixture(scope="module")
def report():
    return lab.divide_and_conquer(N, workers=2, repeat=2)


def test_work_span_and_parallelism(report):
    assert report.n == N and report.workers == 2
    assert [r.computation for r in report.runs] == ["fib", "to_decimal"]
    assert (report.fib, report.to_decimal) == report.runs
    for r in report.runs:
        trace = report.tasks[r.computation]
        assert r.workers == 2 and r.threads == 2 and r.tasks == len(trace) > 0
        assert r.work == pytest.approx(sum(t.end - t.start for t in trace))
        assert r.work >= r.span > 0
        assert r.parallelism == pytest.approx(r.work / r.span) and r.parallelism >= 1
        assert r.bound == min(r.threads, r.parallelism)
        # The chain fits in the run, and the threads cannot have done more than run the
        # whole time each.
        assert r.span <= r.elapsed * (1 + 1e-9) + 1e-9
        assert r.work <= r.threads * r.elapsed * (1 + 1e-9) + 1e-9
        assert 0 <= r.serial <= r.elapsed
        assert r.one > 0 and r.many > 0 and r.speedup == pytest.approx(r.one / r.many)


def test_the_traces_show_the_recursion(report):
    fib, dec = report.tasks["fib"], report.tasks["to_decimal"]
    for trace in (fib, dec):
        assert all(isinstance(t, Task) and t.what in KINDS for t in trace)
        assert all(d < i for i, t in enumerate(trace) for d in t.deps)
        assert all(0 <= t.start <= t.end for t in trace)
    # F(n): GMP's start, then each doubling step's two squarings on the two threads, each
    # taking the step before's result.
    assert fib[0].what == "start" and fib[0].deps == ()
    steps = sorted({t.step for t in fib if t.what == "square"})
    assert steps == list(range(1, len(steps) + 1))
    for step in steps:
        squares = [t for t in fib if t.what == "square" and t.step == step]
        assert len(squares) == 2 and {t.thread for t in squares} == {0, 1}, squares
    # The digits: the shared powers of ten first (the top one on the second thread), then
    # one division at the top, then a binary tree of divisions down to leaves of digits.
    assert [t.what for t in dec[:2]] == ["powers", "powers"] and dec[0].deps == dec[1].deps == ()
    assert {t.thread for t in dec[:2]} == {0, 1}
    tops = [t for t in dec if t.what == "divide" and t.step == 0]
    assert len(tops) == 1 and set(tops[0].deps) == {0, 1}
    leaves = [t for t in dec if t.what == "digits"]
    assert len(leaves) & (len(leaves) - 1) == 0 and len(leaves) >= 2
    assert len([t for t in dec if t.what == "divide"]) == len(leaves) - 1


def test_span_and_alone_on_a_made_up_trace():
    #    a (0-1)
    #   /        \
    #  b (1-4)   c (1-2)
    #   \        /
    #    d (4-5)
    trace = [
        Task("start", 0, 0, 1, 0.0, 1.0, ()),
        Task("square", 1, 1, 1, 1.0, 2.0, (0,)),
        Task("square", 1, 0, 1, 1.0, 4.0, (0,)),
        Task("combine", 1, 0, 1, 4.0, 5.0, (2, 1)),
    ]
    assert _divide._span(trace) == (5.0, [0, 2, 3])
    assert _divide._alone(trace) == 1.0 + 2.0 + 1.0  # a, then b after c ended, then d
    with pytest.raises(RuntimeError, match="depends on a later task"):
        _divide._span([Task("start", 0, 0, 1, 0.0, 1.0, (1,)), trace[0]])


@pytest.mark.parametrize("workers", [3, 6])
def test_more_workers(workers):
    report = lab.divide_and_conquer(N, workers=workers, repeat=1)
    assert report.workers == workers
    # fib: two threads, or six (each squaring split in three); to_decimal: every worker.
    assert report.fib.threads == (6 if workers == 6 else 2)
    assert report.to_decimal.threads == workers
    kinds = {t.what for t in report.tasks["fib"]}
    assert {"split", "join"} <= kinds if workers == 6 else not {"split", "join"} & kinds


def test_workers_none_is_the_thread_count_and_at_least_two():
    try:
        parpy.set_num_threads(1)
        assert lab.divide_and_conquer(N, repeat=1).workers == 2
        parpy.set_num_threads(3)
        assert lab.divide_and_conquer(N, repeat=1).workers == 3
    finally:
        parpy.set_num_threads(None)


# ---- the report --------------------------------------------------------------------------


def test_the_report_prints_renders_and_gives_its_figures(report):
    text = str(report)
    lines = text.splitlines()
    assert lines[0].startswith("divide and conquer: F(4,000,000)")
    assert lines[1].split() == [
        "computation", "threads", "tasks", "work", "span", "work/span",
        "1", "worker", "2", "workers", "speedup", "bound",
    ]  # fmt: skip
    assert lines[2].startswith("fib ") and lines[3].startswith("to_decimal ")
    assert "Amdahl's serial part" in text and "bound: min(threads, work/span)" in text
    over = any(r.work > r.one for r in report.runs)
    assert ("the split's overhead, which work/span does not see" in text) == over
    page = report._repr_html_()
    assert page.startswith('<div class="parpy-lab">') and "<table>" in page
    assert "<td>to_decimal</td>" in page
    assert repr(report).startswith("<parpy.lab.DivideReport: F(4,000,000) on 2 workers: fib ")
    figures = report.as_dict()
    assert set(figures) == {"n", "workers", "cpus", "cpus_available", "runs", "tasks"}
    assert [r["computation"] for r in figures["runs"]] == ["fib", "to_decimal"]
    assert set(figures["runs"][0]) == set(_divide.DivideRun._fields)
    assert len(figures["tasks"]["to_decimal"]) == report.to_decimal.tasks
    assert set(figures["tasks"]["fib"][0]) == set(Task._fields)
    json.dumps(figures, allow_nan=False)
    assert str(pickle.loads(pickle.dumps(report))) == text


def test_fewer_cpus_than_threads_is_said(report):
    alone = DivideReport(report.n, report.runs, report.tasks, cpus=1, cpus_available=1)
    assert "1 CPU available for 2 threads" in str(alone)
    assert ("available for" in str(report)) == (report.cpus_available < 2)


@pytest.mark.unsafe_under(
    "address",
    reason="matplotlib's C++ extensions throw exceptions that GCC's ASan runtime, preloaded "
    "into Python, cannot forward (a CHECK failure in its __cxa_throw interceptor)",
)
def test_the_report_plots(report):
    from matplotlib.figure import Figure

    fig = report.plot()
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    fib, dec, speed = fig.axes
    assert [t.get_text() for t in fib.get_yticklabels()] == ["thread 0", "thread 1"]
    assert {t.get_text() for t in dec.get_legend().get_texts()} == {
        "powers", "divide", "digits", "the span's chain"
    }  # fmt: skip
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=40)
    assert png.getvalue().startswith(b"\x89PNG\r\n\x1a\n")


# ---- Ctrl-C ----------------------------------------------------------------------------

CTRL_C_CHILD = """
import os, sys, time
import parpy
from parpy import lab

calls = {
    # F(10**9): interrupted in the traced split, between two of its tasks.
    "large": lambda: lab.divide_and_conquer(10**9),
    # Many rounds of F(10**7): interrupted wherever a round is, at the end of a call at most.
    "rounds": lambda: lab.divide_and_conquer(10**7, repeat=1000),
}
call = calls[sys.argv[1]]
lab.divide_and_conquer(3 * 10**6 + 10**5, repeat=1)  # the threads of the teams, started
before = len(os.listdir("/proc/self/task"))
for round in range(2):
    print("READY", round, flush=True)
    try:
        call()
    except KeyboardInterrupt:
        print("INTERRUPTED", round, flush=True)
    else:
        print("COMPLETED", round, flush=True)
for _ in range(500):  # a joined thread leaves /proc an instant after pthread_join returns
    after = len(os.listdir("/proc/self/task"))
    if after <= before:
        break
    time.sleep(0.01)
report = lab.divide_and_conquer(3 * 10**6 + 10**5, repeat=1)
print("NEXT", after <= before, report.fib.threads == 2, flush=True)
"""

# Generous for a loaded machine: the split checks between tasks (milliseconds for F(10**9)'s
# first steps), and F(10**7)'s calls on one worker take a fraction of a second.
CTRL_C_LATENCY_BOUND_S = 3


@pytest.mark.parametrize("name, pause", [("large", 0.3), ("rounds", 1.0)])
def test_ctrl_c_stops_it(name, pause):
    with interactive(CTRL_C_CHILD, name) as (proc, out):
        # twice: the first leaves the lab ready for more
        latencies = interrupt_rounds(proc, out, pause=pause)
        assert max(latencies) < CTRL_C_LATENCY_BOUND_S, latencies
        assert out.expect("NEXT", timeout=60).split() == ["NEXT", "True", "True"]
        returncode, _, stderr = finish(proc, timeout=60)
        assert returncode == 0, stderr
