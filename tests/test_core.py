"""The kernel contract and the one native path under every executor.

Items own what they refer to (a kernel's item may hold a reference to a
Python object), and every parsed item is released exactly once whatever
stops it; a kernel's error codes reach Python as its own exceptions; one
native batch serves Pool, ThreadPoolExecutor and parpy.map; imap reads
ahead only what the workers can use; concurrent batches share a pool's
threads. Run under ASan by .ci/sanitize, where a dangling item crashes.
"""

from __future__ import annotations

import ctypes
import gc
import itertools
import os
import sys
import threading
import time

import pytest
from _util import fib_exact, run_python
from hypothesis import given
from hypothesis import strategies as st

import parpy
from parpy import _core, reference

T = 60  # seconds: every blocking wait in this file

# Ints whose decimal form is over 64 KiB (a result reserved when a worker
# takes the task, not when it is submitted) and small ones.
BIG_EXP = 70_000  # 7**BIG_EXP has 59,150 digits; times 3 below
SMALL = [0, 1, -1, 10**18, -(2**64), 12345678901234567890]


def big(i: int) -> int:
    """A fresh int of about 180,000 digits (a new object on every call)."""
    return (7 ** (3 * BIG_EXP) + i) * (-1) ** i


def expected(i: int) -> str:
    return reference.to_decimal(big(i))


@pytest.fixture(scope="module")
def expect():
    return {i: expected(i) for i in range(8)}


# ---- to_decimal ------------------------------------------------------------------


@pytest.mark.parametrize("impl", [parpy.to_decimal, reference.to_decimal], ids=["native", "ref"])
def test_to_decimal_equals_str(impl):
    for x in SMALL + [10**k for k in range(0, 60)] + [-(10**k) + 1 for k in range(1, 60)]:
        assert impl(x) == int.__repr__(x), x


@given(st.integers() | st.integers(-(10**5000), 10**5000) | st.just(-(2**63)))
def test_to_decimal_equals_int_repr_on_any_int(x):
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        assert parpy.to_decimal(x) == reference.to_decimal(x) == int.__repr__(x)
    finally:
        sys.set_int_max_str_digits(old)


def test_to_decimal_on_large_ints_equals_str_without_the_limit(expect):
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        for i in range(4):
            assert parpy.to_decimal(big(i)) == str(big(i)) == expect[i]
        f = parpy.fib(10**5)
        assert parpy.to_decimal(f) == str(f)
    finally:
        sys.set_int_max_str_digits(old)


def test_to_decimal_has_no_digit_limit():
    # str() refuses ints of more than 4300 digits by default; to_decimal does not.
    f = parpy.fib(10**5)
    with pytest.raises(ValueError):
        str(f)
    text = parpy.to_decimal(f)
    assert len(text) == 20899 and text == reference.to_decimal(f)
    assert text[:10] == "2597406934" and text[-10:] == "3428746875"  # F(100000), published


@pytest.mark.parametrize("impl", [parpy.to_decimal, reference.to_decimal], ids=["native", "ref"])
def test_to_decimal_validates(impl):
    for bad in (True, False, 1.0, "1", None, b"1", 3 + 0j):
        with pytest.raises(TypeError, match="x must be an int"):
            impl(bad)

    class MyInt(int):
        def __str__(self):
            return "mine"

        __repr__ = __str__

    assert impl(MyInt(-42)) == "-42"


def test_to_decimal_through_every_executor(expect):
    xs = [big(i) for i in range(4)] + SMALL
    want = [expect[i] for i in range(4)] + [int.__repr__(x) for x in SMALL]
    assert parpy.map(parpy.to_decimal, xs, workers=2) == want
    with parpy.Pool(2) as pool:
        assert pool.map(parpy.to_decimal, xs) == want
        assert list(pool.imap(parpy.to_decimal, xs)) == want
        assert pool.apply(parpy.to_decimal, (xs[0],)) == want[0]
    with parpy.ThreadPoolExecutor(2) as executor:
        assert list(executor.map(parpy.to_decimal, xs, timeout=T)) == want
        assert list(executor.map(parpy.to_decimal, xs, chunksize=3, timeout=T)) == want


