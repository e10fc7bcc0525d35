"""parpy.Queue held to the standard library's queue.Queue, test for test.

Ported from CPython 3.13 ``Lib/test/test_queue.py``: the tests of
``BaseQueueTestMixin`` for ``Queue`` (basic put/get, the blocking tests in
which a put or get blocks until another thread acts, task_done and join,
negative timeouts, nowait, a shrinking maxsize, and every shutdown test).
Each test runs on ``queue.Queue`` ("stdlib") and on ``parpy.Queue``
("parpy") with the same assertions. ``queue.Queue`` has ``shutdown`` only
from Python 3.13, ``parpy.Queue`` on every version: the shutdown tests take
the ``ShutdownQueue`` fixture, which before 3.13 is parpy's alone.

Not ported: the ``LifoQueue`` and ``PriorityQueue`` runs (parpy has neither),
``FailingQueueTest`` (it overrides the ``_put``/``_get`` hooks of the
pure-Python ``queue.Queue``, which ``parpy.Queue``, a native queue, does not
call) and the ``SimpleQueue`` tests (not ``queue.Queue``'s API). The
``unfinished_tasks`` checks of two shutdown tests are gathered in
``test_unfinished_tasks``.

Added: the exact exception classes, messages and signatures; maxsize
assignment; subclassing; references (items are neither leaked nor kept,
cycles through a queue are collected); many producers and consumers; the GIL
released while a get waits; Ctrl-C and signal handlers in a child blocked on
its main thread; the material's producer/consumer Fibonacci program; and, on
parpy alone, the one deliberate difference from queue.Queue: assigning a
larger maxsize wakes the putters that wait for room.

Every wait takes a timeout: a call that should block runs through
``within`` or on a ``Runner`` thread, which fail the test if it does not
return in time.
"""

from __future__ import annotations

import gc
import inspect
import queue
import signal
import sys
import threading
import time
import weakref

import pytest
from _parity import SHORT, TIMEOUT, Token, within
from _util import fib_exact, finish, interactive, interrupt_rounds, run_python

import parpy

pytestmark = pytest.mark.timeout(120)

QUEUE_SIZE = 5
HAS_STDLIB_SHUTDOWN = sys.version_info >= (3, 13)


# ---- fixtures -----------------------------------------------------------------------


def _parpy_queue():
    return getattr(parpy, "Queue")  # noqa: B009 (parpy.Queue may not exist yet)


QUEUES = {
    "stdlib": lambda: queue.Queue,
    "parpy": _parpy_queue,
}


@pytest.fixture(params=list(QUEUES))
def Queue(request):
    """The queue class: queue.Queue, then parpy.Queue."""
    return QUEUES[request.param]()


@pytest.fixture(params=list(QUEUES) if HAS_STDLIB_SHUTDOWN else ["parpy"])
def ShutdownQueue(request):
    """A queue class with shutdown(): queue.Queue (3.13+ only), then parpy.Queue."""
    return QUEUES[request.param]()


@pytest.fixture
def ShutDown(ShutdownQueue):
    """The exception that ShutdownQueue raises once shut down."""
    if ShutdownQueue is queue.Queue:
        return queue.ShutDown
    return getattr(parpy, "ShutDown")  # noqa: B009


# ---- helpers ------------------------------------------------------------------------


def qfull(q):
    return q.maxsize > 0 and q.qsize() == q.maxsize


class Runner(threading.Thread):
    """A daemon thread running fn(*args); finish() joins it with a timeout and
    returns its result or re-raises its exception."""

    def __init__(self, fn, *args):
        super().__init__(daemon=True)
        self.fn, self.args = fn, args
        self.result = self.error = None

    def run(self):
        try:
            self.result = self.fn(*self.args)
        except BaseException as exc:  # re-raised by finish(), on the test's thread
            self.error = exc

    def finish(self, timeout=TIMEOUT):
        self.join(timeout)
        assert not self.is_alive(), f"{self.fn!r} still running after {timeout} s"
        if self.error is not None:
            raise self.error
        return self.result


def start(fn, *args):
    runner = Runner(fn, *args)
    runner.start()
    return runner


def finish_all(runners, timeout=TIMEOUT):
    """finish() for each runner, with one deadline for all of them."""
    deadline = time.monotonic() + timeout
    return [r.finish(max(0.0, deadline - time.monotonic())) for r in runners]


def assert_blocked(runner, wait=SHORT):
    """Gives runner ``wait`` seconds and asserts that it is still blocked."""
    runner.join(wait)
    assert runner.is_alive(), f"{runner.fn!r} returned instead of blocking"


