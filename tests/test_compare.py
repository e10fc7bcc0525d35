"""parpy.compare and python -m parpy: every backend, the same results, and the
backends that cannot run a work reported as skipped.

Small inputs and one or two timed runs: these tests check what compare()
runs and reports, not how fast anything is (benchmarks/bench_compare.py
checks that its times are those of the calls themselves).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import multiprocessing
import statistics
import subprocess
import sys
import threading
import time
import types

import pytest
from _pipe_funcs import double, inc
from _util import REPO, child_env, run_python

import parpy
from parpy import comparison
from parpy._support import progress as _progress
from parpy.report import Report, Skip

EVERY = comparison.backend_names(None, None)  # the default: all but Dask, pp and Celery
PROCESS_BACKENDS = ["multiprocessing", "process-pool"]
NS = [0, 1, 2, 90, 95, 500, 1500, 7]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "parpy", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(),
        cwd=REPO,
    )


def small(work, items, **options):
    """compare() with one timed run, on 1 and 2 workers, no progress bar."""
    return parpy.compare(
        work, items, **{"workers": [1, 2], "repeat": 1, "progress": False, **options}
    )


def rows_of(report):
    return [(row.backend, row.workers) for row in report.rows]


def thread_dependent(x):
    """x on the main thread, x + 1 on any other."""
    return x + (threading.current_thread() is not threading.main_thread())


def no_leftovers(before_threads, deadline=10.0):
    """True once the pools' processes and threads are gone."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if not multiprocessing.active_children() and threading.active_count() <= before_threads:
            return True
        time.sleep(0.05)
    return False


# ---- every backend ------------------------------------------------------------


def test_every_backend_on_a_kernel_checked_and_timed():
    before = threading.active_count()
    report = parpy.compare(parpy.fib_iterative, NS, workers=[1, 2], repeat=2, progress=False)
    assert isinstance(report, Report)
    assert rows_of(report) == [("serial", 1)] + [(b, w) for b in EVERY[1:] for w in (1, 2)]
    assert report.skipped == ()
    assert report.items == len(NS) and report.repeat == 2 and report.warmup == 1
    assert "fib_iterative" in report.work
    assert report.meta["python_runs"] == "parpy.reference.fib_iterative"
    assert report.baseline == statistics.median(report.timings[0].times)
    for timing, row in zip(report.timings, report.rows, strict=True):
        assert len(timing.times) == 2 and all(t > 0 for t in timing.times)
        assert row.speedup == pytest.approx(report.baseline / row.median)
        if timing.backend in PROCESS_BACKENDS:
            assert timing.startup > 0.001  # processes started, outside the timed runs
    for name in EVERY:
        assert name in str(report)
    assert no_leftovers(before), (multiprocessing.active_children(), threading.enumerate())


def test_a_bound_kernel_runs_its_twin_with_the_bound_argument():
    m = 10**9 + 7
    report = small(parpy.fib_mod.bind(m), list(range(0, 3000, 97)))
    assert report.skipped == ()
    assert len(report.rows) == 1 + 2 * (len(EVERY) - 1)
    assert report.meta["python_runs"] == f"parpy.reference.fib_mod(x, {m})"


def test_a_kernel_of_two_arguments_over_tuples():
    report = small(parpy.fib_mod, [(n, 1000 + n) for n in range(0, 5000, 101)])
    assert report.skipped == ()
    assert len(report.rows) == 1 + 2 * (len(EVERY) - 1)
    assert report.meta["python_runs"] == "parpy.reference.fib_mod(*x)"


def test_a_python_callable_runs_everywhere_but_parpy_map():
    report = small(double, list(range(50)))
    assert [s.backend for s in report.skipped] == ["parpy"]
    assert "Python callable" in report.skipped[0].reason
    assert {row.backend for row in report.rows} == set(EVERY) - {"parpy"}
    assert "parpy: skipped" in report.verdicts["parpy"]


@pytest.mark.parametrize("form", ["stages", "callables", "Pipeline"])
def test_a_pipeline_on_every_backend(form):
    stages = [parpy.Stage(inc, 2), parpy.Stage(parpy.fib), parpy.Stage(parpy.to_decimal), len]
    if form == "callables":
        stages = [inc, parpy.fib, parpy.to_decimal, len]
    work = stages
    if form == "Pipeline":
        work = parpy.Pipeline(stages, backend="threading")
    try:
        report = small(work, list(range(0, 3000, 50)))
    finally:
        if form == "Pipeline":
            work.close()
    assert report.skipped == ()
    assert {row.backend for row in report.rows} == set(EVERY)
    assert report.work.startswith("pipeline inc -> fib -> to_decimal -> len")
    assert "parpy.reference.fib" in report.meta["python_runs"]


