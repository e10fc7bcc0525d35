"""parpy.Pool held to the standard library's thread pool, test for test.

Ported from CPython 3.11 ``Lib/test/_test_multiprocessing.py``: the tests of
``_TestPool`` that apply to thread pools, the callback test of
``_TestPoolWorkerErrors`` and the ``maxtasksperchild`` tests of
``_TestPoolWorkerLifetime``, plus the argument checks and lifecycle rules of
``multiprocessing.pool`` that those tests rely on. Each test runs on
``multiprocessing.pool.ThreadPool`` ("stdlib") and on ``parpy.Pool``
("parpy") with the same assertions; the tests of results run three kinds of
function: a plain Python function, parpy's pure-Python ``parpy.reference``
twins and parpy's native kernels (``parpy.fib``, ``parpy.fib_mod``). Results
are compared with the same function called serially in Python.

``ThreadPool`` takes no ``maxtasksperchild`` in 3.11 (TypeError), so the
stdlib side of the ``maxtasksperchild`` tests is ``multiprocessing.pool.Pool``
(fork), the one stdlib pool that takes it. Not ported: the tests of pickling
(``test_map_unplicklable``), of ``RemoteTraceback`` and of process ids, which
exist only for processes.

Every wait that an API can bound takes a timeout; ``join``, ``terminate`` and
``close`` run through ``within``, which fails the test if they do not return
in time; the module's timeout bounds the calls that take none (``map``,
``apply``, ``next``).
"""

from __future__ import annotations

import functools
import gc
import multiprocessing
import multiprocessing.pool
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


# ---- helpers ------------------------------------------------------------------------


def square_when_set(x, event):
    """x * x once ``event`` is set (a worker that blocks until the test lets it go)."""
    if not event.wait(TIMEOUT):
        raise AssertionError("event not set")
    return x * x


class SayWhenError(ValueError):
    pass


def exception_throwing_generator(total, when):
    if when == -1:
        raise SayWhenError("Somebody said when")
    for i in range(total):
        if i == when:
            raise SayWhenError("Somebody said when")
        yield i


def join_pool(pool):
    """close() if still running, then join(), each within TIMEOUT."""
    within(TIMEOUT, pool.close)
    within(TIMEOUT, pool.join)


# ---- fixtures -----------------------------------------------------------------------


def _parpy_pool():
    return getattr(parpy, "Pool")  # noqa: B009 (parpy.Pool may not exist yet)


POOLS = {
    "stdlib": lambda: multiprocessing.pool.ThreadPool,
    "parpy": _parpy_pool,
}


@pytest.fixture(params=list(POOLS))
def Pool(request):
    """The pool class: multiprocessing.pool.ThreadPool, then parpy.Pool."""
    return POOLS[request.param]()


@pytest.fixture
def pool(Pool):
    """A running pool of 4 workers, terminated and joined after the test."""
    p = Pool(4)
    yield p
    within(TIMEOUT, p.terminate)
    within(TIMEOUT, p.join)


LIFETIME_POOLS = {
    "stdlib": lambda: (
        lambda *args, **kwargs: multiprocessing.pool.Pool(
            *args, context=multiprocessing.get_context("fork"), **kwargs
        )
    ),
    "parpy": _parpy_pool,
}


@pytest.fixture(params=list(LIFETIME_POOLS))
def LifetimePool(request):
    """A pool class that takes maxtasksperchild: multiprocessing.pool.Pool (fork), parpy.Pool."""
    return LIFETIME_POOLS[request.param]()


# ---- results ------------------------------------------------------------------------


def test_apply(pool, work):
    for x in (0, 5, 90):
        assert pool.apply(work.func, (x,)) == work.oracle(x)
    assert pool.apply(work.func2, (90, 7)) == work.oracle2(90, 7)
    assert pool.apply(mul, (), {"x": 3, "y": 4}) == 12
    assert pool.apply(mul, (2,), {"y": 8}) == 16


def test_map(pool, work):
    xs = work.items(10)
    assert pool.map(work.func, xs) == work.expected(xs)
    xs = work.items(100)
    assert pool.map(work.func, xs, chunksize=20) == work.expected(xs)
    assert pool.map(work.func, iter(xs), 7) == work.expected(xs)  # any iterable


