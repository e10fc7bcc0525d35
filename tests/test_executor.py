"""parpy.ThreadPoolExecutor held to concurrent.futures.ThreadPoolExecutor, test for test.

Ported from CPython 3.11 ``Lib/test/test_concurrent_futures.py``: the thread
executor's cases of ``ExecutorTest``, ``ThreadPoolExecutorTest``,
``ExecutorShutdownTest``/``ThreadPoolShutdownTest``, ``InitializerMixin``,
``FailingInitializerMixin``, ``WaitTests`` and ``AsCompletedTests``, with
private attributes (``_threads``, ``_broken``, ``_max_workers``) replaced by
what a caller can observe. Each test runs on
``concurrent.futures.ThreadPoolExecutor`` ("stdlib") and on
``parpy.ThreadPoolExecutor`` ("parpy") with the same assertions; the tests of
results run three kinds of function: a plain Python function, parpy's
pure-Python ``parpy.reference`` twins and parpy's native kernels
(``parpy.fib``, ``parpy.fib_mod``). Results are compared with the same
function called serially in Python.

Not ported: the tests that start a child interpreter to check exit-time
behaviour, and those of process pools.

Every wait takes a timeout: ``result``/``exception``/``wait``/``as_completed``/
``map`` are given one, ``shutdown`` runs through ``within``, which fails the
test if it does not return in time, and the module's timeout bounds the rest.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import gc
import re
import threading
import time
import traceback
import weakref

import pytest
from _parity import (
    SHORT,
    TIMEOUT,
    Token,
    identity,
    make_token,
    mul,
    sleepy_square,
    square,
    wait_until,
    within,
)

import parpy
import parpy.reference

pytestmark = pytest.mark.timeout(60)

WORKERS = 5  # as in CPython's ExecutorMixin


# ---- helpers ------------------------------------------------------------------------


class Gate:
    """A task that says it has started, then blocks until the test opens the gate."""

    def __init__(self):
        self.started = threading.Event()
        self.opened = threading.Event()

    def __call__(self, value=None):
        self.started.set()
        if not self.opened.wait(TIMEOUT):
            raise AssertionError("the gate was never opened")
        return value

    def wait_started(self):
        assert self.started.wait(TIMEOUT), "the gated task did not start"

    def open(self):
        self.opened.set()


def capture(*args, **kwargs):
    return args, kwargs


def call(task):
    return task()


def thread_name(_=None):
    return threading.current_thread().name


def raise_runtime_error(record):
    exc = RuntimeError(123)
    record.append(exc)
    raise exc  # some comment


def init_fail():
    time.sleep(SHORT)  # let some futures be scheduled
    raise ValueError("error in initializer")


def shut_down(executor, **kwargs):
    within(TIMEOUT, executor.shutdown, **kwargs)


# ---- fixtures -----------------------------------------------------------------------


EXECUTORS = {
    "stdlib": lambda: cf.ThreadPoolExecutor,
    "parpy": lambda: getattr(parpy, "ThreadPoolExecutor"),  # noqa: B009 (may not exist yet)
}


@pytest.fixture(params=list(EXECUTORS))
def Executor(request):
    """The executor class: concurrent.futures.ThreadPoolExecutor, then parpy's."""
    return EXECUTORS[request.param]()


@pytest.fixture
def executor(Executor):
    """An executor of WORKERS threads, shut down (waiting) after the test."""
    ex = Executor(max_workers=WORKERS)
    yield ex
    shut_down(ex, wait=True)


# ---- submit -------------------------------------------------------------------------


def test_submit(executor, work):
    for x in (0, 5, 90):
        future = executor.submit(work.func, x)
        assert isinstance(future, cf.Future)
        assert future.result(timeout=TIMEOUT) == work.oracle(x)
        assert future.done() and not future.cancelled()
    future = executor.submit(work.func2, 90, 7)
    assert future.result(timeout=TIMEOUT) == work.oracle2(90, 7)
    assert executor.submit(pow, 2, 8).result(timeout=TIMEOUT) == 256