def test_serial_always_runs_and_backends_may_be_one_string():
    report = small(parpy.fib, NS, backends="parpy, thread-pool")
    assert rows_of(report) == [
        ("serial", 1),
        ("parpy", 1),
        ("parpy", 2),
        ("thread-pool", 1),
        ("thread-pool", 2),
    ]


def test_one_worker_count_and_warmups():
    report = parpy.compare(
        parpy.fib, NS, backends=["parpy"], workers=3, repeat=3, warmup=2, progress=False
    )
    assert rows_of(report) == [("serial", 1), ("parpy", 3)]
    assert [len(t.times) for t in report.timings] == [3, 3] and report.warmup == 2


def test_default_workers():
    assert comparison.default_workers(1) == [1]
    assert comparison.default_workers(2) == [1, 2]
    assert comparison.default_workers(6) == [1, 2, 4, 6]
    assert comparison.default_workers(8) == [1, 2, 4, 8]


# ---- worker counts: bounded, and no more than the items --------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("workers", [10**6, [1, comparison.max_workers() + 1]])
def test_a_worker_count_over_the_bound_is_refused_at_once(workers):
    seen = []

    def work(x):
        seen.append(x)
        return x

    with pytest.raises(ValueError, match=r"workers must be <= \d+ \(64 x the \d+ CPUs\)"):
        parpy.compare(work, range(10), workers=workers, backends="serial,threading")
    assert seen == []


def test_the_bound_is_64_per_cpu():
    assert comparison.max_workers(1) == 64 and comparison.max_workers(4) == 256
    report = parpy.compare(
        inc,
        [1, 2],
        workers=comparison.max_workers(),
        backends="threading",
        repeat=1,
        progress=False,
    )
    assert rows_of(report) == [("serial", 1), ("threading", 2)]