# ---- items own what they refer to ------------------------------------------------------


def _submit_and_drop(submit, count):
    """Submits to_decimal of fresh big ints, keeping no reference to them."""
    return [submit(i) for i in range(count)]


def test_items_keep_their_arguments_alive_on_every_path(expect):
    # Each argument is created inside the call and dropped by the caller at
    # once: only the item's own reference keeps it alive until computed.
    # Results are over 64 KiB, so the executor and the pool reserve them
    # when a worker takes the task (the deferred path).
    n = 6
    with parpy.ThreadPoolExecutor(2) as executor:
        futures = _submit_and_drop(lambda i: executor.submit(parpy.to_decimal, big(i)), n)
        gc.collect()
        assert [f.result(T) for f in futures] == [expect[i] for i in range(n)]
        results = executor.map(parpy.to_decimal, (big(i) for i in range(n)), timeout=T)
        gc.collect()
        assert list(results) == [expect[i] for i in range(n)]
        results = executor.map(parpy.to_decimal, (big(i) for i in range(n)), chunksize=2, timeout=T)
        gc.collect()
        assert list(results) == [expect[i] for i in range(n)]
    with parpy.Pool(2) as pool:
        asyncs = _submit_and_drop(lambda i: pool.apply_async(parpy.to_decimal, (big(i),)), n)
        gc.collect()
        assert [r.get(T) for r in asyncs] == [expect[i] for i in range(n)]
        result = pool.map_async(parpy.to_decimal, [big(i) for i in range(n)])
        gc.collect()
        assert result.get(T) == [expect[i] for i in range(n)]
        iterator = pool.imap(parpy.to_decimal, (big(i) for i in range(n)))
        gc.collect()
        assert [iterator.next(timeout=T) for _ in range(n)] == [expect[i] for i in range(n)]
        iterator = pool.imap_unordered(parpy.to_decimal, (big(i) for i in range(n)))
        gc.collect()
        got = [iterator.next(timeout=T) for _ in range(n)]
        assert sorted(got) == sorted(expect[i] for i in range(n))


def page(i: int) -> bytes:
    """A fresh page of about 100 KB whose links are over 64 KiB as a list."""
    return b"".join(b'<p><a href="/page/%d/%d">link</a>' % (i, k) for k in range(3000))


def page_links(i: int) -> list[str]:
    return [f"/page/{i}/{k}" for k in range(3000)]


def test_a_page_kernel_owns_its_page_on_every_path():
    # extract_links holds the page (bytes) it reads without the GIL; callers
    # drop theirs at once.
    n = 5
    want = [page_links(i) for i in range(n)]
    assert parpy.map(parpy.extract_links, [page(i) for i in range(n)], workers=2) == want
    with parpy.ThreadPoolExecutor(2) as executor:
        futures = [executor.submit(parpy.extract_links, page(i)) for i in range(n)]
        gc.collect()
        assert [f.result(T) for f in futures] == want
        got = executor.map(parpy.extract_links, (page(i) for i in range(n)), chunksize=2)
        assert list(got) == want
    with parpy.Pool(2) as pool:
        asyncs = [pool.apply_async(parpy.extract_links, (page(i),)) for i in range(n)]
        gc.collect()
        assert [r.get(T) for r in asyncs] == want
        assert pool.map_async(parpy.extract_links, [page(i) for i in range(n)]).get(T) == want
        assert list(pool.imap(parpy.extract_links, (page(i) for i in range(n)))) == want
        pairs = [(page(i), "http://h/") for i in range(n)]
        assert pool.starmap(parpy.extract_links, pairs) == [
            ["http://h" + link for link in links] for links in want
        ]


def _refcount_stays(x, action) -> None:
    gc.collect()
    before = sys.getrefcount(x)
    action()
    gc.collect()
    assert sys.getrefcount(x) == before


def test_a_siblings_parse_failure_releases_earlier_items():
    x = big(0)
    pool = parpy.Pool(1)
    for call in (
        lambda: parpy.map(parpy.to_decimal, [x, x, x, "bad", x]),
        lambda: _core.Batch(parpy.to_decimal, [x] * 5 + [1.5]),
        lambda: pool.map(parpy.to_decimal, [x, x, None]),
    ):

        def failing(call=call):
            with pytest.raises(TypeError, match="x must be an int") as info:
                call()
            del info

        _refcount_stays(x, failing)
    pool.terminate()
    pool.join()