def test_map_async(pool, work):
    xs = work.items(10)
    assert pool.map_async(work.func, xs).get(timeout=TIMEOUT) == work.expected(xs)


def test_starmap(pool, work):
    pairs = work.pairs(10)
    assert pool.starmap(work.func2, pairs) == work.expected2(pairs)
    pairs = work.pairs(100)
    assert pool.starmap(work.func2, pairs, chunksize=20) == work.expected2(pairs)


def test_starmap_async(pool, work):
    pairs = work.pairs(100)
    result = pool.starmap_async(work.func2, pairs)
    assert result.get(timeout=TIMEOUT) == work.expected2(pairs)


def test_imap(pool, work):
    xs = work.items(10)
    assert list(pool.imap(work.func, xs)) == work.expected(xs)

    it = pool.imap(work.func, xs)
    for x in xs:
        assert it.next(timeout=TIMEOUT) == work.oracle(x)
    with pytest.raises(StopIteration):
        it.next(timeout=TIMEOUT)

    xs = work.items(1000)
    it = pool.imap(work.func, xs, chunksize=100)
    assert [next(it) for _ in xs] == work.expected(xs)
    with pytest.raises(StopIteration):
        next(it)


def test_imap_unordered(pool, work):
    xs = work.items(10)
    assert sorted(pool.imap_unordered(work.func, xs)) == sorted(work.expected(xs))
    xs = work.items(1000)
    it = pool.imap_unordered(work.func, xs, chunksize=100)
    assert sorted(it) == sorted(work.expected(xs))


def test_empty_iterable(Pool, work):
    # bpo-12157
    p = Pool(1)
    try:
        assert p.map(work.func, []) == []
        assert list(p.imap(work.func, [])) == []
        assert list(p.imap_unordered(work.func, [])) == []
        assert p.map_async(work.func, []).get(timeout=TIMEOUT) == []
        assert p.starmap(work.func2, []) == []
    finally:
        join_pool(p)


def test_map_chunksize(pool):
    # A chunksize with an empty list must not stall.
    assert pool.map_async(square, [], chunksize=1).get(timeout=TIMEOUT) == []


def test_imap_chunksize_validation(pool):
    for chunksize in (0, -1):
        with pytest.raises(ValueError, match="Chunksize must be 1\\+"):
            pool.imap(square, [1, 2, 3], chunksize)
        with pytest.raises(ValueError, match="Chunksize must be 1\\+"):
            pool.imap_unordered(square, [1, 2, 3], chunksize)
    assert pool.map_async(square, [1, 2, 3], 2).get(timeout=TIMEOUT) == [1, 4, 9]


# ---- errors from the function -------------------------------------------------------


def test_map_error(pool, work):
    """A failing item fails map, map_async, imap (at its position) and apply."""
    xs = [*work.items(5), work.bad_item, *work.items(5)]
    with pytest.raises(work.bad_error):
        pool.map(work.func, xs)
    with pytest.raises(work.bad_error):
        pool.map_async(work.func, xs, chunksize=1).get(timeout=TIMEOUT)
    it = pool.imap(work.func, xs)
    assert [it.next(timeout=TIMEOUT) for _ in range(5)] == work.expected(xs[:5])
    with pytest.raises(work.bad_error):
        it.next(timeout=TIMEOUT)
    with pytest.raises(work.bad_error):
        pool.apply(work.func, (work.bad_item,))
    # The pool is still usable.
    assert pool.map(work.func, xs[:5]) == work.expected(xs[:5])


def raise_runtime_error(record):
    exc = RuntimeError(123)
    record.append(exc)
    raise exc  # some comment


def test_traceback(Pool):
    """The caller gets the worker's own exception object, with the worker's frame."""
    raised = []
    with Pool(1) as p:
        with pytest.raises(RuntimeError) as info:
            p.apply(raise_runtime_error, (raised,))
    within(TIMEOUT, p.join)
    exc = info.value
    assert type(exc) is RuntimeError and exc.args == (123,)
    assert exc is raised[0]
    assert exc.__cause__ is None  # not wrapped in a RemoteTraceback
    frames = traceback.extract_tb(exc.__traceback__)
    assert any(f.name == "raise_runtime_error" and "raise exc" in f.line for f in frames)

    # An error from the iterable is not wrapped either.
    with Pool(1) as p:
        with pytest.raises(SayWhenError) as info:
            p.map(square, exception_throwing_generator(1, -1), 1)
        assert type(info.value) is SayWhenError
        assert info.value.__cause__ is None
    within(TIMEOUT, p.join)