@contextlib.contextmanager
def most_threads():
    """Yields a list whose one element becomes the most Python threads that
    were started and not yet joined at once, inside the block."""
    live: set[threading.Thread] = set()
    most = [0]
    lock = threading.Lock()
    start, join = threading.Thread.start, threading.Thread.join

    def counted_start(self):
        with lock:
            live.add(self)
            most[0] = max(most[0], len(live))
        start(self)

    def counted_join(self, timeout=None):
        join(self, timeout)
        if not self.is_alive():
            with lock:
                live.discard(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(threading.Thread, "start", counted_start)
        patch.setattr(threading.Thread, "join", counted_join)
        yield most


def test_more_workers_than_items_start_one_thread_per_item():
    with most_threads() as most:
        report = parpy.compare(
            inc, range(10), workers=[1, 50], backends="serial,threading", repeat=1, progress=False
        )
    assert most == [10]
    assert rows_of(report) == [("serial", 1), ("threading", 1), ("threading", 10)]
    assert report.meta["workers_capped"] == "50 ran as 10: no more workers than items"


def test_every_backend_runs_at_most_one_worker_per_item():
    report = small(parpy.fib, [5, 6, 7], workers=[1, 2, 50, 100])
    assert rows_of(report) == [("serial", 1)] + [(b, w) for b in EVERY[1:] for w in (1, 2, 3)]
    assert report.meta["workers_capped"] == "50, 100 ran as 3: no more workers than items"
    assert "workers_capped: 50, 100 ran as 3" in str(report)
    assert "workers_capped" not in small(parpy.fib, [5, 6, 7], backends="parpy").meta


def test_thread_map_starts_no_more_threads_than_items():
    with most_threads() as most:
        assert comparison.thread_map(inc, [1, 2], 100) == [2, 3]
    assert most == [2]
    assert comparison.thread_map(inc, [], 4) == []


# ---- the built-in workloads ------------------------------------------------------


@pytest.mark.parametrize("name", sorted(comparison.WORKLOADS))
def test_every_builtin_workload(name):
    workload = comparison.WORKLOADS[name]
    items = workload.items(6)
    assert len(items) == 6 and items == workload.items(6)  # reproducible
    report = parpy.compare(
        name,
        items,
        backends="serial,threading,multiprocessing,parpy",
        workers=2,
        repeat=1,
        progress=False,
    )
    assert report.skipped == ()
    assert report.meta["workload"] == name
    names = [row.backend for row in report.rows]
    assert names == ["serial", "threading", "multiprocessing"] + [
        v.name for v in workload.variants if v.backend == "multiprocessing"
    ] + ["parpy"] + [v.name for v in workload.variants if v.backend == "parpy"]


def test_tiny_sweeps_chunk_sizes_as_backends_of_their_own():
    report = small("tiny", comparison.WORKLOADS["tiny"].items(40), backends="multiprocessing,parpy")
    names = list(dict.fromkeys(row.backend for row in report.rows))
    sizes = comparison.TINY_CHUNKSIZES
    assert names == [
        "serial",
        "multiprocessing",
        *(f"multiprocessing[chunksize={c}]" for c in sizes),
        "parpy",
        *(f"parpy[chunksize={c}]" for c in sizes),
    ]
    # the variants share their backend's pool: the same start-up
    startup = {(t.backend, t.workers): t.startup for t in report.timings}
    for c in sizes:
        for w in (1, 2):
            assert startup[f"multiprocessing[chunksize={c}]", w] == startup["multiprocessing", w]
    assert all(name in report.verdicts for name in names)


def test_skewed_runs_each_schedule():
    report = small("skewed", comparison.WORKLOADS["skewed"].items(20), backends="parpy")
    names = list(dict.fromkeys(row.backend for row in report.rows))
    assert names == [
        "serial",
        "parpy",
        "parpy[schedule=static]",
        "parpy[schedule=dynamic]",
        "parpy[schedule=guided]",
    ]


def test_a_workload_name_without_items_uses_its_own(monkeypatch):
    fewer = dataclasses.replace(comparison.WORKLOADS["iterative"], count=5)
    monkeypatch.setitem(comparison.WORKLOADS, "iterative", fewer)
    report = parpy.compare("iterative", backends="parpy", workers=1, repeat=1, progress=False)
    assert report.items == 5
    assert report.work.startswith("fib_iterative over 5 n in [")


# ---- skipped backends ------------------------------------------------------------


def test_a_lambda_skips_the_process_backends_with_the_reason():
    report = small(lambda x: x + 1, list(range(20)))
    skipped = {s.backend: s.reason for s in report.skipped}
    assert sorted(skipped) == ["multiprocessing", "parpy", "process-pool"]
    for name in PROCESS_BACKENDS:
        assert "does not pickle" in skipped[name], skipped[name]
        assert report.verdicts[name].startswith(f"{name}: skipped")
    assert {row.backend for row in report.rows} == {
        "serial",
        "threading",
        "thread-pool",
        "parpy-pool",
    }


def test_a_pipeline_with_a_lambda_skips_the_process_backends():
    report = small([parpy.Stage(lambda x: x + 1), parpy.fib], list(range(20)))
    assert sorted(s.backend for s in report.skipped) == PROCESS_BACKENDS
    assert {row.backend for row in report.rows} == set(EVERY) - set(PROCESS_BACKENDS)


def ghost_module(monkeypatch):
    """A module only this process has: its functions pickle, workers cannot load them."""
    ghost = types.ModuleType("parpy_test_ghost")
    exec("def triple(x):\n    return 3 * x\n", ghost.__dict__)
    monkeypatch.setitem(sys.modules, "parpy_test_ghost", ghost)
    return ghost


@pytest.mark.timeout(120)
def test_a_function_workers_cannot_import_is_skipped_not_a_hang(monkeypatch):
    before = threading.active_count()
    triple = ghost_module(monkeypatch).triple
    report = small(triple, list(range(30)), backends="serial,multiprocessing,process-pool")
    skipped = {s.backend: s.reason for s in report.skipped}
    assert sorted(skipped) == PROCESS_BACKENDS
    for reason in skipped.values():
        assert "could not load" in reason and "parpy_test_ghost" in reason, reason
    assert rows_of(report) == [("serial", 1)]
    assert no_leftovers(before)


@pytest.mark.timeout(120)
def test_a_pipeline_stage_workers_cannot_import_is_skipped(monkeypatch):
    triple = ghost_module(monkeypatch).triple
    report = small([triple, parpy.fib], list(range(30)), backends="multiprocessing,parpy")
    assert [s.backend for s in report.skipped] == ["multiprocessing"]
    assert "could not load" in report.skipped[0].reason
    assert {row.backend for row in report.rows} == {"serial", "parpy"}


def test_a_function_of_an_interactive_main_is_skipped_before_anything_starts(monkeypatch):
    main = sys.modules["__main__"]
    monkeypatch.delattr(main, "__file__", raising=False)

    def notebook_cell(x):
        return x * 5

    notebook_cell.__module__ = "__main__"
    notebook_cell.__qualname__ = "notebook_cell"
    monkeypatch.setattr(main, "notebook_cell", notebook_cell, raising=False)
    report = small(notebook_cell, [1, 2, 3], backends="serial,multiprocessing,process-pool")
    assert sorted(s.backend for s in report.skipped) == PROCESS_BACKENDS
    assert all("defined in __main__ of a notebook" in s.reason for s in report.skipped)
    assert report.skipped[0] == Skip("multiprocessing", report.skipped[0].reason)


# ---- checked results ---------------------------------------------------------------


def test_a_backend_that_differs_raises_before_anything_is_timed(monkeypatch):
    def no_timing(*args, **kwargs):
        raise RuntimeError("timed before the check")

    monkeypatch.setattr(comparison._compare, "measure", no_timing)
    with pytest.raises(parpy.MismatchError) as info:
        small(thread_dependent, [10, 20, 30], backends="serial,threading", workers=2)
    assert isinstance(info.value, AssertionError)
    assert (info.value.backend, info.value.workers, info.value.position) == ("threading", 2, 0)
    assert "threading on 2 workers differs from serial at position 0 (item 10): 11 != 10" in str(
        info.value
    )


def test_the_first_differing_position_is_named(monkeypatch):
    real_map = parpy.map

    def off_at_three(kernel, items, **options):
        results = real_map(kernel, items, **options)
        results[3] += 1
        return results

    monkeypatch.setattr(parpy.batch, "map", off_at_three)
    with pytest.raises(parpy.MismatchError, match=r"parpy on 1 worker differs .* position 3"):
        small(parpy.fib, [5, 6, 7, 8, 9], backends="parpy")


def test_missing_results_are_a_mismatch(monkeypatch):
    monkeypatch.setattr(comparison._backends, "thread_map", lambda func, items, workers: [])
    with pytest.raises(parpy.MismatchError, match="threading on 1 worker returned 0 results"):
        small(parpy.fib, NS, backends="threading")


def test_an_error_in_the_work_is_raised_with_the_backend_noted():
    before = threading.active_count()

    def fails_in_threads(x):
        if threading.current_thread() is not threading.main_thread() and x == 3:
            raise ValueError("three")
        return x

    with pytest.raises(ValueError, match="three") as info:
        small(fails_in_threads, range(5), backends="serial,thread-pool,parpy-pool")
    assert "parpy.compare: thread-pool on 1 worker raised this" in info.value.__notes__
    assert no_leftovers(before)


def test_pools_are_closed_after_a_mismatch():
    before = threading.active_count()
    with pytest.raises(parpy.MismatchError):
        small(thread_dependent, list(range(10)), backends="process-pool,parpy-pool,thread-pool")
    assert no_leftovers(before)


# ---- bad arguments ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((), {"backends": ["serial", "nope"]}, ValueError, "'nope'"),
        ((), {"backends": []}, ValueError, "backends"),
        ((), {"workers": 0}, ValueError, "workers must be >= 1"),
        ((), {"workers": [1, -2]}, ValueError, "workers must be >= 1"),
        ((), {"workers": []}, ValueError, "workers is empty"),
        ((), {"workers": 1.5}, TypeError, "workers"),
        ((), {"repeat": 0}, ValueError, "repeat must be >= 1"),
        ((), {"repeat": True}, TypeError, "repeat"),
        ((), {"warmup": -1}, ValueError, "warmup must be >= 0"),
        ((), {"progress": "yes"}, TypeError, "progress"),
        (([],), {}, ValueError, "items is empty"),
        ((None,), {}, TypeError, "needs items"),
        ((5,), {}, TypeError, "items must be an iterable"),
    ],
)
def test_bad_arguments_raise_before_any_work(args, kwargs, error, match):
    seen = []

    def work(x):
        seen.append(x)
        return x

    with pytest.raises(error, match=match):
        parpy.compare(work, *(args or ([1, 2, 3],)), **kwargs)
    assert seen == []


