"""parpy.Pool and parpy.ThreadPoolExecutor beyond the stdlib's behaviour.

test_pool.py and test_executor.py hold parpy to the stdlib's own assertions;
this module checks what only parpy does: kernels run as native batches (and
are cancelled by terminate), imap reads its input lazily, progress bars are
fed by native counters, and Ctrl-C and interpreter exit never hang.
"""

from __future__ import annotations

import concurrent.futures as cf
import gc
import itertools
import signal
import sys
import textwrap
import threading
import time
import tracemalloc
import warnings

import pytest
from _util import fib_exact, finish, interactive, run_python

import parpy
from parpy import _core, reference

pytestmark = pytest.mark.timeout(120)

T = 60  # seconds: every blocking wait below has this timeout at most

NS = [(i * 37) % 500 for i in range(400)] + [10**4, 2 * 10**4]
KERNELS = {
    "fib": (parpy.fib, reference.fib),
    "fib_iterative": (parpy.fib_iterative, reference.fib_iterative),
}


def expected(ns):
    return [reference.fib(n) for n in ns]


@pytest.fixture
def pool():
    with parpy.Pool(2) as p:
        yield p


# ---- kernels as native batches ---------------------------------------------------


@pytest.mark.parametrize("name", list(KERNELS))
def test_kernel_map_forms_match_the_reference(pool, name):
    kernel, twin = KERNELS[name]
    want = [twin(n) for n in NS]
    assert pool.map(kernel, NS) == want
    assert pool.map(kernel, NS, chunksize=7) == want
    assert pool.map(kernel, iter(NS)) == want
    assert pool.map_async(kernel, NS).get(T) == want
    assert pool.starmap(kernel, [(n,) for n in NS]) == want
    assert list(pool.imap(kernel, NS)) == want
    assert list(pool.imap(kernel, NS, chunksize=5)) == want
    assert sorted(pool.imap_unordered(kernel, NS)) == sorted(want)
    assert pool.apply(kernel, (NS[-1],)) == want[-1]


def test_kernel_of_two_arguments(pool):
    pairs = [(n * 10**15 + 3, m) for n in range(50) for m in (1, 2, 97, 2**64 - 1)]
    want = [reference.fib_mod(n, m) for n, m in pairs]
    assert pool.starmap(parpy.fib_mod, pairs) == want
    assert pool.starmap_async(parpy.fib_mod, pairs).get(T) == want
    # map passes each tuple as one argument: a TypeError, as with any function
    with pytest.raises(TypeError):
        pool.map(parpy.fib_mod, pairs[:3])


def test_bad_kernel_input_fails_before_any_work_and_the_pool_goes_on(pool):
    with pytest.raises(ValueError, match=r"items\[2\]"):
        pool.map(parpy.fib, [1, 2, -3, 4])
    with pytest.raises(TypeError):
        pool.map_async(parpy.fib, [1, "x"]).get(T)
    with pytest.raises(OverflowError):
        pool.map(parpy.fib, [2**64])
    assert pool.map(parpy.fib, NS) == expected(NS)


def test_imap_of_a_kernel_raises_per_item_and_goes_on(pool):
    ns = [5, -1, 7, "x", 9] + list(range(100))
    outcomes = []
    iterator = pool.imap(parpy.fib, ns)
    for _ in ns:
        try:
            outcomes.append(iterator.next(timeout=T))
        except (ValueError, TypeError) as exc:
            outcomes.append(type(exc))
    want = [5, ValueError, 13, TypeError, 34] + expected(range(100))
    assert outcomes == [fib_exact(x) if isinstance(x, int) else x for x in [5]] + want[1:]
    with pytest.raises(StopIteration):
        iterator.next(timeout=T)


def test_other_threads_run_during_a_pool_map_of_a_kernel(pool):
    # The batch runs with the GIL released: a Python thread keeps counting.
    counter = [0]
    stop = threading.Event()

    def count():
        while not stop.is_set():
            counter[0] += 1

    thread = threading.Thread(target=count, daemon=True)
    thread.start()
    try:
        before = counter[0]
        result = pool.map(parpy.fib_recursive, [32] * 8)
        during = counter[0] - before
    finally:
        stop.set()
        thread.join(T)
    assert result == [fib_exact(32)] * 8
    assert during > 1000


# ---- lazy imap -------------------------------------------------------------------------