def _raise_foo():
    raise RuntimeError("foo")


def test_wrapped_exception(Pool):
    # bpo-20980: a thread pool does not wrap exceptions.
    with Pool(1) as p:
        with pytest.raises(RuntimeError, match="foo"):
            p.apply(_raise_foo)
    within(TIMEOUT, p.join)


def test_map_no_failfast(Pool):
    """bpo-23992: map raises only once every task has finished, and join does not hang."""
    finished = threading.Event()

    def fail_or_finish(x):
        if x == 0:
            raise ValueError("x" * 1024**2)
        time.sleep(2 * SHORT)
        finished.set()
        return x

    p = Pool(2)
    try:
        with pytest.raises(ValueError):
            p.map(fail_or_finish, [0, 1], chunksize=1)
        assert finished.is_set()  # the other item ran to the end before map raised
    finally:
        join_pool(p)


def test_map_handle_iterable_exception(pool):
    # The iterable fails at its first item; again, to check reentrancy.
    for _ in range(2):
        with pytest.raises(SayWhenError):
            pool.map(square, exception_throwing_generator(1, -1), 1)
    with pytest.raises(SayWhenError):
        pool.map(square, exception_throwing_generator(10, 3), 1)

    class SpecialIterable:
        def __iter__(self):
            return self

        def __next__(self):
            raise SayWhenError

        def __len__(self):
            return 1

    for _ in range(2):
        with pytest.raises(SayWhenError):
            pool.map(square, SpecialIterable(), 1)
    assert pool.map(square, range(5)) == [0, 1, 4, 9, 16]


def test_imap_handle_iterable_exception(pool):
    for _ in range(2):
        it = pool.imap(square, exception_throwing_generator(1, -1), 1)
        with pytest.raises(SayWhenError):
            it.next(timeout=TIMEOUT)

    it = pool.imap(square, exception_throwing_generator(10, 3), 1)
    for i in range(3):
        assert it.next(timeout=TIMEOUT) == i * i
    with pytest.raises(SayWhenError):
        it.next(timeout=TIMEOUT)

    # The error comes at the start of the failing chunk's results.
    it = pool.imap(square, exception_throwing_generator(20, 7), 2)
    for i in range(6):
        assert next(it) == i * i
    with pytest.raises(SayWhenError):
        next(it)
    it = pool.imap(square, exception_throwing_generator(20, 7), 4)
    for i in range(4):
        assert next(it) == i * i
    with pytest.raises(SayWhenError):
        next(it)


def test_imap_unordered_handle_iterable_exception(pool):
    for _ in range(2):
        it = pool.imap_unordered(square, exception_throwing_generator(1, -1), 1)
        with pytest.raises(SayWhenError):
            it.next(timeout=TIMEOUT)

    for total, when, chunksize in ((10, 3, 1), (20, 7, 2)):
        it = pool.imap_unordered(square, exception_throwing_generator(total, when), chunksize)
        expected = [square(i) for i in range(total)]
        with pytest.raises(SayWhenError):
            for _ in range(total):
                value = next(it)
                assert value in expected
                expected.remove(value)


# ---- asynchronous results, callbacks ------------------------------------------------


def test_async(pool):
    res = pool.apply_async(sleepy_square, (7, SHORT))
    start = time.monotonic()
    assert res.get(timeout=TIMEOUT) == 49
    assert time.monotonic() - start >= SHORT * 0.9
    assert res.ready() and res.successful()


def test_async_timeout(Pool):
    """get(timeout) raises multiprocessing.TimeoutError while the task runs; successful() too."""
    event = threading.Event()
    p = Pool(3)
    try:
        res = p.apply_async(square_when_set, (6, event))
        start = time.monotonic()
        with pytest.raises(multiprocessing.TimeoutError):
            res.get(timeout=SHORT)
        assert time.monotonic() - start >= SHORT * 0.9
        assert not res.ready()
        with pytest.raises(ValueError):
            res.successful()  # not ready
        res.wait(SHORT)  # returns at its timeout
        assert not res.ready()
    finally:
        event.set()
    try:
        assert res.get(timeout=TIMEOUT) == 36
        assert res.ready() and res.successful()
    finally:
        join_pool(p)