@pytest.mark.parametrize(
    ("work", "error"), [("nosuch", ValueError), (42, TypeError), ([], ValueError)]
)
def test_bad_work(work, error):
    with pytest.raises(error):
        parpy.compare(work, [1, 2])


# ---- fork ----------------------------------------------------------------------------

FORKED_COMPARE = """
    import os, sys, threading, time, warnings
    import parpy

    warnings.simplefilter("ignore", DeprecationWarning)  # fork() of a threaded process
    NS = list(range(0, 3000, 60))

    def run():
        kernel = parpy.compare(parpy.fib_iterative, NS, backends="serial,threading,parpy",
                               workers=[1, 2], repeat=1, progress=False)
        stages = [parpy.Stage(int), parpy.Stage(parpy.fib), parpy.Stage(str)]
        pipeline = parpy.compare(stages, [str(n) for n in NS], backends="serial,threading,parpy",
                                 workers=[1, 2], repeat=1, progress=False)
        return len(kernel.timings) == len(pipeline.timings) == 5

    def compare_until_stopped():
        while not stop.is_set():
            run()

    stop = threading.Event()
    busy = threading.Thread(target=compare_until_stopped)
    busy.start()
    codes = []  # of the children that failed
    for i in range(8):
        time.sleep(0.011 * i)  # somewhere in the parent's comparison
        pid = os.fork()
        if pid == 0:  # exits through the interpreter's own shutdown
            sys.exit(0 if run() else 3)
        deadline = time.monotonic() + 60
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                if status:
                    codes.append(os.waitstatus_to_exitcode(status))
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                codes.append("hung")
                break
            time.sleep(0.01)
    stop.set()
    busy.join(60)
    print(codes or "ok", busy.is_alive())
"""