@pytest.mark.parametrize("func", [parpy.fib, reference.fib], ids=["kernel", "python"])
@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
def test_imap_reads_an_endless_input_lazily(pool, func, method):
    pulled = [0]

    def endless():
        for n in itertools.count():
            pulled[0] += 1
            yield n % 90

    iterator = getattr(pool, method)(func, endless())
    got = [iterator.next(timeout=T) for _ in range(5000)]
    want = expected(n % 90 for n in range(5000))
    assert (got if method == "imap" else sorted(got)[:0]) == (want if method == "imap" else [])
    assert set(got) <= set(want)
    # A bounded window ahead of the consumer: 64 chunks of at most 1024 items.
    assert pulled[0] <= 5000 + 64 * 1024
    pool.terminate()


def test_imap_hands_back_results_while_later_ones_compute(pool):
    release = threading.Event()

    def slow(n):
        if n == 3:
            assert release.wait(T)
        return reference.fib(n)

    iterator = pool.imap(slow, range(6))
    assert [iterator.next(timeout=T) for _ in range(3)] == expected(range(3))
    with pytest.raises(parpy.pool.TimeoutError):
        iterator.next(timeout=0.2)
    release.set()
    assert list(iterator) == expected(range(3, 6))


def test_imap_of_a_kernel_returns_early_results_of_a_long_batch(pool):
    # fib_recursive(60) takes hours: the first results come back regardless,
    # and terminate cancels the native computation.
    iterator = pool.imap(parpy.fib_recursive, [1, 2, 3, 60, 4])
    assert [iterator.next(timeout=T) for _ in range(3)] == [1, 1, 2]
    start = time.monotonic()
    pool.terminate()
    pool.join()
    assert time.monotonic() - start < 10
    with pytest.raises(RuntimeError, match="terminated"):
        iterator.next(timeout=T)


def test_join_after_close_finishes_an_unconsumed_imap(pool):
    iterator = pool.imap(reference.fib, range(300))
    pool.close()
    pool.join()
    assert list(iterator) == expected(range(300))


def _join_within(pool, timeout=T):
    joiner = threading.Thread(target=pool.join, daemon=True)
    joiner.start()
    joiner.join(timeout)
    assert not joiner.is_alive(), "join() did not return"


@pytest.mark.parametrize("close_first", [False, True])
def test_a_dropped_endless_imap_does_not_keep_the_pool_open(close_first):
    pool = parpy.Pool(2)
    iterator = pool.imap(reference.fib, itertools.count())
    assert [iterator.next(timeout=T) for _ in range(5)] == expected(range(5))
    threads = list(pool._threads)
    if close_first:
        pool.close()  # the iterator still reads: the queue stays open for it
        assert all(t.is_alive() for t in threads)
    del iterator
    gc.collect()
    if not close_first:
        pool.close()
    _join_within(pool)
    assert not any(t.is_alive() for t in threads)


# ---- terminate and cancellation ----------------------------------------------------------


@pytest.mark.parametrize("form", ["map_async", "imap", "apply_async"])
def test_terminate_cancels_native_work(form):
    pool = parpy.Pool(2)
    if form == "map_async":
        result = pool.map_async(parpy.fib_recursive, [60] * 4)
        outcome = lambda: result.get(T)  # noqa: E731
    elif form == "imap":
        iterator = pool.imap(parpy.fib_recursive, [60] * 4)
        outcome = lambda: iterator.next(timeout=T)  # noqa: E731
    else:
        result = pool.apply_async(parpy.fib_iterative, (10**9,))
        outcome = lambda: result.get(T)  # noqa: E731
    time.sleep(0.2)
    start = time.monotonic()
    pool.terminate()
    pool.join()
    assert time.monotonic() - start < 10
    if form == "apply_async":
        # A single call is not a batch: it finished or was abandoned with its worker.
        with pytest.raises((RuntimeError, MemoryError)):
            outcome()
    else:
        with pytest.raises(RuntimeError):
            outcome()