def test_submit_keyword(executor):
    assert executor.submit(mul, 2, y=8).result(timeout=TIMEOUT) == 16
    future = executor.submit(capture, 1, self=2, fn=3)
    assert future.result(timeout=TIMEOUT) == ((1,), {"self": 2, "fn": 3})
    with pytest.raises(TypeError):
        executor.submit(fn=capture, arg=1)
    with pytest.raises(TypeError):
        executor.submit(arg=1)


def test_submit_exception(executor, work):
    future = executor.submit(work.func, work.bad_item)
    exc = future.exception(timeout=TIMEOUT)
    assert isinstance(exc, work.bad_error)
    assert future.done() and not future.cancelled()
    with pytest.raises(work.bad_error) as info:
        future.result(timeout=TIMEOUT)
    assert info.value is exc
    # The executor is still usable.
    assert executor.submit(work.func, 10).result(timeout=TIMEOUT) == work.oracle(10)


def test_submit_exception_traceback(executor):
    """The future holds the worker's own exception object, with the worker's frame."""
    raised = []
    exc = executor.submit(raise_runtime_error, raised).exception(timeout=TIMEOUT)
    assert type(exc) is RuntimeError and exc.args == (123,)
    assert exc is raised[0]
    frames = traceback.extract_tb(exc.__traceback__)
    assert any(f.name == "raise_runtime_error" and "raise exc" in f.line for f in frames)


def test_kernel_futures(executor):
    """Futures of parpy's native kernels, against the pure-Python reference."""
    assert executor.submit(parpy.fib, 90).result(timeout=TIMEOUT) == parpy.reference.fib(90)
    assert isinstance(executor.submit(parpy.fib, -1).exception(timeout=TIMEOUT), ValueError)
    assert isinstance(executor.submit(parpy.fib, 1.5).exception(timeout=TIMEOUT), TypeError)
    ns = range(200)
    got = list(executor.map(parpy.fib, ns, timeout=TIMEOUT))
    assert got == [parpy.reference.fib(n) for n in ns]


# ---- map ----------------------------------------------------------------------------


def test_map(executor, work):
    xs = work.items(200)
    assert list(executor.map(work.func, xs, timeout=TIMEOUT)) == work.expected(xs)
    ns, ms = range(10), range(10, 0, -1)
    got = list(executor.map(work.func2, ns, ms, timeout=TIMEOUT))
    assert got == list(map(work.oracle2, ns, ms))
    # Like map(), it stops at the shortest iterable.
    got = list(executor.map(work.func2, range(10), range(1, 6), timeout=TIMEOUT))
    assert got == list(map(work.oracle2, range(10), range(1, 6)))
    assert list(executor.map(work.func, [], timeout=TIMEOUT)) == []


def test_map_chunksize(executor, work):
    xs = work.items(50)
    got = list(executor.map(work.func, xs, timeout=TIMEOUT, chunksize=3))
    assert got == work.expected(xs)


def test_map_exception(executor, work):
    """An error is raised when its result is reached, after the results before it."""
    xs = [1, 2, work.bad_item, 5]
    it = executor.map(work.func, xs, timeout=TIMEOUT)
    assert next(it) == work.oracle(1)
    assert next(it) == work.oracle(2)
    with pytest.raises(work.bad_error):
        next(it)

    it = executor.map(divmod, [1, 1, 1, 1], [2, 3, 0, 5], timeout=TIMEOUT)
    assert next(it) == (0, 1)
    assert next(it) == (0, 1)
    with pytest.raises(ZeroDivisionError):
        next(it)


@pytest.mark.parametrize("chunksize", [1, 2, 3])
def test_map_kernel_error_names_the_item(chunksize):
    """A bad item of a kernel's map is named by its position in the input,
    whatever the chunk size (as parpy.map and Pool.map name it)."""
    with parpy.ThreadPoolExecutor(2) as ex:
        results = ex.map(parpy.fib, [1, 2, -3, 4, 5], chunksize=chunksize, timeout=TIMEOUT)
        with pytest.raises(ValueError) as info:
            list(results)
    assert info.value.__notes__ == ["parpy.fib: items[2]"]