def do_blocking_test(block_func, block_args, trigger_func, trigger_args):
    """Returns block_func(*block_args), which must block until
    trigger_func(*trigger_args) runs on another thread a moment later."""
    started = threading.Event()

    def trigger():
        # The sleep gives block_func the time to block before it is unclogged.
        time.sleep(SHORT)
        started.set()
        trigger_func(*trigger_args)

    thread = start(trigger)
    try:
        result = within(TIMEOUT, block_func, *block_args)
        # If block_func returned before the trigger ran, it did not block.
        assert started.is_set(), f"blocking function {block_func!r} appeared not to block"
        return result
    finally:
        thread.finish()


# ---- basic behaviour (BaseQueueTestMixin) -------------------------------------------


def basic_queue_test(q):
    assert not q.qsize(), "call this function with an empty queue"
    assert q.empty()
    assert not q.full()
    q.put(111)
    q.put(333)
    q.put(222)
    assert [q.get(), q.get(), q.get()] == [111, 333, 222], "not FIFO"
    for i in range(QUEUE_SIZE - 1):
        q.put(i)
        assert q.qsize(), "Queue should not be empty"
    assert not qfull(q), "Queue should not be full"
    last = 2 * QUEUE_SIZE
    full = 3 * 2 * QUEUE_SIZE
    q.put(last)
    assert qfull(q), "Queue should be full"
    assert not q.empty()
    assert q.full()
    with pytest.raises(queue.Full):
        q.put(full, block=0)
    with pytest.raises(queue.Full):
        q.put(full, timeout=0.01)
    # A blocking put.
    do_blocking_test(q.put, (full,), q.get, ())
    do_blocking_test(q.put, (full, True, 10), q.get, ())
    # Empty it.
    for _ in range(QUEUE_SIZE):
        q.get()
    assert not q.qsize(), "Queue should be empty"
    with pytest.raises(queue.Empty):
        q.get(block=0)
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)
    # A blocking get.
    assert do_blocking_test(q.get, (), q.put, ("empty",)) == "empty"
    assert do_blocking_test(q.get, (True, 10), q.put, ("empty",)) == "empty"


def test_basic(Queue):
    # Twice, to check that the same instance can be reused.
    q = Queue(QUEUE_SIZE)
    basic_queue_test(q)
    basic_queue_test(q)


class Summer:
    """The consumer of queue_join_test: adds up items until a negative one."""

    def __init__(self):
        self.cum = 0
        self.lock = threading.Lock()

    def worker(self, q):
        while True:
            x = q.get()
            if x < 0:
                q.task_done()
                return
            with self.lock:
                self.cum += x
            q.task_done()


def queue_join_test(q):
    summer = Summer()
    threads = [start(summer.worker, q) for _ in (0, 1)]
    for i in range(100):
        q.put(i)
    within(TIMEOUT, q.join)
    assert summer.cum == sum(range(100)), "q.join() did not block until all tasks were done"
    for _ in (0, 1):
        q.put(-1)  # tell the threads to end
    within(TIMEOUT, q.join)  # join twice
    finish_all(threads)


def test_queue_task_done(Queue):
    q = Queue()
    with pytest.raises(ValueError, match=r"^task_done\(\) called too many times$"):
        q.task_done()


def test_queue_join(Queue):
    # join()s successfully, and before anything else (twice, for insurance).
    q = Queue()
    queue_join_test(q)
    queue_join_test(q)
    with pytest.raises(ValueError, match=r"^task_done\(\) called too many times$"):
        q.task_done()


def test_negative_timeout_raises_exception(Queue):
    q = Queue(QUEUE_SIZE)
    message = r"^'timeout' must be a non-negative number$"
    with pytest.raises(ValueError, match=message):
        q.put(1, timeout=-1)
    with pytest.raises(ValueError, match=message):
        q.get(1, timeout=-1)
    # Checked before the queue's state: with room, and with an item.
    q.put(1)
    with pytest.raises(ValueError, match=message):
        q.put(2, True, -0.5)
    with pytest.raises(ValueError, match=message):
        q.get(timeout=-1)
    assert q.qsize() == 1
    # A non-blocking call ignores its timeout.
    q.put(2, block=False, timeout=-1)
    assert q.get(False, -1) == 1
    assert q.qsize() == 1


def test_zero_timeout(Queue):
    q = Queue(1)
    with pytest.raises(queue.Empty):
        q.get(timeout=0)
    q.put("a", timeout=0)
    with pytest.raises(queue.Full):
        q.put("b", timeout=0)
    assert q.get(timeout=0) == "a"


def test_nowait(Queue):
    q = Queue(QUEUE_SIZE)
    for _ in range(QUEUE_SIZE):
        q.put_nowait(1)
    with pytest.raises(queue.Full) as info:
        q.put_nowait(1)
    assert info.type is queue.Full  # the stdlib's class itself

    for _ in range(QUEUE_SIZE):
        q.get_nowait()
    with pytest.raises(queue.Empty) as info:
        q.get_nowait()
    assert info.type is queue.Empty