def test_terminate_fails_pending_results_instead_of_leaving_them_forever():
    pool = parpy.Pool(1)
    gate = threading.Event()
    first = pool.apply_async(gate.wait, (T,))
    pending = [pool.apply_async(reference.fib, (n,)) for n in range(100)]
    errors = []
    late = pool.apply_async(reference.fib, (5,), error_callback=errors.append)
    pool.terminate()
    gate.set()
    pool.join()
    # Every result is final: a value, or the RuntimeError of termination.
    for n, result in zip([None, *range(100), 5], [first, *pending, late], strict=True):
        assert result.ready()
        if result.successful():
            assert result.get(T) == (True if n is None else reference.fib(n))
        else:
            with pytest.raises(RuntimeError, match="terminated"):
                result.get(T)
    assert not late.successful()
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)


def test_a_failing_initializer_breaks_the_pool_without_hanging():
    def init():
        raise OSError("no resource")

    pool = parpy.Pool(2, initializer=init)
    try:
        with pytest.raises(RuntimeError, match="initializer") as info:
            # fails at once if the workers failed already, else when they do
            pool.map_async(reference.fib, range(10)).get(T)
        assert isinstance(info.value.__cause__, OSError)
        with pytest.raises(RuntimeError, match="initializer"):
            pool.apply_async(reference.fib, (3,))
    finally:
        pool.terminate()
        pool.join()


def test_maxtasksperchild_replaces_worker_threads():
    threads = []  # kept alive, so that no two are the same object

    def record(n):
        threads.append(threading.current_thread())
        return reference.fib(n)

    with parpy.Pool(2, maxtasksperchild=2) as pool:
        assert pool.map(record, range(40), chunksize=1) == expected(range(40))
    # 40 tasks, 2 per thread; the (at most 2) threads alive at the end may
    # have run only one
    assert 20 <= len({id(t) for t in threads}) <= 21


def test_a_pool_cannot_be_pickled_and_says_its_state(pool):
    import pickle

    with pytest.raises(NotImplementedError):
        pickle.dumps(pool)
    assert "state=RUN pool_size=2" in repr(pool)
    pool.close()
    assert "state=CLOSE" in repr(pool)


def test_a_failing_callback_does_not_stop_the_pool(pool):
    def bad_callback(value):
        raise ValueError("callback")

    unraisable = []
    old = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        result = pool.apply_async(reference.fib, (10,), callback=bad_callback)
        result.wait(T)
        assert result.get(T) == 55
        assert pool.map(reference.fib, range(20)) == expected(range(20))
    finally:
        sys.unraisablehook = old
    assert any(isinstance(u.exc_value, ValueError) for u in unraisable)


# ---- the executor's native futures -----------------------------------------------------------


def test_executor_completes_kernel_futures_from_c():
    ns = [n % 300 for n in range(3000)] + [10**5]
    with parpy.ThreadPoolExecutor(2) as executor:
        futures = [executor.submit(parpy.fib, n) for n in ns]
        done, not_done = cf.wait(futures, timeout=T)
        assert not not_done
        assert [f.result() for f in futures] == expected(ns)
        assert all(isinstance(f, cf.Future) for f in futures)
        bad = [executor.submit(parpy.fib, x) for x in (-1, "x", 2**64, 1.5)]
        kinds = [type(f.exception(T)) for f in bad]
        assert kinds == [ValueError, TypeError, OverflowError, TypeError]


def test_executor_large_results_are_reserved_when_computed_not_when_submitted():
    # 100 pending fib(10**7) would hold about 87 MB of results if reserved at
    # submit; they hold none until a worker takes them.
    executor = parpy.ThreadPoolExecutor(1)
    gate = threading.Event()
    tracemalloc.start()  # results are Python ints: their memory is traced
    try:
        executor.submit(gate.wait, T)
        before = tracemalloc.get_traced_memory()[0]
        futures = [executor.submit(parpy.fib, 10**7 + i) for i in range(100)]
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        for future in futures[1:]:
            future.cancel()
        gate.set()
        assert futures[0].result(T) == reference.fib(10**7)
        assert all(f.cancelled() for f in futures[1:])
    finally:
        tracemalloc.stop()
        gate.set()
        executor.shutdown(wait=True)
    assert grown < 8 * 2**20, f"{grown / 2**20:.0f} MiB allocated at submit"
    # and the path that reserves late gives exact results, and MemoryError
    with parpy.ThreadPoolExecutor(2) as executor:
        ns = [10**6, 2 * 10**6, 93, 94, 10**6 + 1]
        assert [f.result(T) for f in [executor.submit(parpy.fib, n) for n in ns]] == expected(ns)


