"""A child forked while parpy's workers are busy: it never hangs.

The child of a fork has one thread, the one that forked: every worker of the
parent's executors, pools, pipelines and progress bars is gone, and a lock one
of them held stays held. Each scenario runs in a fresh Python that keeps an
executor, a pool, a pipeline or an imap busy and forks repeatedly, at moments
that fall anywhere in the work. Every child uses a new object of the same kind
(results checked), finds the inherited one refusing work with an exception
(never a hang), and exits through the interpreter's normal exit, which runs
the exit handlers that would otherwise wait for the parent's workers. Every
other child is a multiprocessing Process of the "fork" start method (which
runs threading's exit hooks before it ends), the others come from os.fork.
The parent reaps every child with a deadline: a child that hangs fails the
test.

Under ThreadSanitizer (the TSan job) the children check what they inherited
and exit, but start no thread: GCC's TSan cannot start threads in a child
forked from a multithreaded parent (see UNSAFE_FORK_UNDER_TSAN in
test_threads.py). Everything else runs there as here. The ASan job leaves
these tests out: GCC's ASan allocator is not fork-safe.
"""

from __future__ import annotations

import pytest
from _util import run_python

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.unsafe_under(
        "address",
        reason="GCC's ASan allocator takes no lock around fork(): a child forked while a parent "
        "thread holds it blocks in malloc (see test_threads.py)",
    ),
]

# The parent's side of every scenario: forks while ``once(obj)`` runs again
# and again on another thread, and reaps each child with a deadline. A
# scenario defines once(obj) (a round of work), inherited(obj) (the child's
# checks of what it inherited) and fresh(obj) (the child's checks of new
# objects, which start threads), makes obj and calls fork_while(obj). The first round runs
# before any fork, so that every module it imports is imported: a module
# being imported by another thread at a fork stays locked in the child
# (CPython's per-module import locks), whatever the library.
FORKER = """
import multiprocessing, os, random, sys, threading, time
import parpy

FORKS = 12
DEADLINE = 20.0  # seconds for one child to exit
THREADS_IN_CHILD = os.environ.get("PARPY_SANITIZER") != "thread"

def reap(pid):
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung"

def checks(obj):
    inherited(obj)
    if THREADS_IN_CHILD:
        fresh(obj)

def fork_process(obj):  # a child by multiprocessing's "fork" start method: its exit code
    process = multiprocessing.get_context("fork").Process(target=checks, args=(obj,))
    process.start()
    process.join(DEADLINE)
    if process.exitcode is None:
        process.kill()
        process.join()
        return "hung"
    return process.exitcode

def busy(obj, stop, errors):
    try:
        while not stop.is_set():
            once(obj)
    except BaseException as exc:  # the parent's work must not suffer from the forks
        errors.append(repr(exc))

def fork_while(obj):
    once(obj)
    stop = threading.Event()
    errors = []
    worker = threading.Thread(target=busy, args=(obj, stop, errors))
    worker.start()
    codes = []
    try:
        for k in range(FORKS):
            time.sleep(random.uniform(0.0, 0.03))
            if k % 2:
                codes.append(fork_process(obj))
                continue
            pid = os.fork()
            if pid == 0:
                try:
                    checks(obj)
                except BaseException:
                    import traceback
                    traceback.print_exc()
                    sys.stdout.flush()
                    os._exit(3)
                sys.exit(0)  # the normal exit: atexit and threading's exit hooks run
            codes.append(reap(pid))
    finally:
        stop.set()
        worker.join(60)
    assert not worker.is_alive() and not errors, errors
    print("CODES", codes, flush=True)
"""


def run_scenario(body: str) -> None:
    proc = run_python(FORKER + body, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("CODES")]
    assert lines, proc.stdout + proc.stderr[-3000:]
    codes = eval(lines[-1][len("CODES ") :])
    assert codes == [0] * len(codes) and codes, (codes, proc.stderr[-3000:])