@pytest.mark.unsafe_under(
    "thread",
    reason="TSan cannot start threads in a child forked from a multithreaded parent (see "
    "test_threads.py's fork tests)",
)
@pytest.mark.unsafe_under(
    "address",
    reason="GCC's ASan allocator takes no lock around fork(): a child forked while a parent "
    "thread holds it blocks in malloc",
)
@pytest.mark.timeout(300)
def test_a_child_forked_during_a_comparison_compares_and_exits():
    # compare() keeps no module-level lock, cache, pool or registry: a child
    # forked at any moment runs its own comparisons and exits.
    proc = run_python(FORKED_COMPARE, timeout=240)
    assert (proc.returncode, proc.stdout.strip()) == (0, "ok False"), proc.stderr


# ---- timing and progress -------------------------------------------------------------


def test_measure_interleaves_and_rotates():
    order = []
    calls = {name: functools.partial(order.append, name) for name in "abc"}
    after = []
    times = comparison.measure(calls, 3, after=after.append)
    assert order == list("abcbcacab")
    assert after == order
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    order.clear()
    times = comparison.measure(calls, 2, 5)
    assert len(order) == 30 and all(len(v) == 2 for v in times.values())


def test_progress_is_on_by_default_in_jupyter_only(monkeypatch):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    assert _progress.wanted(None) is False
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    assert _progress.wanted(None) is True
    assert _progress.wanted(False) is False


def test_progress_bar_counts_every_run(capsys):
    small(parpy.fib, NS, backends="parpy", repeat=2, warmup=2, progress=True)
    err = capsys.readouterr().err
    # serial once, parpy on 1 and 2 workers: (2 untimed + 2 timed) runs each
    assert "12/12" in err, err


# ---- the command line ----------------------------------------------------------------


def test_cli_help_lists_every_command():
    proc = run_cli("--help")
    assert proc.returncode == 0
    assert "compare" in proc.stdout and "fib" in proc.stdout


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["frobnicate"],
        ["compare", "nosuch"],
        ["compare", "--workers", "0"],
        ["compare", "--workers", "1,x"],
        ["compare", "--backends", "serial,nope"],
        ["compare", "--repeat", "0"],
        ["compare", "--count", "-3"],
        ["compare", "--json", "/no/such/dir/report.json"],
        ["fib"],
        ["fib", "-1"],
        ["fib", "ten"],
        ["fib", "100", "--algorithm", "recursive"],
        ["fib", "10", "--algorithm", "bogus"],
    ],
)
def test_cli_usage_errors_exit_2(args):
    proc = run_cli(*args)
    assert proc.returncode == 2, proc
    assert "usage:" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "workers", ["1,,2", ",1", "1,", "1, ,2", str(comparison.max_workers() + 1)]
)
def test_cli_workers_empty_or_over_the_bound_are_usage_errors(workers):
    proc = run_cli(
        "compare", "doubling", "--count", "2", "--repeat", "1", "--backends", "threading",
        f"--workers={workers}",
    )  # fmt: skip
    assert proc.returncode == 2, proc
    assert "usage:" in proc.stderr and "Traceback" not in proc.stderr
    assert ("empty worker count" if "," in workers else "64 x the") in proc.stderr
    assert proc.stdout == ""  # nothing ran


