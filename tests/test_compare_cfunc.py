"""parpy.compare on a user's C function (Kernel.from_library, from_cfunc):
the Python backends call the same function through ctypes, item by item;
worker processes get a from_library kernel as (path, symbol, signature); a
from_cfunc kernel, which does not pickle, skips them; and the verdicts of
the threading backends say that ctypes releases the GIL during each call.

Small inputs and one timed run: these tests check what compare() runs and
reports, not how fast anything is.
"""

from __future__ import annotations

import ctypes
import pickle
import random
import threading
import time

import _clib
import pytest
from _util import run_python

import parpy
from parpy import comparison
from parpy.comparison._shipping import _CCall
from parpy.report import Report, Timing

EVERY = comparison.backend_names(None, None)  # the default: all but Dask, pp and Celery
PROCESS_BACKENDS = ["multiprocessing", "process-pool"]
_RNG = random.Random(21)
FLOATS = [_RNG.uniform(-1e3, 1e3) for _ in range(3000)]


def library_kernel(name: str, signature: str | None = None) -> parpy.Kernel:
    return parpy.Kernel.from_library(_clib.library(), name, signature or _clib.FUNCTIONS[name][0])


def small(work, items, **options):
    """compare() with one timed run, on 1 and 2 workers, no progress bar."""
    return parpy.compare(
        work, items, **{"workers": [1, 2], "repeat": 1, "progress": False, **options}
    )


def rows_of(report):
    return [(row.backend, row.workers) for row in report.rows]


# ---- every backend -------------------------------------------------------------


@pytest.mark.timeout(120)
def test_every_backend_runs_a_library_function_with_the_same_results():
    report = small(library_kernel("square_plus_one"), FLOATS)
    # Every row ran and was checked against serial's (else MismatchError); the
    # process backends called the function in their worker processes.
    assert report.skipped == ()
    assert rows_of(report) == [("serial", 1)] + [(b, w) for b in EVERY[1:] for w in (1, 2)]
    for timing in report.timings:
        if timing.backend in PROCESS_BACKENDS:
            assert timing.startup > 0.001  # processes started, outside the timed runs
    assert report.meta["python_runs"] == "square_plus_one(x) through ctypes"
    assert report.meta["gil_released"] == "by ctypes during each call of square_plus_one"


@pytest.mark.timeout(60)
def test_nan_results_are_the_same_results():
    nan, inf = float("nan"), float("inf")
    report = small(library_kernel("square_plus_one"), [nan, 1.0, -inf, nan, 0.5], workers=[2])
    assert report.skipped == ()
    assert {row.backend for row in report.rows} == set(EVERY)


@pytest.mark.timeout(120)
def test_unsigned_ints_on_every_backend():
    report = small(library_kernel("collatz_steps"), list(range(1, 3001)))
    assert report.skipped == ()
    assert {row.backend for row in report.rows} == set(EVERY)
    assert report.work == "collatz_steps over 3000 n in [1, 3000]"


@pytest.mark.timeout(120)
def test_a_bound_library_kernel_calls_with_the_bound_arguments_in_workers_too():
    report = small(library_kernel("add_i64").bind(-7), list(range(-500, 500)))
    assert report.skipped == ()
    assert {row.backend for row in report.rows} == set(EVERY)
    assert report.meta["python_runs"] == "add_i64(x, -7) through ctypes"
    assert (
        report.meta["parpy_runs"] == "parpy.map(add_i64.bind(-7)), parpy.Pool.map(add_i64.bind(-7))"
    )


@pytest.mark.timeout(120)
def test_a_kernel_of_three_arguments_over_tuples():
    items = [(u, random.Random(u).random(), -u) for u in range(0, 2**40, 2**31)]
    report = small(library_kernel("mix"), items)
    assert report.skipped == ()
    assert {row.backend for row in report.rows} == set(EVERY)
    assert report.meta["python_runs"] == "mix(*x) through ctypes"


@pytest.mark.parametrize(
    ("name", "items", "bind", "error", "match", "position"),
    [
        ("identity_u64", [1, 2, -1], None, OverflowError, "range of uint64, not -1", 2),
        ("identity_i64", [2**63], None, OverflowError, "range of int64", 0),
        ("identity_i64", [1, True], None, TypeError, "must be an int, not bool", 1),
        ("identity_f64", [1.5, 2, "3"], None, TypeError, "must be a number, not str", 2),
        ("add_i64", [(1, 2), (3,)], None, TypeError, r"takes 2 arguments \(1 given\)", 1),
        ("add_i64", [4, 5.0], (1,), TypeError, "argument 1 must be an int, not float", 1),
    ],
)
def test_items_the_kernel_refuses_raise_before_anything_runs(
    name, items, bind, error, match, position
):
    # ctypes would take a bool, and wrap an int out of range: compare refuses them as the
    # kernel does, before the Python backends run anything.
    kernel = library_kernel(name)
    if bind is not None:
        kernel = kernel.bind(*bind)
    with pytest.raises(error, match=match) as caught:
        small(kernel, items, backends="serial,threading")
    assert caught.value.__notes__ == [f"parpy.compare: items[{position}]"]