def test_shrinking_queue(Queue):
    # issue 10110
    q = Queue(3)
    q.put(1)
    q.put(2)
    q.put(3)
    with pytest.raises(queue.Full):
        q.put_nowait(4)
    assert q.qsize() == 3
    q.maxsize = 2  # shrink the queue
    with pytest.raises(queue.Full):
        q.put_nowait(4)
    assert q.get() == 1
    with pytest.raises(queue.Full):  # 2 items: still full
        q.put_nowait(4)
    assert q.get() == 2
    q.put_nowait(4)
    assert q.full()


# ---- the API's shape ------------------------------------------------------------------


def test_signatures(Queue):
    assert str(inspect.signature(Queue)) == "(maxsize=0)"
    q = Queue()
    expected = {
        "put": "(item, block=True, timeout=None)",
        "get": "(block=True, timeout=None)",
        "put_nowait": "(item)",
        "get_nowait": "()",
        "qsize": "()",
        "empty": "()",
        "full": "()",
        "task_done": "()",
        "join": "()",
    }
    assert {name: str(inspect.signature(getattr(q, name))) for name in expected} == expected


def test_keyword_arguments(Queue):
    q = Queue(maxsize=2)
    assert q.maxsize == 2
    q.put("a", block=True, timeout=TIMEOUT)
    q.put("b", timeout=TIMEOUT)
    with pytest.raises(queue.Full):
        q.put("c", block=False)
    assert q.get(block=True, timeout=TIMEOUT) == "a"
    assert q.get(timeout=TIMEOUT) == "b"
    with pytest.raises(queue.Empty):
        q.get(block=False)


def test_item_by_keyword(Queue):
    q = Queue()
    q.put(item="a")
    q.put(item="b", block=False)
    q.put_nowait(item="c")
    assert [q.get_nowait() for _ in range(3)] == ["a", "b", "c"]


def test_unfinished_tasks(Queue):
    q = Queue(2)
    assert q.unfinished_tasks == 0
    q.put("Y")
    q.put("D")
    assert q.unfinished_tasks == q.qsize() == 2
    q.get()
    assert q.unfinished_tasks == 2
    q.task_done()
    assert q.unfinished_tasks == 1


def test_any_item(Queue):
    q = Queue()
    items = [None, 0, "", (), [], {}, Token(), q, 2**100, float("nan"), Ellipsis]
    for item in items:
        q.put(item)
    got = [q.get_nowait() for _ in items]
    assert all(g is i for g, i in zip(got, items, strict=True))


# ---- maxsize ------------------------------------------------------------------------


@pytest.mark.parametrize("maxsize", [0, -1, -100])
def test_unbounded(Queue, maxsize):
    q = Queue(maxsize)
    assert q.maxsize == maxsize
    for i in range(10_000):
        q.put_nowait(i)
    assert not q.full()
    assert q.qsize() == 10_000
    assert [q.get_nowait() for _ in range(10_000)] == list(range(10_000))


def test_default_maxsize(Queue):
    assert Queue().maxsize == 0
    assert Queue(7).maxsize == 7


def test_growing_maxsize(Queue):
    q = Queue(2)
    q.put(1)
    q.put(2)
    assert q.full()
    q.maxsize = 3
    assert q.maxsize == 3
    assert not q.full()
    q.put_nowait(3)
    assert q.full()
    with pytest.raises(queue.Full):
        q.put_nowait(4)
    q.maxsize = 0  # unbounded
    for i in range(4, 100):
        q.put_nowait(i)
    assert not q.full()
    assert [q.get_nowait() for _ in range(99)] == list(range(1, 100))


@pytest.mark.parametrize("new_maxsize", [2, 3, 0])
@pytest.mark.parametrize("timeout", [None, 60])
def test_maxsize_assignment_wakes_blocked_putters(new_maxsize, timeout):
    """parpy alone: queue.Queue's putters notice a new maxsize only once an item is got."""
    q = _parpy_queue()(1)
    q.put("first")
    putters = [start(q.put, f"p{i}", True, timeout) for i in range(2)]
    for putter in putters:
        assert_blocked(putter)
    q.maxsize = new_maxsize
    assert q.maxsize == new_maxsize
    if new_maxsize == 2:  # room for one of them; the other still waits
        deadline = time.monotonic() + TIMEOUT
        while all(p.is_alive() for p in putters) and time.monotonic() < deadline:
            time.sleep(0.01)
        waiting = [p for p in putters if p.is_alive()]
        assert len(waiting) == 1, "no putter woke up"
        assert_blocked(waiting[0])
        assert q.qsize() == 2
        assert q.get(timeout=TIMEOUT) == "first"
    finish_all(putters)
    got = [q.get(timeout=TIMEOUT) for _ in range(q.qsize())]
    assert sorted(got) == (["p0", "p1"] if new_maxsize == 2 else ["first", "p0", "p1"])