def test_executor_submits_from_many_threads():
    with parpy.ThreadPoolExecutor(4) as executor:

        def submit_range(k):
            futures = [executor.submit(parpy.fib_mod, n, 1000 + k) for n in range(500)]
            return [f.result(T) for f in futures]

        with cf.ThreadPoolExecutor(4) as outer:
            results = list(outer.map(submit_range, range(8), timeout=T))
    for k, got in enumerate(results):
        assert got == [reference.fib_mod(n, 1000 + k) for n in range(500)]


def test_executor_shutdown_cancels_pending_kernel_futures():
    executor = parpy.ThreadPoolExecutor(1)
    gate = threading.Event()
    blocker = executor.submit(gate.wait, T)
    futures = [executor.submit(parpy.fib, n) for n in range(200)]
    executor.shutdown(wait=False, cancel_futures=True)
    gate.set()
    assert blocker.result(T) is True
    assert all(f.cancelled() for f in futures)
    executor.shutdown(wait=True)


@pytest.mark.parametrize("chunksize", [1, 16])
@pytest.mark.parametrize("func", [parpy.fib, reference.fib], ids=["kernel", "python"])
def test_executor_map_buffersize_reads_lazily(func, chunksize):
    pulled = [0]

    def endless():
        for n in itertools.count():
            pulled[0] += 1
            yield n % 90

    with parpy.ThreadPoolExecutor(2) as executor:
        results = executor.map(func, endless(), buffersize=8, chunksize=chunksize)
        got = list(itertools.islice(results, 1000))
        assert got == expected(n % 90 for n in range(1000))
        assert pulled[0] <= 1000 + 9 * chunksize
        results.close()


@pytest.mark.parametrize("bad", [0, -1])
def test_executor_map_rejects_bad_chunk_and_buffer_sizes(bad):
    with parpy.ThreadPoolExecutor(1) as executor:
        with pytest.raises(ValueError):
            executor.map(parpy.fib, range(3), chunksize=bad)
        with pytest.raises(ValueError):
            executor.map(parpy.fib, range(3), buffersize=bad)
        with pytest.raises(TypeError):
            executor.map(parpy.fib, range(3), buffersize=1.5)


# ---- progress bars -------------------------------------------------------------------------


def test_control_counts_items_finished_by_native_workers():
    control = _core.Control()
    result = {}
    thread = threading.Thread(
        target=lambda: result.setdefault(
            "v", _core.Batch(parpy.fib_recursive, [27] * 400, workers=2, control=control).run()
        ),
        daemon=True,
    )
    thread.start()
    seen = set()
    while thread.is_alive():
        seen.add(control.done)
        time.sleep(0.005)
    thread.join(T)
    assert result["v"] == [fib_exact(27)] * 400
    assert control.done == 400
    assert len(seen) > 2  # it moved while the batch ran


def _bar_lines(stderr: str) -> list[str]:
    return [line for line in stderr.replace("\r", "\n").splitlines() if "item" in line]