@pytest.mark.unsafe_under(
    "address",
    reason="the check imports matplotlib, whose C++ extensions throw exceptions that GCC's ASan "
    "runtime, preloaded into Python, cannot forward (a CHECK failure in its __cxa_throw "
    "interceptor)",
)
@pytest.mark.parametrize("plot", ["report.txt", "report"])
def test_cli_plot_format_is_checked_before_anything_runs(tmp_path, plot):
    proc = run_cli(
        "compare", "doubling", "--count", "2", "--workers", "1", "--repeat", "1",
        "--backends", "parpy", "--plot", str(tmp_path / plot),
    )  # fmt: skip
    assert proc.returncode == 2, proc
    assert "usage:" in proc.stderr and "Traceback" not in proc.stderr
    assert "matplotlib writes" in proc.stderr and "png" in proc.stderr and "svg" in proc.stderr
    assert proc.stdout == "" and list(tmp_path.iterdir()) == []  # nothing ran


def test_cli_plot_without_matplotlib_is_a_usage_error(monkeypatch, capsys):
    from parpy.__main__ import main

    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # not installed
    ran = []
    monkeypatch.setattr(comparison, "compare", lambda *a, **k: ran.append(a))
    with pytest.raises(SystemExit) as caught:
        main(["compare", "--count", "2", "--workers", "1", "--plot", "report.png"])
    assert caught.value.code == 2 and ran == []
    assert "--plot needs matplotlib" in capsys.readouterr().err


@pytest.mark.unsafe_under(
    "address",
    reason="matplotlib's and pandas' C++ extensions throw exceptions that GCC's ASan runtime, "
    "preloaded into Python, cannot forward (a CHECK failure in its __cxa_throw interceptor)",
)
def test_cli_compare_table_json_plot_and_progress(tmp_path):
    out_json, out_png = tmp_path / "report.json", tmp_path / "report.png"
    proc = run_cli(
        "compare",
        "doubling",
        "--count",
        "6",
        "--workers",
        "1,2",
        "--repeat",
        "2",
        "--backends",
        "serial,multiprocessing,parpy",
        "--json",
        str(out_json),
        "--plot",
        str(out_png),
        "--progress",
    )
    assert proc.returncode == 0, proc.stderr
    report = Report.from_json(out_json.read_text())
    assert report.items == 6 and report.repeat == 2
    assert [(r.backend, r.workers) for r in report.rows] == [
        ("serial", 1),
        ("multiprocessing", 1),
        ("multiprocessing", 2),
        ("parpy", 1),
        ("parpy", 2),
    ]
    assert proc.stdout.strip() == str(report).strip()
    png = out_png.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    assert "compare" in proc.stderr and "5/5" not in proc.stdout  # the bar is on stderr


def test_cli_json_to_stdout():
    proc = run_cli(
        "compare", "tiny", "--count", "5", "--workers", "1", "--repeat", "1",
        "--backends", "parpy", "--json", "-",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    report = Report.from_json(proc.stdout)
    assert report.items == 5 and data
    assert [t.backend for t in report.timings][:2] == ["serial", "parpy"]
    assert proc.stderr == ""  # no bar: stderr is not a terminal


@pytest.mark.parametrize("algorithm", ["doubling", "iterative", "recursive"])
def test_cli_fib(algorithm):
    n = 1000 if algorithm != "recursive" else 30
    proc = run_cli("fib", str(n), "--algorithm", algorithm)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == str(parpy.fib(n)) + "\n"


def test_cli_fib_zero_and_default_algorithm():
    proc = run_cli("fib", "0")
    assert (proc.returncode, proc.stdout) == (0, "0\n")
    proc = run_cli("fib", "1000")
    assert proc.stdout.strip() == str(parpy.fib(1000))


def test_import_leaves_the_environment_alone():
    proc = subprocess.run(
        [sys.executable, "-c", "import os, parpy; print('OMP_WAIT_POLICY' in os.environ)"],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        cwd=REPO,
    )
    assert proc.stdout.strip() == "False", proc.stderr