def test_a_user_kernel_has_its_function_address_and_parpy_kernels_none():
    fn = _clib.ctypes_function("add_i64")
    address = ctypes.cast(fn, ctypes.c_void_p).value
    assert parpy.Kernel.from_cfunc(fn).address == address
    assert library_kernel("add_i64").address == address
    assert library_kernel("add_i64").bind(3).address == address
    assert parpy.fib.address is None and parpy.fib_mod.bind(7).address is None


def test_the_ctypes_call_is_the_kernel_function_and_equals_it_bit_for_bit():
    kernel = library_kernel("square_plus_one")
    call = _CCall(kernel)
    assert [call(x) for x in FLOATS] == [kernel(x) for x in FLOATS]
    assert call.kernel is kernel and call(3.0) == 10.0
    assert _CCall(library_kernel("identity_u64"))(2**64 - 1) == 2**64 - 1


def test_a_fresh_process_rebuilds_the_ctypes_call_from_path_symbol_and_signature():
    kernel = library_kernel("add_i64").bind(40)
    blob = pickle.dumps(_CCall(kernel))
    assert str(_clib.library()).encode() in blob and b"add_i64" in blob
    proc = run_python(f"import pickle\ncall = pickle.loads({blob!r})\nprint(call(2), call)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "42 add_i64(x, 40) through ctypes"


# ---- a function given by address: no worker process can get it -------------------


@pytest.mark.timeout(120)
def test_a_cfunc_kernel_skips_the_process_backends_with_the_reason():
    kernel = parpy.Kernel.from_cfunc(_clib.ctypes_function("square_plus_one"))
    report = small(kernel, FLOATS[:500])
    skipped = {s.backend: s.reason for s in report.skipped}
    assert sorted(skipped) == PROCESS_BACKENDS
    for name, reason in skipped.items():
        assert reason.startswith("square_plus_one does not pickle"), reason
        assert "make it with Kernel.from_library" in reason
        assert report.verdicts[name].startswith(f"{name}: skipped")
    assert {row.backend for row in report.rows} == set(EVERY) - set(PROCESS_BACKENDS)
    assert report.meta["python_runs"] == "square_plus_one(x) through ctypes"


@pytest.mark.timeout(60)
def test_the_ctypes_call_releases_the_gil_during_each_call():
    """While one thread is inside spin_ms (about a second), called through
    ctypes, this one keeps running Python: no pause of the call's length."""
    call = _CCall(parpy.Kernel.from_cfunc(_clib.ctypes_function("spin_ms", "float64(float64)")))
    inside = threading.Thread(target=call, args=(1000.0,))
    start = last = time.monotonic()
    longest = 0.0
    inside.start()
    while inside.is_alive():
        now = time.monotonic()
        longest, last = max(longest, now - last), now
    inside.join(timeout=30)
    assert last - start > 0.3  # (the call did take long)
    assert longest < 0.25


@pytest.mark.timeout(120)
def test_the_threading_verdicts_say_ctypes_releases_the_gil():
    kernel = parpy.Kernel.from_cfunc(_clib.ctypes_function("spin_ms", "float64(float64)"))
    report = small(kernel, [0.5] * 40, backends="threading,thread-pool,parpy")
    for name in ("threading", "thread-pool"):
        assert "released by ctypes during each call of spin_ms" in report.verdicts[name]
    assert "GIL" not in report.verdicts["parpy"]


# ---- the verdicts --------------------------------------------------------------


def ctypes_report(threading_times: dict[int, float], **meta) -> Report:
    """serial 1 s over 1000 items; threading at the given times; multiprocessing, no gain."""
    timings = [Timing("serial", 1, (1.0,))]
    timings += [Timing("threading", w, (t,)) for w, t in threading_times.items()]
    timings += [Timing("multiprocessing", 2, (1.2,))]
    return Report(
        work="f over 1000 items",
        items=1000,
        timings=timings,
        cpus=2,
        repeat=1,
        warmup=1,
        meta=meta,
    )


def test_no_gain_on_threads_says_when_threads_gain_from_ctypes_calls():
    report = ctypes_report({1: 1.1, 2: 1.05}, gil_released="by ctypes during each call of f")
    assert report.verdicts["threading"] == (
        "threading: no gain (0.95x on 2 workers); the GIL is released by ctypes during each "
        "call of f only, so threads gain where a call's work outweighs the Python around it "
        "(1.00 ms per item on serial)"
    )
    assert report.verdicts["multiprocessing"] == "multiprocessing: no gain (0.83x on 2 workers)"
    assert Report.from_json(report.to_json()).verdicts == report.verdicts


def test_a_gain_on_threads_says_ctypes_released_the_gil():
    report = ctypes_report({1: 1.0, 2: 0.5}, gil_released="by ctypes during each call of f")
    assert report.verdicts["threading"] == (
        "threading: 2.00x on 2 workers, serial fraction 0.00, "
        "the GIL released by ctypes during each call of f"
    )


def test_without_the_note_no_gain_on_threads_is_the_gil():
    report = ctypes_report({1: 1.1, 2: 1.05})
    assert report.verdicts["threading"] == "threading: no gain (0.95x on 2 workers): the GIL"