@pytest.mark.timeout(120)
def test_refused_and_dropped_items_are_released():
    x = big(1)
    # refused by the memory check: every result at once would not fit
    # (each result is about 177,000 characters)
    count = int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 150_000) + 10

    def refused():
        with pytest.raises(MemoryError, match="a batch of .* to_decimal results"):
            parpy.map(parpy.to_decimal, [x] * count)

    _refcount_stays(x, refused)

    # deferred, then dropped before a worker took it
    def dropped():
        executor = parpy.ThreadPoolExecutor(1)
        gate = threading.Event()
        executor.submit(gate.wait, T)
        futures = [executor.submit(parpy.to_decimal, x) for _ in range(5)]
        executor.shutdown(wait=False, cancel_futures=True)
        gate.set()
        executor.shutdown(wait=True)
        assert all(f.cancelled() for f in futures)

    _refcount_stays(x, dropped)

    # queued in a pool that is terminated
    def terminated():
        with parpy.Pool(1) as pool:
            pool.apply_async(time.sleep, (0.2,))
            results = [pool.map_async(parpy.to_decimal, [x, x]) for _ in range(5)]
        pool.join()  # (terminated: its worker may still be ending the item it had)
        for r in results:
            with pytest.raises(RuntimeError):
                r.get(T)

    _refcount_stays(x, terminated)

    # computed but never built: a sibling failed in a batch
    def sibling_failed():
        with pytest.raises(TypeError):
            parpy.map(parpy.to_decimal, [x, x, 1.0])

    _refcount_stays(x, sibling_failed)


def test_imap_items_get_their_own_outcome(expect):
    # imap of a kernel: each item its own value or exception; the others go on
    with parpy.Pool(2) as pool:
        items = [5, "x", 7, -1, 9] * 3
        iterator = pool.imap(parpy.fib, items, chunksize=5)
        for position, item in enumerate(items):
            if isinstance(item, str) or item < 0:
                with pytest.raises((TypeError, ValueError)) as info:
                    iterator.next(timeout=T)
                assert info.value.__notes__ == [f"parpy.fib: items[{position}]"]
            else:
                assert iterator.next(timeout=T) == fib_exact(item)
        with pytest.raises(StopIteration):
            iterator.next(timeout=T)


# ---- errors ---------------------------------------------------------------------


def test_a_cancelled_batch_raises_the_kernels_cancellation():
    control = _core.Control()
    batch = _core.Batch(parpy.fib_recursive, [40] * 8, workers=2, control=control)
    threading.Timer(0.2, control.cancel).start()
    start = time.monotonic()
    with pytest.raises(_core.Cancelled, match="fib_recursive: cancelled") as info:
        batch.run()
    assert time.monotonic() - start < 30
    assert isinstance(info.value, RuntimeError)
    assert info.value.__notes__[0].startswith("parpy.fib_recursive: items[")


def test_a_batch_runs_once():
    batch = _core.Batch(parpy.fib, [1, 2, 3])
    assert batch.run() == [1, 1, 2]
    with pytest.raises(RuntimeError, match="once"):
        batch.run()


def test_batch_costs_are_the_kernels_estimates_in_input_order():
    ns = [30000, 0, 10**6, 93, 30000, 2000]
    costs = _core.Batch(parpy.fib_iterative, ns).costs()
    assert len(costs) == len(ns) and all(isinstance(c, float) and c > 0 for c in costs)
    assert costs[0] == costs[4]
    assert costs[2] > costs[0] > costs[5] > costs[3] >= costs[1]
    # an estimate of compute in nanoseconds: fib_iterative(30000) takes about 1.5 ms
    assert 1e5 < costs[0] < 1e8
    assert _core.Batch(parpy.fib, []).costs() == []
    # an item that failed to parse (outcomes mode) is estimated at nothing
    assert _core.Batch(parpy.fib, [5, "x", 7], outcomes=True).costs()[1] == 0.0
    assert len(_core.Batch(parpy.fib_mod.bind(7), [1, 2**63]).costs()) == 2