def test_map_timeout(executor):
    """The results before the slow call come; then TimeoutError, counted from the map call."""
    gate = Gate()
    results = []
    start = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            for value in executor.map(call, [lambda: 1, lambda: 2, gate], timeout=SHORT):
                results.append(value)
    finally:
        gate.open()
    assert results == [1, 2]
    assert time.monotonic() - start >= SHORT * 0.9


def test_map_submits_without_iteration(executor):
    """bpo-11777: map submits every call at once, whether or not it is iterated."""
    finished = []
    executor.map(finished.append, range(10))
    shut_down(executor, wait=True)
    assert sorted(finished) == list(range(10))


# ---- shutdown -----------------------------------------------------------------------


def test_run_after_shutdown(executor):
    shut_down(executor)
    with pytest.raises(RuntimeError):
        executor.submit(pow, 2, 5)
    with pytest.raises(RuntimeError):
        executor.map(square, [1, 2])
    shut_down(executor)  # a second shutdown is harmless


def test_shutdown_waits(executor):
    """bpo-12364: shutdown(wait=True) returns once every submitted task has finished."""
    futures = [executor.submit(sleepy_square, i, 0.02) for i in range(20)]
    shut_down(executor, wait=True)
    assert all(f.done() for f in futures)
    assert [f.result(timeout=0) for f in futures] == [square(i) for i in range(20)]


def test_shutdown_no_wait(Executor):
    executor = Executor(max_workers=WORKERS)
    results = executor.map(abs, range(-5, 5), timeout=TIMEOUT)
    gate = Gate()
    blocked = executor.submit(gate, "done")
    gate.wait_started()
    try:
        # It returns at once, with the gated task still running.
        within(TIMEOUT / 2, executor.shutdown, wait=False)
        assert not blocked.done()
    finally:
        gate.open()
    # The work submitted before the shutdown still finishes.
    assert list(results) == [abs(v) for v in range(-5, 5)]
    assert blocked.result(timeout=TIMEOUT) == "done"
    shut_down(executor, wait=True)


def test_cancel_futures(Executor):
    """shutdown(cancel_futures=True) cancels the pending futures; the running one finishes."""
    executor = Executor(max_workers=1)
    gate = Gate()
    running = executor.submit(gate, "ran")
    gate.wait_started()
    pending = [executor.submit(square, i) for i in range(30)]
    try:
        shut_down(executor, wait=False, cancel_futures=True)
        assert all(f.cancelled() for f in pending)
        assert not running.cancelled()
    finally:
        gate.open()
    assert running.result(timeout=TIMEOUT) == "ran"
    for future in pending:
        with pytest.raises(cf.CancelledError):
            future.result(timeout=0)
    shut_down(executor, wait=True)


def test_cancel_futures_with_wait(Executor):
    """The same with shutdown(wait=True): some pending futures are cancelled, others finish."""
    executor = Executor(max_workers=2)
    futures = [executor.submit(sleepy_square, i, 0.05) for i in range(40)]
    shut_down(executor, wait=True, cancel_futures=True)
    cancelled = [f for f in futures if f.cancelled()]
    others = [f for f in futures if not f.cancelled()]
    assert len(cancelled) > 20
    assert len(others) > 0
    for future in others:
        assert future.done()
        assert future.result(timeout=0) == square(futures.index(future))


def test_cancel_pending_future(Executor):
    executor = Executor(max_workers=1)
    gate = Gate()
    try:
        running = executor.submit(gate, "ran")
        gate.wait_started()
        pending = executor.submit(square, 3)
        assert running.cancel() is False  # already running
        assert pending.cancel() is True
        assert pending.cancelled() and pending.done()
    finally:
        gate.open()
    assert running.result(timeout=TIMEOUT) == "ran"
    with pytest.raises(cf.CancelledError):
        pending.result(timeout=0)
    assert executor.submit(square, 4).result(timeout=TIMEOUT) == 16
    shut_down(executor, wait=True)