@pytest.mark.parametrize(
    "call",
    [
        "pool.map(parpy.fib, ns, progress=True)",
        "pool.map(parpy.reference.fib, ns, progress=True)",
        "pool.map_async(parpy.fib, ns, progress=True).get(60)",
        "pool.starmap(parpy.reference.fib, [(n,) for n in ns], progress=True)",
        "list(pool.imap(parpy.fib, ns, progress=True))",
        "list(pool.imap_unordered(parpy.reference.fib, ns, progress=True))",
        "list(ex.map(parpy.fib, ns, progress=True))",
        "list(ex.map(parpy.fib, ns, chunksize=50, progress=True))",
    ],
)
def test_progress_bar_counts_every_item(call):
    proc = run_python(
        f"""
        import parpy, parpy.reference
        ns = [n % 400 for n in range(3000)]
        with parpy.Pool(2) as pool, parpy.ThreadPoolExecutor(2) as ex:
            got = {call}
        print(sorted(got) == sorted(parpy.reference.fib(n) for n in ns))
        """,
        timeout=T,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True"]
    lines = _bar_lines(proc.stderr)
    assert lines and "3000/3000" in lines[-1], proc.stderr[-500:]


def test_progress_without_tqdm_raises_importerror_before_any_work(monkeypatch, pool):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    calls = []
    with pytest.raises(ImportError, match="tqdm"):
        pool.map(calls.append, range(10), progress=True)
    with pytest.raises(ImportError, match="tqdm"):
        pool.imap(calls.append, range(10), progress=True)
    with parpy.ThreadPoolExecutor(1) as executor:
        with pytest.raises(ImportError, match="tqdm"):
            executor.map(calls.append, range(10), progress=True)
    assert calls == []
    with pytest.raises(TypeError):
        pool.map(parpy.fib, range(3), progress="yes")


# ---- garbage collection, interpreter exit, Ctrl-C ---------------------------------------------


def test_a_collected_running_pool_warns_and_its_threads_leave():
    pool = parpy.Pool(3)
    assert pool.map(parpy.fib, range(10)) == expected(range(10))
    threads = list(pool._threads)
    assert len(threads) == 3 and all(t.is_alive() for t in threads)
    with pytest.warns(ResourceWarning, match="unclosed running parpy.Pool"):
        del pool
        gc.collect()
    for thread in threads:
        thread.join(T)
        assert not thread.is_alive()


def test_a_closed_pool_does_not_warn():
    pool = parpy.Pool(2)
    pool.close()
    pool.join()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        del pool
        gc.collect()


EXIT_CASES = {
    "pool-native-batch-running": """
        pool = parpy.Pool(2)
        pool.map_async(parpy.fib_recursive, [60] * 4)
        """,
    "pool-python-tasks-pending": """
        import time
        pool = parpy.Pool(2)
        for _ in range(1000):
            pool.apply_async(time.sleep, (0.01,))
        """,
    "pool-endless-imap": """
        import itertools
        pool = parpy.Pool(2)
        it = pool.imap(parpy.fib, itertools.count())
        next(it)
        """,
    "executor-kernel-futures": """
        ex = parpy.ThreadPoolExecutor(2)
        fs = [ex.submit(parpy.fib, 10**5 + n) for n in range(200)]
        """,
    "executor-python-futures": """
        ex = parpy.ThreadPoolExecutor(2)
        fs = [ex.submit(pow, 3, n) for n in range(2000)]
        """,
}


@pytest.mark.parametrize("case", list(EXIT_CASES))
def test_interpreter_exit_with_an_open_pool_or_executor(case):
    body = "import parpy\n" + textwrap.dedent(EXIT_CASES[case]) + "print('END')\n"
    proc = run_python(body, timeout=T)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["END"]
    assert "Traceback" not in proc.stderr, proc.stderr


CTRL_C_CHILD = """
import sys, time, parpy, parpy.reference

def slow(n):
    time.sleep(0.05)
    return n

pool = parpy.Pool(2)
ex = parpy.ThreadPoolExecutor(2)
calls = {
    "map-kernel": lambda: pool.map(parpy.fib_recursive, [60] * 4),
    "map-python": lambda: pool.map(slow, range(10**5)),
    "get": lambda: pool.map_async(parpy.fib_recursive, [60] * 4).get(),
    "imap": lambda: list(pool.imap(parpy.fib_recursive, [1, 60, 1])),
    "result": lambda: ex.submit(parpy.fib_recursive, 60).result(),
    "executor-map": lambda: list(ex.map(slow, range(10**5))),
}
print("READY", flush=True)
try:
    calls[sys.argv[1]]()
except KeyboardInterrupt:
    print("INTERRUPTED", flush=True)
pool.terminate()
ns = range(50)
with parpy.Pool(2) as again:
    print("NEXT", again.map(parpy.fib, ns) == [parpy.reference.fib(n) for n in ns], flush=True)
"""


@pytest.mark.parametrize(
    "call", ["map-kernel", "map-python", "get", "imap", "result", "executor-map"]
)
def test_ctrl_c_returns_promptly(call):
    with interactive(CTRL_C_CHILD, call) as (proc, out):
        out.expect("READY", timeout=T)
        time.sleep(0.3)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out.expect("INTERRUPTED", timeout=T)
        assert time.monotonic() - sent < 5
        assert out.expect("NEXT", timeout=T).split() == ["NEXT", "True"]
        if call == "result":
            # fib_recursive(60) still runs on the executor, which waits for
            # its work at exit (as the stdlib's does): a second Ctrl-C there
            # cancels it.
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
        returncode, _, stderr = finish(proc, timeout=T)
        assert returncode == 0, stderr
        assert "Fatal" not in stderr and "Segmentation" not in stderr, stderr