def test_shrinking_maxsize_blocks_putters_parpy():
    """parpy alone: a putter blocked after a shrink waits until the queue is below it."""
    q = _parpy_queue()(3)
    for i in range(3):
        q.put(i)
    q.maxsize = 1
    putter = start(q.put, "late")
    assert_blocked(putter)
    assert q.get() == 0
    assert_blocked(putter)  # 2 items, maxsize 1
    assert q.get() == 1
    assert_blocked(putter)  # 1 item, maxsize 1
    assert q.get() == 2
    putter.finish()
    assert q.get_nowait() == "late"


# ---- subclassing ----------------------------------------------------------------------


def test_subclass(Queue):
    class Named(Queue):
        def __init__(self, name, maxsize=0):
            super().__init__(maxsize)
            self.name = name
            self.puts = 0

        def put(self, item, block=True, timeout=None):
            self.puts += 1
            super().put(item, block, timeout)

    q = Named("jobs", 2)
    assert isinstance(q, Queue)
    assert q.name == "jobs" and q.maxsize == 2
    q.put(1)
    q.put(2)
    assert q.puts == 2
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.01)
    assert q.puts == 3
    assert q.get() == 1
    assert q.get() == 2
    assert do_blocking_test(q.get, (), q.put, ("x",)) == "x"
    assert q.puts == 4
    # A cycle through the instance's __dict__ and through its items is collected.
    token = Token()
    ref = weakref.ref(token)
    q.put(token)
    q.me = q
    q.put(q)
    del q, token
    gc.collect()
    assert ref() is None


# ---- references -----------------------------------------------------------------------


def test_refcounts(Queue):
    q = Queue(3)
    item = Token()
    before = sys.getrefcount(item)
    for _ in range(3):
        q.put(item)
    assert sys.getrefcount(item) == before + 3
    with pytest.raises(queue.Full):
        q.put_nowait(item)
    with pytest.raises(queue.Full):
        q.put(item, timeout=0.01)
    assert sys.getrefcount(item) == before + 3
    assert q.get() is item
    assert q.get_nowait() is item
    assert q.get(timeout=TIMEOUT) is item
    assert sys.getrefcount(item) == before
    with pytest.raises(queue.Empty):
        q.get_nowait()
    assert sys.getrefcount(item) == before
    # Many rounds: a leak of one reference per call would show.
    for _ in range(1000):
        q.put(item)
        q.get()
    assert sys.getrefcount(item) == before


def test_items_are_released_when_got(Queue):
    # As CPython's SimpleQueue test_references: the queue keeps no reference.
    q = Queue()
    for _ in range(20):
        q.put(Token())
    for _ in range(20):
        ref = weakref.ref(q.get())
        gc.collect()
        assert ref() is None


def test_dropped_queue_releases_its_items(Queue):
    q = Queue()
    tokens = [Token() for _ in range(100)]
    refs = [weakref.ref(t) for t in tokens]
    for token in tokens:
        q.put(token)
    del tokens, token
    assert all(r() is not None for r in refs)
    del q
    gc.collect()
    assert all(r() is None for r in refs)


def test_cycle_through_queue_is_collected(Queue):
    q = Queue()
    token = Token()
    ref = weakref.ref(token)
    q.put(q)  # the queue holds itself
    q.put(token)
    del q, token
    gc.collect()
    assert ref() is None


# ---- many threads -------------------------------------------------------------------