def test_shutdown_after_cancel(Executor):
    """gh-94440: shutdown(wait=True) does not hang on a future cancelled just before it."""
    executor = Executor(max_workers=1)
    assert executor.submit(int).result(timeout=TIMEOUT) == 0
    executor.submit(int).cancel()
    shut_down(executor, wait=True)


def test_context_manager(Executor):
    with Executor(max_workers=WORKERS) as executor:
        got = list(executor.map(abs, range(-5, 5), timeout=TIMEOUT))
        assert got == [5, 4, 3, 2, 1, 0, 1, 2, 3, 4]
        futures = [executor.submit(sleepy_square, i, 0.02) for i in range(10)]
    # Leaving the block shut the executor down, waiting for its work.
    assert all(f.done() for f in futures)
    assert [f.result(timeout=0) for f in futures] == [square(i) for i in range(10)]
    with pytest.raises(RuntimeError):
        executor.submit(pow, 2, 5)


# ---- construction -------------------------------------------------------------------


def test_max_workers_invalid(Executor):
    for number in (0, -1):
        with pytest.raises(ValueError, match="max_workers must be greater than 0"):
            Executor(max_workers=number)
    with pytest.raises(TypeError):
        Executor(max_workers="2")
    with pytest.raises(TypeError):
        Executor(max_workers=2, initializer=3)


def test_default_max_workers(Executor):
    executor = Executor()
    try:
        got = list(executor.map(square, range(20), timeout=TIMEOUT))
        assert got == [square(x) for x in range(20)]
    finally:
        shut_down(executor, wait=True)


def _names_of_all_workers(executor, count):
    """The thread names of ``count`` tasks that run at once (so on ``count`` threads)."""
    barrier = threading.Barrier(count, timeout=TIMEOUT)

    def meet():
        barrier.wait()
        return thread_name()

    futures = [executor.submit(meet) for _ in range(count)]
    return [f.result(timeout=TIMEOUT) for f in futures]


@pytest.mark.parametrize(
    ("prefix", "pattern"),
    [
        ("SpecialPool", r"SpecialPool_[0-4]"),
        # reasonably sane and unique when no thread_name_prefix was supplied
        ("", r".*ThreadPoolExecutor-\d+_[0-4]"),
    ],
    ids=["assigned", "default"],
)
def test_thread_names(Executor, prefix, pattern):
    executor = Executor(max_workers=WORKERS, thread_name_prefix=prefix)
    try:
        names = _names_of_all_workers(executor, WORKERS)
    finally:
        shut_down(executor, wait=True)
    assert len(set(names)) == WORKERS
    for name in names:
        assert re.fullmatch(pattern, name), name


def test_initializer(Executor):
    """The initializer runs once in each worker thread, before any task there."""
    local = threading.local()
    seen = []
    lock = threading.Lock()

    def init(status):
        with lock:
            seen.append(threading.get_ident())
        local.status = status

    def task(x):
        time.sleep(0.005)
        return getattr(local, "status", "uninitialized"), threading.get_ident(), x * x

    executor = Executor(max_workers=2, initializer=init, initargs=("initialized",))
    try:
        out = [f.result(timeout=TIMEOUT) for f in [executor.submit(task, i) for i in range(20)]]
    finally:
        shut_down(executor, wait=True)
    assert [r[2] for r in out] == [square(i) for i in range(20)]
    assert {r[0] for r in out} == {"initialized"}
    assert 1 <= len(seen) <= 2
    assert len(set(seen)) == len(seen)  # once per thread
    assert {r[1] for r in out} <= set(seen)


def test_failing_initializer(Executor):
    """A failing initializer breaks the executor: its futures and later submits raise."""
    executor = Executor(max_workers=2, initializer=init_fail)
    try:
        try:
            future = executor.submit(square, 3)
        except cf.BrokenExecutor:
            pass  # perhaps the executor is already broken
        else:
            with pytest.raises(cf.BrokenExecutor):
                future.result(timeout=TIMEOUT)
        # At some point the executor is broken, and from then on submit() raises.
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                future = executor.submit(square, 3)
            except cf.BrokenExecutor:
                break
            with pytest.raises(cf.BrokenExecutor):
                future.result(timeout=TIMEOUT)
            assert time.monotonic() < deadline, "executor not broken"
            time.sleep(0.01)
        with pytest.raises(cf.BrokenExecutor):
            executor.submit(square, 3)
        with pytest.raises(cf.BrokenExecutor):
            executor.map(square, [1, 2])
    finally:
        shut_down(executor, wait=True)