def test_batch_call_mode_is_the_call():
    assert _core.call(parpy.fib_mod, (10, 7)).run() == 55 % 7
    with pytest.raises(ValueError) as info:
        _core.call(parpy.fib, (-1,))
    assert not getattr(info.value, "__notes__", None)
    with pytest.raises(TypeError, match="takes exactly 2"):
        _core.call(parpy.fib_mod, (1,))


# ---- C values between kernels -----------------------------------------------------


def test_kernels_declare_their_c_values():
    assert parpy.fib.output == parpy.fib_iterative.output == "mpz"
    assert parpy.to_decimal.input == "mpz" and parpy.to_decimal.output == "text"
    assert parpy.fib.input is None


@pytest.mark.parametrize("n", [0, 5, 93, 94, 1000, 10**5, 10**6])
def test_fib_feeds_to_decimal_without_a_python_int(n):
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        assert _core.chain((parpy.fib, parpy.to_decimal), (n,)) == str(parpy.fib(n))
        assert _core.chain((parpy.fib_iterative, parpy.to_decimal), (n % 5000,)) == str(
            fib_exact(n % 5000)
        )
    finally:
        sys.set_int_max_str_digits(old)
    assert _core.chain((parpy.fib_mod, parpy.to_decimal), (n, 97)) == str(parpy.fib_mod(n, 97))


def test_chain_refuses_kernels_that_do_not_fit():
    with pytest.raises(TypeError, match="cannot take the output"):
        _core.chain((parpy.to_decimal, parpy.fib), (5,))
    with pytest.raises(ValueError):
        _core.chain((parpy.fib, parpy.to_decimal), (-1,))


# ---- imap reads ahead only what the workers can use ----------------------------------


@pytest.mark.parametrize("processes", [1, 2, 4])
def test_imap_read_ahead_is_bounded(processes):
    with parpy.Pool(processes) as pool:
        counter = itertools.count()
        got = list(itertools.islice(pool.imap(parpy.fib, counter), 1000))
        assert got == [fib_exact(i) for i in range(1000)]
        pulled = next(counter)
        assert pulled < 10_000, pulled


# ---- concurrent batches share the pool's threads ----------------------------------------


CONCURRENT_BATCHES = """
import os, threading, time
import parpy

def running_threads(exclude):
    running = 0
    for tid in os.listdir("/proc/self/task"):
        if int(tid) == exclude:
            continue
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
        except FileNotFoundError:
            continue
        if stat[stat.rindex(")") + 2] == "R":
            running += 1
    return running

me = threading.get_native_id()
with parpy.Pool(2) as pool:
    pool.map(parpy.fib, range(10))  # workers started
    results = [pool.map_async(parpy.fib_recursive, [30] * 12) for _ in range(6)]
    peak = 0
    deadline = time.monotonic() + 60
    while not all(r.ready() for r in results) and time.monotonic() < deadline:
        peak = max(peak, running_threads(me))
        time.sleep(0.002)
    right = all(r.get(60) == [832040] * 12 for r in results)
print("PEAK", peak, right)
"""


@pytest.mark.unsafe_under(
    "thread", reason="ThreadSanitizer's own background thread runs in the counted process"
)
def test_concurrent_batches_share_the_pools_threads():
    # Six batches at once on Pool(2): never more than two threads compute.
    # In a fresh process, so that no other test's threads are counted; every
    # thread but the sampling one is counted while it is running (state R).
    proc = run_python(CONCURRENT_BATCHES, timeout=120)
    assert proc.returncode == 0, proc.stderr
    _, peak, right = proc.stdout.split()
    assert right == "True"
    assert 1 <= int(peak) <= 2, peak


def test_gmp_version_names_the_gmp_that_parpy_runs_on():
    # dlsym on the extension's own handle searches the libraries it was linked with.
    runtime = ctypes.c_char_p.in_dll(ctypes.CDLL(parpy._core.__file__), "__gmp_version").value
    assert runtime is not None and parpy.gmp_version == runtime.decode()
    assert parpy.gmp_version.count(".") == 2 and parpy.gmp_version.split(".")[0].isdigit()