def test_async_result_unsuccessful(pool, work):
    res = pool.apply_async(work.func, (work.bad_item,))
    with pytest.raises(work.bad_error):
        res.get(timeout=TIMEOUT)
    assert res.ready()
    assert res.successful() is False


def test_imap_next_timeout(pool):
    event = threading.Event()
    it = pool.imap(functools.partial(square_when_set, event=event), [3])
    try:
        with pytest.raises(multiprocessing.TimeoutError):
            it.next(timeout=SHORT)
    finally:
        event.set()
    assert it.next(timeout=TIMEOUT) == 9
    with pytest.raises(StopIteration):
        it.next(timeout=TIMEOUT)


def test_apply_async_callbacks(pool, work):
    """callback gets the result, error_callback the exception, before get() returns."""
    results, errors = [], []
    res = pool.apply_async(work.func, (90,), callback=results.append, error_callback=errors.append)
    assert res.get(timeout=TIMEOUT) == work.oracle(90)
    assert results == [work.oracle(90)] and errors == []

    res = pool.apply_async(
        work.func, (work.bad_item,), callback=results.append, error_callback=errors.append
    )
    with pytest.raises(work.bad_error) as info:
        res.get(timeout=TIMEOUT)
    assert results == [work.oracle(90)]
    assert len(errors) == 1 and errors[0] is info.value


def test_map_async_callbacks(pool, work):
    calls = []
    xs = work.items(10)
    res = pool.map_async(work.func, xs, callback=calls.append, error_callback=calls.append)
    res.wait(TIMEOUT)
    assert res.ready()
    assert calls == [work.expected(xs)]

    res = pool.map_async(
        work.func, [work.bad_item], callback=calls.append, error_callback=calls.append
    )
    res.wait(TIMEOUT)
    assert res.ready()
    assert len(calls) == 2
    assert isinstance(calls[1], work.bad_error)


# ---- construction -------------------------------------------------------------------


def test_make_pool(Pool):
    for processes in (-1, 0):
        with pytest.raises(ValueError):
            Pool(processes)
    for processes in ("2", 2.5):
        with pytest.raises(TypeError):
            Pool(processes)
    with pytest.raises(TypeError):
        Pool(1, initializer=3)

    # Three workers: three tasks that wait for each other all run at once.
    barrier = threading.Barrier(3, timeout=TIMEOUT)

    def meet(_):
        barrier.wait()
        return threading.get_ident()

    p = Pool(3)
    try:
        idents = p.map(meet, range(3), 1)
        assert len(set(idents)) == 3
    finally:
        join_pool(p)


def test_default_processes(Pool):
    p = Pool()
    try:
        assert p.map(square, range(20)) == [square(x) for x in range(20)]
    finally:
        join_pool(p)


def test_initializer(Pool):
    """The initializer runs once in each worker thread, before any task there."""
    local = threading.local()
    seen = []
    lock = threading.Lock()

    def init(tag):
        with lock:
            seen.append(threading.get_ident())
        local.tag = tag

    def task(x):
        time.sleep(0.005)
        return getattr(local, "tag", None), threading.get_ident(), x * x

    p = Pool(3, initializer=init, initargs=("ready",))
    try:
        out = p.map(task, range(30), chunksize=1)
    finally:
        join_pool(p)
    assert [r[2] for r in out] == [square(x) for x in range(30)]
    assert {r[0] for r in out} == {"ready"}
    assert 1 <= len(seen) <= 3
    assert len(set(seen)) == len(seen)  # once per thread
    assert {r[1] for r in out} <= set(seen)


def test_maxtasksperchild_invalid(LifetimePool):
    for value in (0, -1, 0.5, "12"):
        with pytest.raises(ValueError):
            LifetimePool(3, maxtasksperchild=value)


def test_maxtasksperchild_early_close(LifetimePool):
    """bpo-10332: closing a pool of short-lived workers before its tasks finish."""
    p = LifetimePool(3, maxtasksperchild=1)
    try:
        results = [p.apply_async(sleepy_square, (i, 0.05)) for i in range(6)]
        within(TIMEOUT, p.close)
        within(TIMEOUT, p.join)
        assert [r.get(timeout=TIMEOUT) for r in results] == [square(i) for i in range(6)]
    finally:
        within(TIMEOUT, p.terminate)