@pytest.mark.parametrize("maxsize", [64, 0])
def test_many_producers_and_consumers(Queue, maxsize):
    """4 producers, 4 consumers, 20,000 items: each received exactly once."""
    producers, consumers, per_producer = 4, 4, 5000
    q = Queue(maxsize)
    stop = object()

    def produce(base):
        for i in range(base, base + per_producer):
            q.put(i)

    def consume(mode):
        got = []
        while True:
            if mode == "block":
                item = q.get()
            elif mode == "timeout":
                item = q.get(timeout=TIMEOUT)
            else:  # poll
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    time.sleep(0)
                    continue
            q.task_done()
            if item is stop:
                return got
            got.append(item)

    modes = ["block", "timeout", "poll", "block"]
    getters = [start(consume, modes[i]) for i in range(consumers)]
    putters = [start(produce, i * per_producer) for i in range(producers)]
    finish_all(putters, timeout=60)
    for _ in range(consumers):
        q.put(stop)
    results = finish_all(getters, timeout=60)
    within(TIMEOUT, q.join)
    received = [item for got in results for item in got]
    assert len(received) == producers * per_producer
    assert sorted(received) == list(range(producers * per_producer))
    # Each producer's items arrive in its order at each consumer.
    for got in results:
        for p in range(producers):
            mine = [x for x in got if x // per_producer == p]
            assert mine == sorted(mine)
    assert q.empty() and q.qsize() == 0


def test_gil_released_while_blocked(Queue):
    """Another Python thread runs while this one waits in get()."""
    q = Queue(1)
    counter = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            counter[0] += 1

    spinner = start(spin)
    try:
        time.sleep(0.01)
        before = counter[0]
        with pytest.raises(queue.Empty):
            q.get(timeout=0.3)
        assert counter[0] - before > 1000
    finally:
        stop.set()
        spinner.finish()

    # A thread that does Python work, then puts its result, while get() waits.
    def compute():
        total = 0
        for i in range(200_000):
            total += i
        q.put(total)

    worker = start(compute)
    assert q.get(timeout=TIMEOUT) == sum(range(200_000))
    worker.finish()
    # And a put that waits for room.
    q.put("full")

    def get_later():
        time.sleep(SHORT)
        return q.get()

    worker = start(get_later)
    q.put("next", timeout=TIMEOUT)
    assert worker.finish() == "full"
    assert q.get_nowait() == "next"


# ---- Ctrl-C and signal handlers -------------------------------------------------------

SIGNAL_CHILD = """
import queue, signal, sys, threading, time
import parpy

Queue = queue.Queue if sys.argv[1] == "stdlib" else parpy.Queue
op = sys.argv[2]
q = Queue(1)

if op == "handler":
    def handler(signum, frame):
        print("HANDLED", flush=True)
        threading.Timer(0.2, q.put, ("late",)).start()
    signal.signal(signal.SIGUSR1, handler)
    print("READY 0", flush=True)
    print("GOT", q.get(timeout=60), flush=True)
    sys.exit(0)

for round in range(2):
    if op == "put":
        q.put("full")
    elif op == "join":
        q.put("task")
        q.get()
    print("READY", round, flush=True)
    try:
        if op == "get":
            q.get()
        elif op == "get-timeout":
            q.get(timeout=60)
        elif op == "put":
            q.put("more")
        elif op == "join":
            q.join()
    except KeyboardInterrupt:
        print("INTERRUPTED", round, flush=True)
    else:
        print("COMPLETED", round, flush=True)
    # The queue is as it was before the interrupted call, and usable.
    if op == "put":
        assert q.qsize() == 1 and q.get_nowait() == "full"
    elif op == "join":
        q.task_done()
        q.join()
    q.put(round)
    assert q.get(timeout=1) == round, "an interrupted getter took the item"
    q.task_done()
    assert q.empty()
print("NEXT ok", flush=True)
"""

CTRL_C_LATENCY_BOUND_S = 1.0


@pytest.mark.parametrize("impl", list(QUEUES))
@pytest.mark.parametrize("op", ["get", "get-timeout", "put", "join"])
def test_ctrl_c_interrupts_a_blocked_call(impl, op):
    with interactive(SIGNAL_CHILD, impl, op) as (proc, out):
        # twice: the queue is usable after an interruption
        latencies = interrupt_rounds(proc, out, pause=0.3)
        assert max(latencies) < CTRL_C_LATENCY_BOUND_S, latencies
        out.expect("NEXT ok", timeout=60)
        returncode, _, stderr = finish(proc, timeout=60)
        assert returncode == 0, stderr


@pytest.mark.parametrize("impl", list(QUEUES))
def test_signal_handler_runs_while_blocked(impl):
    """A handler that returns runs at once, and the wait goes on (no spurious Empty)."""
    with interactive(SIGNAL_CHILD, impl, "handler") as (proc, out):
        out.expect("READY 0", timeout=60)
        time.sleep(0.3)
        sent = time.monotonic()
        proc.send_signal(signal.SIGUSR1)
        out.expect("HANDLED", timeout=60)
        assert time.monotonic() - sent < CTRL_C_LATENCY_BOUND_S
        assert out.expect("GOT", timeout=60) == "GOT late"
        returncode, _, stderr = finish(proc, timeout=60)
        assert returncode == 0, stderr


# ---- the material's producer/consumer program ---------------------------------------

# Worker threads wait on a Condition until the producer has filled the shared
# queue, then each takes an item and computes its Fibonacci number by the
# loop. The parpy run changes only the import of the queue class.
FIBONACCI_PROGRAM = """
import logging
import threading
from queue import Queue

logger = logging.getLogger()
fibo_dict = {}
shared_queue = Queue()
input_list = INPUT_LIST
queue_condition = threading.Condition()


def fibonacci_task(condition):
    with condition:
        while shared_queue.empty():
            logger.info("[%s] - waiting for elements in queue..", threading.current_thread().name)
            condition.wait()
        else:
            value = shared_queue.get()
            a, b = 0, 1
            for item in range(value):
                a, b = b, a + b
            fibo_dict[value] = a
        shared_queue.task_done()


def queue_task(condition):
    with condition:
        for item in input_list:
            shared_queue.put(item)
        condition.notify_all()


threads = [
    threading.Thread(daemon=True, target=fibonacci_task, args=(queue_condition,))
    for i in range(len(input_list))
]
[thread.start() for thread in threads]
prod = threading.Thread(name="queue_task_thread", daemon=True, target=queue_task,
                        args=(queue_condition,))
prod.start()
[thread.join() for thread in threads]
shared_queue.join()
print(sorted(fibo_dict.items()))
"""
FIBONACCI_INPUTS = [3, 10, 5, 7, 0, 1, 90, 200, 33, 64, 2, 150]


@pytest.mark.parametrize(
    "import_line", ["from queue import Queue", "from parpy import Queue"], ids=list(QUEUES)
)
def test_fibonacci_producer_consumer(import_line):
    program = FIBONACCI_PROGRAM.replace("from queue import Queue", import_line)
    program = program.replace("INPUT_LIST", repr(FIBONACCI_INPUTS))
    done = run_python(program, timeout=60)
    assert done.returncode == 0, done.stderr
    expected = sorted((n, fib_exact(n)) for n in FIBONACCI_INPUTS)
    assert done.stdout.strip() == repr(expected)


# ---- shutdown -----------------------------------------------------------------------


def test_shutdown_exception():
    if HAS_STDLIB_SHUTDOWN:
        assert parpy.ShutDown is queue.ShutDown
    else:
        assert issubclass(parpy.ShutDown, Exception)
        assert not issubclass(parpy.ShutDown, (queue.Empty, queue.Full))
    assert parpy.ShutDown.__name__ == "ShutDown"


def test_shutdown_signature(ShutdownQueue):
    q = ShutdownQueue()
    assert str(inspect.signature(q.shutdown)) == "(immediate=False)"


def test_shutdown_empty(ShutdownQueue, ShutDown):
    q = ShutdownQueue()
    q.shutdown()
    with pytest.raises(ShutDown):
        q.put("data")
    with pytest.raises(ShutDown):
        q.get()


def test_shutdown_nonempty(ShutdownQueue, ShutDown):
    q = ShutdownQueue()
    q.put("data")
    q.shutdown()
    q.get()
    with pytest.raises(ShutDown):
        q.get()


def test_shutdown_immediate(ShutdownQueue, ShutDown):
    q = ShutdownQueue()
    q.put("data")
    q.shutdown(immediate=True)
    with pytest.raises(ShutDown):
        q.get()


def test_shutdown_allowed_transitions(ShutdownQueue):
    # From alive via shutdown to immediate.
    q = ShutdownQueue()
    assert not q.is_shutdown

    q.shutdown()
    assert q.is_shutdown

    q.shutdown(immediate=True)
    assert q.is_shutdown

    q.shutdown(immediate=False)
    assert q.is_shutdown


@pytest.mark.parametrize("immediate", [False, True])
def test_shutdown_all_methods_in_one_thread(ShutdownQueue, ShutDown, immediate):
    q = ShutdownQueue(2)
    q.put("L")
    q.put_nowait("O")
    q.shutdown(immediate)

    with pytest.raises(ShutDown):
        q.put("E")
    with pytest.raises(ShutDown):
        q.put_nowait("W")
    if immediate:
        with pytest.raises(ShutDown):
            q.get()
        with pytest.raises(ShutDown):
            q.get_nowait()
        with pytest.raises(ValueError):
            q.task_done()
        within(TIMEOUT, q.join)
    else:
        assert q.get() in "LO"
        q.task_done()
        assert q.get() in "LO"
        q.task_done()
        within(TIMEOUT, q.join)
        # Shut down (not immediately) and empty: get raises ShutDown.
        with pytest.raises(ShutDown):
            q.get()  # q.get(True)
        with pytest.raises(ShutDown):
            q.get_nowait()  # q.get(False)
        with pytest.raises(ShutDown):
            q.get(True, 1.0)


def _write_msg_thread(q, ShutDown, n, results, i_when_exec_shutdown, event_shutdown, barrier):
    # Every writer puts several items into the queue,
    for i in range(0, i_when_exec_shutdown // 2):
        q.put((i, "LOYD"))
    # waits for the barrier,
    barrier.wait()

    for i in range(i_when_exec_shutdown // 2, n):
        try:
            q.put((i, "YDLO"))
        except ShutDown:
            results.append(False)
            break

        # and triggers the shutdown (one writer only).
        if i == i_when_exec_shutdown:
            if not event_shutdown.is_set():
                event_shutdown.set()
                results.append(True)


def _read_msg_thread(q, ShutDown, results, barrier):
    # Get at least one item,
    q.get(True)
    q.task_done()
    # wait for the barrier,
    barrier.wait()
    while True:
        try:
            q.get(False)
            q.task_done()
        except ShutDown:
            results.append(True)
            break
        except queue.Empty:
            pass


def _shutdown_thread(q, results, event_end, immediate):
    assert event_end.wait(TIMEOUT)
    q.shutdown(immediate)
    results.append(q.qsize() == 0)


def _join_thread(q, barrier):
    barrier.wait()
    q.join()


@pytest.mark.parametrize("immediate", [False, True])
def test_shutdown_all_methods_in_many_threads(ShutdownQueue, ShutDown, immediate):
    # A multi-producer multi-consumer use, with many items in the queue; once
    # the queue is shut down, every thread ends.
    q = ShutdownQueue()
    res_puts = []
    res_gets = []
    res_shutdown = []
    write_threads = 4
    read_threads = 6
    join_threads = 2
    nb_msgs = 1024 * 64
    nb_msgs_w = nb_msgs // write_threads
    when_exec_shutdown = nb_msgs_w // 2
    # The barrier makes sure that every writer has put its first items and
    # every reader has got at least one item, and goes on until the shutdown.
    # The join threads run only when the shutdown is immediate.
    nparties = write_threads + read_threads + (join_threads if immediate else 0)
    barrier = threading.Barrier(nparties, timeout=60)
    ev_exec_shutdown = threading.Event()
    lprocs = [
        (
            _write_msg_thread,
            write_threads,
            (q, ShutDown, nb_msgs_w, res_puts, when_exec_shutdown, ev_exec_shutdown, barrier),
        ),
        (_read_msg_thread, read_threads, (q, ShutDown, res_gets, barrier)),
        (_shutdown_thread, 1, (q, res_shutdown, ev_exec_shutdown, immediate)),
    ]
    if immediate:
        lprocs.append((_join_thread, join_threads, (q, barrier)))
    runners = [start(func, *args) for func, n, args in lprocs for _ in range(n)]
    finish_all(runners, timeout=90)

    assert True in res_puts
    assert res_gets.count(True) == read_threads
    if immediate:
        assert res_shutdown == [True]
        assert q.empty()


def _get(q, ShutDown, go, results, shutdown=False):
    assert go.wait(TIMEOUT)
    try:
        q.get()
        results.append(not shutdown)
        return not shutdown
    except ShutDown:
        results.append(shutdown)
        return shutdown


def _get_shutdown(q, ShutDown, go, results):
    return _get(q, ShutDown, go, results, True)


def _get_task_done(q, ShutDown, go, results):
    assert go.wait(TIMEOUT)
    try:
        msg = q.get()
        q.task_done()
        results.append(True)
        return msg
    except ShutDown:
        results.append(False)
        return False


def _put(q, ShutDown, msg, go, results, shutdown=False):
    assert go.wait(TIMEOUT)
    try:
        q.put(msg)
        results.append(not shutdown)
        return not shutdown
    except ShutDown:
        results.append(shutdown)
        return shutdown


def _put_shutdown(q, ShutDown, msg, go, results):
    return _put(q, ShutDown, msg, go, results, True)


def _join(q, ShutDown, results, shutdown=False):
    try:
        q.join()
        results.append(not shutdown)
        return not shutdown
    except ShutDown:
        results.append(shutdown)
        return shutdown


@pytest.mark.parametrize("immediate", [False, True])
def test_shutdown_get(ShutdownQueue, ShutDown, immediate):
    q = ShutdownQueue(2)
    results = []
    go = threading.Event()
    q.put("Y")
    q.put("D")
    # The queue is full.
    if immediate:
        thrds = [(_get_shutdown, (q, ShutDown, go, results))] * 2
    else:
        # Shut down, not immediately: one of these raises ShutDown.
        thrds = [(_get, (q, ShutDown, go, results))] * 3
    threads = [start(func, *params) for func, params in thrds]
    q.shutdown(immediate)
    go.set()
    finish_all(threads)
    if immediate:
        assert results == [True, True]
    else:
        assert sorted(results) == [False] + [True] * (len(thrds) - 1)


@pytest.mark.parametrize("immediate", [False, True])
def test_shutdown_put(ShutdownQueue, ShutDown, immediate):
    q = ShutdownQueue(2)
    results = []
    go = threading.Event()
    q.put("Y")
    q.put("D")
    # The queue is full.
    thrds = [
        (_put_shutdown, (q, ShutDown, "E", go, results)),
        (_put_shutdown, (q, ShutDown, "W", go, results)),
    ]
    threads = [start(func, *params) for func, params in thrds]
    q.shutdown(immediate)
    go.set()
    finish_all(threads)
    assert results == [True] * len(thrds)


@pytest.mark.parametrize("immediate", [False, True])
def test_shutdown_join(ShutdownQueue, ShutDown, immediate):
    q = ShutdownQueue()
    results = []
    q.put("Y")
    go = threading.Event()
    nb = q.qsize()

    thrds = [(_join, (q, ShutDown, results))] * 2
    threads = [start(func, *params) for func, params in thrds]
    if not immediate:
        res = []
        for _ in range(nb):
            threads.append(start(_get_task_done, q, ShutDown, go, res))
    q.shutdown(immediate)
    go.set()
    finish_all(threads)
    assert results == [True] * len(thrds)


@pytest.mark.parametrize("immediate", [False, True])
def test_shutdown_put_join(ShutdownQueue, ShutDown, immediate):
    q = ShutdownQueue(2)
    results = []
    go = threading.Event()
    q.put("Y")
    # The queue is not full.  (Its unfinished_tasks: see test_unfinished_tasks.)
    thrds = [
        (_put_shutdown, (q, ShutDown, "E", go, results)),
        (_join, (q, ShutDown, results)),
    ]
    threads = [start(func, *params) for func, params in thrds]
    q.shutdown(immediate)
    go.set()

    if immediate:
        with pytest.raises(ShutDown):
            q.get_nowait()
    else:
        assert q.get() == "Y"
        q.task_done()

    finish_all(threads)
    assert results == [True] * len(thrds)


def test_shutdown_get_task_done_join(ShutdownQueue, ShutDown):
    q = ShutdownQueue(2)
    results = []
    go = threading.Event()
    q.put("Y")
    q.put("D")
    thrds = [
        (_get_task_done, (q, ShutDown, go, results)),
        (_get_task_done, (q, ShutDown, go, results)),
        (_join, (q, ShutDown, results)),
        (_join, (q, ShutDown, results)),
    ]
    threads = [start(func, *params) for func, params in thrds]
    go.set()
    q.shutdown(False)
    finish_all(threads)
    assert results == [True] * len(thrds)


def test_shutdown_pending_get(ShutdownQueue, ShutDown):
    q = ShutdownQueue()
    getter = start(q.get)
    q.shutdown(immediate=False)
    with pytest.raises(ShutDown):
        getter.finish()


# Added: calls that are blocked (not merely started) when the queue shuts down.


@pytest.mark.parametrize("immediate", [False, True])
@pytest.mark.parametrize("timeout", [None, 60])
def test_shutdown_wakes_blocked_calls(ShutdownQueue, ShutDown, immediate, timeout):
    full = ShutdownQueue(1)
    full.put("x")
    empty = ShutdownQueue(1)
    putters = [start(full.put, "y", True, timeout) for _ in range(2)]
    getters = [start(empty.get, True, timeout) for _ in range(2)]
    for runner in putters + getters:
        assert_blocked(runner)
    full.shutdown(immediate)
    empty.shutdown(immediate)
    for runner in putters + getters:
        with pytest.raises(ShutDown):
            runner.finish()
    if immediate:
        assert full.qsize() == 0
    else:
        assert full.get_nowait() == "x"


def test_shutdown_immediate_wakes_join_and_releases_items(ShutdownQueue, ShutDown):
    q = ShutdownQueue()
    tokens = [Token() for _ in range(10)]
    refs = [weakref.ref(t) for t in tokens]
    for token in tokens:
        q.put(token)
    del tokens, token
    joiners = [start(q.join) for _ in range(2)]
    for joiner in joiners:
        assert_blocked(joiner)
    q.shutdown(immediate=True)
    finish_all(joiners)
    assert q.qsize() == 0 and q.empty()
    gc.collect()
    assert all(r() is None for r in refs)
    with pytest.raises(ValueError, match=r"^task_done\(\) called too many times$"):
        q.task_done()


def test_shutdown_immediate_keeps_tasks_already_got(ShutdownQueue, ShutDown):
    """Items already got still count until their task_done()."""
    q = ShutdownQueue()
    for i in range(3):
        q.put(i)
    assert q.get() == 0
    q.shutdown(immediate=True)
    joiner = start(q.join)
    assert_blocked(joiner)
    q.task_done()
    joiner.finish()