def test_cpython_hang_global_shutdown_lock():
    """CPython's test_hang_global_shutdown_lock (bpo-45021) on parpy's executor:
    fork-started worker processes made while a worker thread submits."""
    proc = run_python(
        """
        import concurrent.futures as cf, multiprocessing as mp, parpy
        def submit(pool):
            try:
                pool.submit(submit, pool)
            except RuntimeError:
                pass
        with parpy.ThreadPoolExecutor(1) as pool:
            pool.submit(submit, pool)
            for _ in range(50):
                with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("fork")) as w:
                    w.submit(tuple)
        print("DONE")
        """,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "DONE", proc.stderr[-3000:]


def test_executor_busy_with_python_calls_and_kernels():
    run_scenario(
        """
def once(pool):
    futures = [pool.submit(time.sleep, 0.001) for _ in range(4)]
    futures += [pool.submit(parpy.fib, 20000 + k) for k in range(8)]
    list(pool.map(parpy.fib_iterative, range(500, 600), chunksize=10))
    for f in futures:
        f.result(30)

def inherited(pool):
    try:
        pool.submit(abs, -1)
    except RuntimeError as exc:  # BrokenThreadPool
        assert "forked" in str(exc), exc
    else:
        raise AssertionError("the inherited executor took work")

def fresh(_):
    with parpy.ThreadPoolExecutor(2) as pool:
        assert pool.submit(parpy.fib, 90).result(10) == parpy.reference.fib(90)
        assert list(pool.map(abs, [-1, -2], timeout=10)) == [1, 2]

with parpy.ThreadPoolExecutor(2) as pool:
    fork_while(pool)
"""
    )


def test_pool_busy_with_map_apply_and_imap():
    run_scenario(
        """
def once(pool):
    async_results = [pool.apply_async(time.sleep, (0.001,)) for _ in range(4)]
    pool.map(parpy.fib, range(10000, 10100))
    assert list(pool.imap(abs, range(-50, 0))) == list(range(50, 0, -1))
    for r in async_results:
        r.get(30)

def inherited(pool):
    try:
        pool.map(abs, [-1])
    except RuntimeError as exc:
        assert "forked" in str(exc), exc
    else:
        raise AssertionError("the inherited pool took work")

def fresh(_):
    with parpy.Pool(2) as pool:
        assert pool.map(parpy.fib, range(50)) == [parpy.reference.fib(n) for n in range(50)]
        assert list(pool.imap(abs, [-1, -2])) == [1, 2]

pool = parpy.Pool(2)
try:
    fork_while(pool)
finally:
    pool.terminate()
    pool.join()
"""
    )


def test_a_running_imap_in_the_child():
    """Forked between two next() of an imap: in the child that iterator ends
    with an exception, and a new pool's imap works."""
    run_scenario(
        """
def once(pool):
    time.sleep(0.01)

def inherited(obj):
    pool, results = obj
    try:
        for _ in range(10**6):
            next(results)
    except RuntimeError as exc:
        assert "forked" in str(exc), exc
    else:
        raise AssertionError("the inherited imap went on")

def fresh(_):
    with parpy.Pool(2) as pool:
        assert list(pool.imap(parpy.fib, range(30), chunksize=4)) == [
            parpy.reference.fib(n) for n in range(30)
        ]

pool = parpy.Pool(2)
results = pool.imap(parpy.fib_iterative, range(10**6, 10**6 + 10**5), chunksize=1)
next(results)
fork_while((pool, results))
pool.terminate()
pool.join()
"""
    )


@pytest.mark.parametrize("backend", ["native", "threading", "multiprocessing"])
def test_a_busy_pipeline(backend):
    run_scenario(
        f"""
BACKEND = {backend!r}

def once(pipe):
    ns = range(1000, 1400)
    assert pipe.map(ns) == [len(str(parpy.reference.fib(n))) for n in ns]

def inherited(pipe):
    assert "running" not in repr(pipe), pipe  # the parent's run is not the child's

def fresh(inherited):
    stages = [parpy.Stage(parpy.fib, 2), parpy.Stage(str), parpy.Stage(len)]
    with parpy.Pipeline(stages, backend=BACKEND) as pipe:
        ns = range(100, 140)
        assert pipe.map(ns) == [len(str(parpy.reference.fib(n))) for n in ns]
    # the inherited pipeline runs again in the child, on workers of the child's own
    assert inherited.map(range(3)) == [1, 1, 1]

with parpy.Pipeline(
    [parpy.Stage(parpy.fib, 2), parpy.Stage(str), parpy.Stage(len)], backend=BACKEND
) as pipe:
    fork_while(pipe)
"""
    )


def test_a_running_pipeline_iterator_in_the_child():
    """Forked between two next() of a native pipeline's imap: in the child the
    iterator fails at once, and the pipeline's exit waits for nothing."""
    run_scenario(
        """
def once(obj):
    time.sleep(0.01)

def inherited(obj):
    pipe, results = obj
    try:
        next(results)
    except RuntimeError as exc:
        assert "forked" in str(exc), exc
    else:
        raise AssertionError("the inherited run went on")
    results.close()
    pipe.close()

def fresh(_):
    pass

pipe = parpy.Pipeline([parpy.Stage(parpy.fib, 2), parpy.Stage(abs)])
results = pipe.imap(range(10**6))
next(results)
fork_while((pipe, results))
results.close()
pipe.close()
"""
    )


def test_queues_made_before_the_fork():
    """parpy.Queue is shared by threads, not processes: in a forked child one
    made before the fork raises instead of waiting on the parent's threads."""
    run_scenario(
        """
import queue as stdlib_queue

def once(q):
    q.put(1)
    try:
        q.get(timeout=0.001)
    except stdlib_queue.Empty:
        pass

def inherited(q):
    for call in (lambda: q.put(1), lambda: q.get(timeout=1), q.join):
        try:
            call()
        except RuntimeError as exc:
            assert "forked" in str(exc), exc
        else:
            raise AssertionError("the inherited queue was used")

def fresh(_):
    q = parpy.Queue()
    q.put(2)
    assert q.get(timeout=1) == 2

q = parpy.Queue()
fork_while(q)
"""
    )


def test_progress_bar_and_fib_batch_in_the_child():
    """A progress bar following a batch at the fork: the child's exit does not
    wait for its thread, and the child's own batches run (on fresh threads)."""
    run_scenario(
        """
def once(pool):
    pool.map(parpy.fib_iterative, range(2000, 2200), progress=True)

def inherited(pool):
    pool.close()  # the parent's bar and workers: nothing to wait for

def fresh(_):
    assert parpy.fib_batch(range(200), workers=2) == [parpy.reference.fib(n) for n in range(200)]
    assert parpy.map(parpy.fib, range(100, 120), workers=2, progress=True) == [
        parpy.reference.fib(n) for n in range(100, 120)
    ]

with parpy.Pool(2) as pool:
    fork_while(pool)
"""
    )