def test_maxtasksperchild_map(LifetimePool):
    p = LifetimePool(2, maxtasksperchild=1)
    try:
        xs = list(range(20))
        assert p.map_async(square, xs, 1).get(timeout=TIMEOUT) == [square(x) for x in xs]
        assert p.map_async(square, xs).get(timeout=TIMEOUT) == [square(x) for x in xs]
    finally:
        join_pool(p)


# ---- lifecycle ----------------------------------------------------------------------


def test_close_then_join(Pool):
    """join() after close() waits for every pending task."""
    p = Pool(2)
    results = [p.apply_async(sleepy_square, (i, 0.02)) for i in range(10)]
    within(TIMEOUT, p.close)
    within(TIMEOUT, p.join)
    assert all(r.ready() for r in results)
    assert [r.get(timeout=0) for r in results] == [square(i) for i in range(10)]


def test_join_running_pool(pool):
    with pytest.raises(ValueError):
        pool.join()
    assert pool.apply(square, (3,)) == 9


@pytest.mark.parametrize("stop", ["close", "terminate"])
def test_stopped_pool_rejects_work(Pool, stop):
    p = Pool(2)
    within(TIMEOUT, getattr(p, stop))
    calls = [
        lambda: p.apply(square, (1,)),
        lambda: p.apply_async(square, (1,)),
        lambda: p.map(square, [1]),
        lambda: p.map_async(square, [1]),
        lambda: p.starmap(mul, [(1, 2)]),
        lambda: p.starmap_async(mul, [(1, 2)]),
        lambda: p.imap(square, [1]),
        lambda: p.imap_unordered(square, [1]),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            call()
    within(TIMEOUT, p.close)  # a no-op now
    within(TIMEOUT, p.join)


def test_terminate(Pool):
    """terminate() returns promptly with many tasks pending; the pool is unusable after."""
    p = Pool(3)
    p.map_async(time.sleep, [0.2] * 1000, chunksize=1)  # 66 s of work on 3 threads
    start = time.monotonic()
    within(TIMEOUT, p.terminate)
    within(TIMEOUT, p.join)
    assert time.monotonic() - start < 5
    with pytest.raises(ValueError):
        p.apply_async(square, (1,))


def test_context(Pool):
    xs = list(range(10))
    with Pool(2) as p:
        assert p.map_async(square, xs).get(timeout=TIMEOUT) == [square(x) for x in xs]
    within(TIMEOUT, p.join)
    with pytest.raises(ValueError):
        p.map_async(square, xs)


def test_enter(Pool):
    p = Pool(1)
    with p as entered:
        assert entered is p
    # The with block terminated the pool: it cannot be entered again (bpo-35477).
    with pytest.raises(ValueError):
        with p:
            pass
    within(TIMEOUT, p.join)

    p = Pool(1)
    within(TIMEOUT, p.close)
    with pytest.raises(ValueError):
        with p:
            pass
    within(TIMEOUT, p.join)


def test_resource_warning(Pool):
    p = Pool(1)
    assert p.apply_async(square, (3,)).get(timeout=TIMEOUT) == 9
    with pytest.warns(ResourceWarning):
        del p
        gc.collect()


def test_release_task_refs(pool):
    """bpo-29861: arguments and results are not kept alive after map returns."""
    objs = [Token() for _ in range(10)]
    refs = [weakref.ref(o) for o in objs]
    out = pool.map(identity, objs)
    assert all(a is b for a, b in zip(out, objs, strict=True))
    del objs, out
    assert wait_until(lambda: all(r() is None for r in refs))

    out = pool.map(make_token, range(10))
    assert all(type(o) is Token for o in out)
    refs = [weakref.ref(o) for o in out]
    del out
    assert wait_until(lambda: all(r() is None for r in refs))

    obj = Token()
    ref = weakref.ref(obj)
    res = pool.apply_async(identity, (obj,))
    assert res.get(timeout=TIMEOUT) is obj
    del obj, res
    assert wait_until(lambda: ref() is None)