# ---- wait, as_completed -------------------------------------------------------------


def test_wait(executor):
    gate = Gate()
    try:
        finished = executor.submit(mul, 21, 2)
        assert finished.result(timeout=TIMEOUT) == 42
        blocked = executor.submit(gate, "opened")
        gate.wait_started()

        done, not_done = cf.wait(
            [finished, blocked], timeout=TIMEOUT, return_when=cf.FIRST_COMPLETED
        )
        assert done == {finished} and not_done == {blocked}

        failed = executor.submit(divmod, 21, 0)
        done, not_done = cf.wait(
            [finished, failed, blocked], timeout=TIMEOUT, return_when=cf.FIRST_EXCEPTION
        )
        assert done == {finished, failed} and not_done == {blocked}
        assert isinstance(failed.exception(timeout=0), ZeroDivisionError)

        start = time.monotonic()
        done, not_done = cf.wait([finished, blocked], timeout=SHORT)
        assert time.monotonic() - start >= SHORT * 0.9
        assert done == {finished} and not_done == {blocked}
    finally:
        gate.open()
    futures = [finished, failed, blocked]
    done, not_done = cf.wait(futures, timeout=TIMEOUT, return_when=cf.ALL_COMPLETED)
    assert done == set(futures) and not_done == set()
    assert blocked.result(timeout=0) == "opened"


def test_as_completed(executor, work):
    xs = work.items(20)
    futures = {executor.submit(work.func, x): x for x in xs}
    seen = []
    for future in cf.as_completed(futures, timeout=TIMEOUT):
        assert future.result(timeout=0) == work.oracle(futures[future])
        seen.append(future)
    assert len(seen) == len(futures) and set(seen) == set(futures)

    # A future given several times is yielded once.
    future = next(iter(futures))
    assert list(cf.as_completed([future, future, future], timeout=TIMEOUT)) == [future]


def test_as_completed_timeout(executor):
    gate = Gate()
    got = []
    try:
        blocked = executor.submit(gate)
        finished = executor.submit(mul, 2, 3)
        assert finished.result(timeout=TIMEOUT) == 6
        with pytest.raises(TimeoutError):
            for future in cf.as_completed([finished, blocked], timeout=SHORT):
                got.append(future)
    finally:
        gate.open()
    assert got == [finished]


# ---- references ---------------------------------------------------------------------


def test_no_stale_references(executor):
    """bpo-16284: the executor does not keep a finished call's callable alive."""
    collected = threading.Event()
    obj = Token()
    ref = weakref.ref(obj, lambda _: collected.set())
    executor.submit(obj.method)  # the future is deliberately discarded
    del obj
    assert collected.wait(TIMEOUT), "stale reference not collected within the timeout"
    assert ref() is None


def test_free_reference(executor):
    """bpo-14406: map's result iterator keeps no reference to the results it gave."""
    for obj in executor.map(make_token, range(10), timeout=TIMEOUT):
        ref = weakref.ref(obj)
        del obj
        gc.collect()
        assert ref() is None


def test_future_releases_references(executor):
    """An argument and a result are freed once the future is done and dropped."""
    arg = Token()
    arg_ref = weakref.ref(arg)
    future = executor.submit(identity, arg)
    assert future.result(timeout=TIMEOUT) is arg
    del arg, future
    assert wait_until(lambda: arg_ref() is None)

    future = executor.submit(make_token, 0)
    result = future.result(timeout=TIMEOUT)
    result_ref = weakref.ref(result)
    del result, future
    assert wait_until(lambda: result_ref() is None)

    future = executor.submit(functools.partial(identity, Token()))
    partial_ref = weakref.ref(future.result(timeout=TIMEOUT))
    del future
    assert wait_until(lambda: partial_ref() is None)
