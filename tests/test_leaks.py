"""Reference counts and memory stay flat over repeated calls, valid and invalid."""

from __future__ import annotations

import gc
import sys
import tracemalloc

import pytest
from _util import INPUT_ERRORS, MAPPED, Index, fib_exact, run_python

import parpy

REPEAT = 300


def fresh_int(value):
    """An int object no one else holds (not a constant). Values from -5 to 256 are CPython's
    cached small ints, whose counts every thread changes: compare those only where no other
    thread runs Python code."""
    return int(str(value))


def call_ignoring_input_errors(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except INPUT_ERRORS:
        return None


def assert_refcounts_stable(objects, action, repeat=REPEAT):
    action()  # first-call caches, interned strings, ...
    gc.collect()
    before = [sys.getrefcount(obj) for obj in objects]
    for _ in range(repeat):
        action()
    gc.collect()
    after = [sys.getrefcount(obj) for obj in objects]
    assert after == before


# ---- reference counts ---------------------------------------------------------------


def test_refcount_probe_detects_a_leak():
    kept = []
    obj = fresh_int(12345)
    with pytest.raises(AssertionError):
        assert_refcounts_stable([obj], lambda: kept.append(obj), repeat=3)


@pytest.mark.parametrize("name", ["fib", "fib_iterative", "fib_recursive"])
def test_single_call_arguments(name):
    kernel = getattr(parpy, name)
    n = fresh_int(25)
    index = Index(fresh_int(25))
    assert_refcounts_stable([kernel, n, index, index.value], lambda: (kernel(n), kernel(index)))


def test_fib_mod_arguments():
    n, m, index = fresh_int(10**18 + 9), fresh_int(10**9 + 7), Index(fresh_int(12345))
    assert_refcounts_stable(
        [parpy.fib_mod, n, m, index], lambda: (parpy.fib_mod(n, m), parpy.fib_mod(index, m))
    )


BAD_VALUES = {
    "str": "not an int",
    "float": 2.5,
    "negative": fresh_int(-(10**30)),
    "huge": fresh_int(2**100),
    "bool": True,
    "object": object(),
    "index-negative": Index(fresh_int(-12345)),
    "index-huge": Index(fresh_int(2**70)),
}


@pytest.mark.parametrize("name", ["fib", "fib_iterative", "fib_recursive", "fib_mod"])
@pytest.mark.parametrize("bad", list(BAD_VALUES))
def test_invalid_single_call_arguments(name, bad):
    kernel = getattr(parpy, name)
    value = BAD_VALUES[bad]
    args = (value, 7) if name == "fib_mod" else (value,)
    assert_refcounts_stable([kernel, value], lambda: call_ignoring_input_errors(kernel, *args))


def test_size_errors():
    too_big = fresh_int(197945663548)
    too_much_memory = fresh_int(10**11)
    items = [1, too_much_memory]
    assert_refcounts_stable(
        [parpy.fib, too_big, too_much_memory, items],
        lambda: (
            call_ignoring_input_errors(parpy.fib, too_big),
            call_ignoring_input_errors(parpy.fib_iterative, too_big),
            call_ignoring_input_errors(parpy.fib, too_much_memory),
            call_ignoring_input_errors(parpy.fib_batch, items),
        ),
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_batch_items(workers):
    elements = [fresh_int(n) for n in (5, 500, 94, 2000)] + [Index(fresh_int(300))]
    items = elements * 20
    pairs = [(fresh_int(10**18), fresh_int(97)), [fresh_int(5), fresh_int(3)]]
    assert_refcounts_stable(
        [items, *elements, pairs, *pairs, *pairs[0], *pairs[1], parpy.fib, parpy.fib_mod],
        lambda: (
            parpy.fib_batch(items, workers=workers),
            parpy.map(parpy.fib, items, workers=workers, schedule="static", chunksize=3),
            parpy.fib_batch(iter(items), workers=workers, algorithm="iterative"),
            parpy.map(parpy.fib_mod, pairs * 50, workers=workers),
        ),
        repeat=100,
    )


@pytest.mark.parametrize(
    "bad",
    ["x", fresh_int(-5), fresh_int(2**64), fresh_int(10**11), (1, 2), Index(fresh_int(-1))],
    ids=["str", "negative", "2**64", "memory", "tuple", "index"],
)
def test_invalid_batch_items(bad):
    good = [fresh_int(n) for n in (5000, 100, 94)]
    items = good * 30 + [bad] + good
    pairs = [(fresh_int(10), fresh_int(7)), bad]
    assert_refcounts_stable(
        [items, bad, *good, pairs, parpy.fib],
        lambda: (
            call_ignoring_input_errors(parpy.fib_batch, items, workers=2),
            call_ignoring_input_errors(parpy.map, parpy.fib_mod, pairs),
        ),
        repeat=100,
    )


def test_results_are_not_over_referenced():
    for n in (94, 1000, 10**5):
        result = parpy.fib(n)
        assert sys.getrefcount(result) == 2  # the local and getrefcount's argument
        result = parpy.fib_iterative(n if n < 10**5 else 3000)
        assert sys.getrefcount(result) == 2
    batch = parpy.fib_batch([1000, 2000, 10**5, 50, 93], workers=2)
    # the list and getrefcount's argument
    assert [sys.getrefcount(batch[i]) for i in range(5)] == [2] * 5
    assert sys.getrefcount(batch) == 2
    pairs = parpy.map(parpy.fib_mod, [(10**18, 2**64 - 1)] * 3)
    assert [sys.getrefcount(pairs[i]) for i in range(3)] == [2] * 3


# ---- memory -----------------------------------------------------------------------


def _workload():
    parpy.fib(10**4)
    parpy.fib(Index(3000))
    parpy.fib_iterative(3000)
    parpy.fib_recursive(15)
    parpy.fib_mod(10**18, 10**9 + 7)
    parpy.fib_batch(range(0, 3000, 7), workers=2)
    parpy.fib_batch([10**4] * 20 + [5] * 100, workers=2, schedule="guided")
    parpy.map(parpy.fib_mod, [(i, 1000 + i) for i in range(200)], workers=2, schedule="static")
    parpy.fib_batch([20] * 50, algorithm="recursive", workers=2)
    for bad in ["x", -1, 2**64, 1.5, None, True, 10**11, 197945663548]:
        call_ignoring_input_errors(parpy.fib, bad)
        call_ignoring_input_errors(parpy.fib_batch, [1, 2, 3000, bad], workers=2)
    call_ignoring_input_errors(parpy.map, parpy.fib_mod, [(1, 2), (3, 0)])
    call_ignoring_input_errors(parpy.fib_batch, [1], workers=0)


def assert_traced_memory_flat(workload, *, warmup, rounds, per_round, slack):
    """Python-allocated memory stays within slack bytes from the second round on."""
    for _ in range(warmup):
        workload()
    gc.collect()
    tracemalloc.start()
    try:
        readings = []
        for _ in range(rounds):
            for _ in range(per_round):
                workload()
            gc.collect()
            readings.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    # After the first round, nothing accumulates (some slack for caches).
    assert max(readings[1:]) - min(readings[1:]) < slack, readings


def test_traced_memory_is_flat():
    assert_traced_memory_flat(_workload, warmup=10, rounds=5, per_round=15, slack=32 * 1024)


@pytest.mark.memory_limits
def test_native_memory_is_flat():
    # GMP and the batch driver allocate with malloc, which tracemalloc does not
    # see: watch the resident set of a child instead. A leaked F(10**5) per
    # call would add several MB per 1000 calls.
    proc = run_python(
        """
        import gc, parpy

        def rss():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * 4096

        def workload():
            for _ in range(50):
                parpy.fib(10**5)
                parpy.fib_iterative(5000)
            parpy.fib_batch([10**5] * 50 + list(range(500)), workers=2)
            parpy.fib_batch([10**5] * 50, workers=2, schedule="static", chunksize=2)
            parpy.fib_batch([3000] * 50, algorithm="iterative", workers=2)
            try:
                parpy.fib_batch([10**5] * 10 + ["x"], workers=2)
            except TypeError:
                pass

        for _ in range(5):
            workload()
        gc.collect()
        start = rss()
        for _ in range(40):
            workload()
        gc.collect()
        print((rss() - start) // 2**20)
        """,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) < 8, f"resident set grew by {proc.stdout.strip()} MiB"


@pytest.mark.memory_limits
@pytest.mark.parametrize("how", ["loop", "map"])
def test_map_over_many_tiny_ints_fits_where_a_loop_does(how):
    # Results of tiny ints take about 36 bytes an item (the list's slot and the int). Under
    # an address-space limit of twice that over what the process maps already, a loop of
    # calls fits, and parpy.map must too: a large input of plain items is validated, then
    # parsed, computed and built a window at a time, instead of holding every parsed item
    # (90 bytes each for fib) while the results are built.
    call = "[parpy.fib(n) for n in ns]" if how == "loop" else "parpy.map(parpy.fib, ns)"
    proc = run_python(
        MAPPED
        + f"""
import parpy

parpy.fib_batch([10**5] * 50, workers=2)  # threads started before the cap
ns = [i % 94 for i in range(2 * 10**6)]
table = [parpy.fib(n) for n in range(94)]
cap = mapped() + 72 * len(ns)
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
results = {call}
print(len(results), all(r == table[n] for r, n in zip(results, ns)))
""",
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["2000000", "True"]


def test_failed_batches_release_their_reservations():
    # A batch reserves every result before computing; one bad item at the end
    # must release what was reserved for the others.
    items = [10**5] * 200 + ["x"]
    for _ in range(3):
        call_ignoring_input_errors(parpy.fib_batch, items)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(30):
            call_ignoring_input_errors(parpy.fib_batch, items)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024
    assert parpy.fib_batch([10**5]) == [fib_exact(10**5)]


# ---- pools and executors ---------------------------------------------------------------


@pytest.fixture(scope="module")
def pools():
    with parpy.Pool(2) as pool, parpy.ThreadPoolExecutor(2) as executor:
        yield pool, executor


def test_pool_and_executor_arguments(pools):
    pool, executor = pools
    # Not small ints: the pools' threads run Python code, which uses those too.
    n, big, index = fresh_int(300), fresh_int(3000), Index(fresh_int(400))
    bad = fresh_int(-7)

    def action():
        pool.map(parpy.fib, [n, big, index])
        pool.map(parpy.reference.fib, [n, big, index], chunksize=1)
        list(pool.imap(parpy.fib, [n, bad, big]))  # the bad item raises mid-way
        call_ignoring_input_errors(pool.map, parpy.fib, [n, bad])
        pool.apply(parpy.fib, (big,))
        futures = [executor.submit(parpy.fib, x) for x in (n, big, index, bad)]
        futures.append(executor.submit(parpy.fib_mod, big, n))
        futures.append(executor.submit(pow, n, 2))
        for future in futures:
            future.exception(60)
        list(executor.map(parpy.fib, [n, big], chunksize=2))

    def run():
        try:
            action()
        except ValueError:  # from imap's bad item
            pass

    assert_refcounts_stable([parpy.fib, n, big, index, index.value, bad], run, repeat=50)


def test_cancelled_kernel_futures_release_everything():
    n = fresh_int(10**5)

    def action():
        executor = parpy.ThreadPoolExecutor(1)
        gate = executor.submit(sys.getrefcount, 0)  # keep the worker busy for a moment
        futures = [executor.submit(parpy.fib, n) for _ in range(20)]
        executor.shutdown(wait=True, cancel_futures=True)
        gate.result(60)
        for future in futures:
            assert future.cancelled() or future.result(60) == fib_exact(10**5)

    assert_refcounts_stable([parpy.fib, n], action, repeat=20)


def test_pool_traced_memory_is_flat(pools):
    pool, executor = pools

    def workload():
        pool.map(parpy.fib, range(300))
        pool.map(parpy.reference.fib, range(300))
        list(pool.imap_unordered(parpy.fib, range(300)))
        for future in [executor.submit(parpy.fib, i) for i in range(300)]:
            future.result(60)
        call_ignoring_input_errors(pool.map, parpy.fib, [1, "x"])

    assert_traced_memory_flat(workload, warmup=5, rounds=4, per_round=5, slack=64 * 1024)
