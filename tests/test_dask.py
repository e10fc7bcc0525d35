"""parpy.map and parpy.fib_batch with client=: batches on a Dask cluster.

One LocalCluster for the module: two worker processes of one thread each,
on loopback only. A scheduler plugin (the scheduler runs in this process)
records every parpy task the scheduler was given and how often each was sent
to a worker, so that the tests can tell what was submitted and what ran.
"""

from __future__ import annotations

import _thread
import collections
import os
import signal
import sys
import threading
import time
import traceback

import pytest
from _util import fib_exact, local_cluster

import parpy
import parpy.reference
from parpy import _core
from parpy.batch import _dask

distributed = pytest.importorskip(
    "distributed",
    reason="Dask's distributed scheduler is not installed (pip install 'parpy[dask]')",
)
from distributed.diagnostics.plugin import SchedulerPlugin  # noqa: E402

T = 60  # seconds: no wait in this file may take longer

MIXED = [(i * 37) % 2500 for i in range(600)] + [93, 94, 0, 1, 2] * 3
HTML = [f'<p><a href="/{i}">{i}</a> <a href="x{i % 3}">' * (i % 5) for i in range(60)]


class Tasks(SchedulerPlugin):
    """On the scheduler: the parpy tasks it was given (in order), and how often
    each was sent to a worker."""

    name = "parpy-tasks"

    def __init__(self) -> None:
        self.given: dict[str, None] = {}
        self.started: collections.Counter[str] = collections.Counter()

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        if not str(key).startswith("parpy."):
            return
        self.given.setdefault(key)
        if finish == "processing":
            self.started[key] += 1


def _tasks_on(dask_scheduler) -> tuple[list[str], dict[str, int]]:
    plugin = dask_scheduler.plugins[Tasks.name]
    return list(plugin.given), dict(plugin.started)


def _parpy_tasks_held(dask_scheduler) -> int:
    return sum(str(key).startswith("parpy.") for key in dask_scheduler.tasks)


def _executing(dask_worker) -> int:
    return len(dask_worker.state.executing)


def _processing(dask_scheduler) -> dict[str, int]:
    return {address: len(ws.processing) for address, ws in dask_scheduler.workers.items()}


@pytest.fixture(scope="module")
def cluster_client():
    cluster = local_cluster()
    try:
        # Not the default client: parpy must use the one it is given (and its event loop).
        with distributed.Client(cluster, timeout=T, set_as_default=False) as client:
            client.register_plugin(Tasks())
            yield client
    finally:
        cluster.close(timeout=T)


def _settle(client) -> None:
    """Waits until both workers are up and no parpy task is left from a test before."""
    client.wait_for_workers(2, timeout=T)
    deadline = time.monotonic() + T
    while client.run_on_scheduler(_parpy_tasks_held) or any(client.run(_executing).values()):
        assert time.monotonic() < deadline, "the cluster did not settle"
        time.sleep(0.02)


@pytest.fixture
def client(cluster_client):
    _settle(cluster_client)
    return cluster_client


def tasks(client) -> tuple[list[str], dict[str, int]]:
    return client.run_on_scheduler(_tasks_on)


def assert_nothing_submitted(client, before) -> None:
    time.sleep(0.05)  # (anything sent would have reached the scheduler by now)
    assert tasks(client)[0] == before[0]


# ---- results ------------------------------------------------------------------------------


M = 10**9 + 7
CASES = {
    "fib": (parpy.fib, MIXED, parpy.reference.fib),
    "fib_iterative": (parpy.fib_iterative, MIXED[:200], parpy.reference.fib_iterative),
    "fib_recursive": (
        parpy.fib_recursive,
        [(i * 7) % 24 for i in range(300)],
        parpy.reference.fib_recursive,
    ),
    "fib_mod": (
        parpy.fib_mod.bind(M),
        [i**5 for i in range(400)],
        lambda n: parpy.reference.fib_mod(n, M),
    ),
    "to_decimal": (parpy.to_decimal, [7**i for i in range(300)] * 2, parpy.reference.to_decimal),
    "extract_links": (
        parpy.extract_links,
        [(h, "http://h/d/") for h in HTML],
        lambda item: parpy.reference.extract_links(*item),
    ),
}


@pytest.mark.parametrize("chunksize", [None, 1, 7])
@pytest.mark.parametrize("name", list(CASES))
def test_results_equal_the_local_batch_and_the_reference_in_order(client, name, chunksize):
    kernel, items, reference = CASES[name]
    before = tasks(client)
    got = parpy.map(kernel, items, client=client, chunksize=chunksize)
    assert got == parpy.map(kernel, items) == [reference(item) for item in items]
    given = tasks(client)[0][len(before[0]) :]
    if chunksize is not None:  # chunks of chunksize items
        assert len(given) == -(-len(items) // chunksize)
    assert given and all(key.startswith(f"parpy.{kernel.__name__}-") for key in given)


def test_duplicates_any_iterable_and_a_single_item(client):
    assert parpy.map(parpy.fib, iter([5, 5, 5, 0]), client=client) == [5, 5, 5, 0]
    assert parpy.map(parpy.fib, range(94, 100), client=client) == [
        fib_exact(n) for n in range(94, 100)
    ]
    assert parpy.map(parpy.fib, (90,), client=client) == [fib_exact(90)]


@pytest.mark.parametrize("algorithm", ["doubling", "iterative", "recursive"])
def test_fib_batch_with_a_client(client, algorithm):
    ns = [(i * 13) % 25 for i in range(100)]
    expected = [fib_exact(n) for n in ns]
    assert parpy.fib_batch(ns, algorithm=algorithm, client=client) == expected
    assert parpy.fib_batch(ns, algorithm=algorithm, client=client, chunksize=9) == expected


@pytest.mark.parametrize("schedule", [None, "static", "dynamic"])
def test_workers_and_schedule_apply_inside_each_chunk(client, schedule):
    got = parpy.map(parpy.fib, MIXED, client=client, workers=2, schedule=schedule, chunksize=100)
    assert got == parpy.map(parpy.fib, MIXED)


def test_the_client_need_not_be_the_default_one(client):
    with pytest.raises(ValueError, match="No clients found"):
        distributed.default_client()
    assert parpy.map(parpy.fib, MIXED, client=client, chunksize=100) == parpy.map(parpy.fib, MIXED)


def test_empty_input_submits_nothing(client):
    before = tasks(client)
    assert parpy.map(parpy.fib, [], client=client) == []
    assert parpy.fib_batch(iter(()), client=client) == []
    assert_nothing_submitted(client, before)


def test_repeated_identical_calls_are_each_computed(client):
    # pure=False: Dask would otherwise hand the second call the first's keys
    want = parpy.map(parpy.fib, MIXED)
    before = tasks(client)
    for _ in range(3):
        assert parpy.map(parpy.fib, MIXED, client=client, chunksize=100) == want
    given, started = tasks(client)
    given = given[len(before[0]) :]
    assert len(given) == len(set(given)) == 3 * 7
    assert all(started[key] == 1 for key in given)


# ---- the plan -----------------------------------------------------------------------------


def test_a_tiny_batch_is_one_chunk_a_large_one_many():
    costs = _core.Batch(parpy.fib, list(range(94)) * 100).costs()
    assert _dask.plan(costs, slots=2) == [(0, len(costs))]
    costs = [1e6] * 8000  # 8 s of work for 4 threads
    chunks = _dask.plan(costs, slots=4)
    bounds = sorted(chunks)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(costs)
    assert all(b == c for (_, b), (c, _) in zip(bounds, bounds[1:], strict=False))  # contiguous
    sizes = [b - a for a, b in chunks]
    assert sizes == sorted(sizes, reverse=True)  # costliest first
    assert len(chunks) >= 2 * 4  # work for every thread, and small ones at the end
    assert sizes[0] == 1000  # at most 1 s (items of 1 ms)
    assert all(size >= 20 for size in sizes)  # at least 20 ms
    assert sum(size for size in sizes if size < 100) <= 4 * 200  # and 0.1 s but at the end


def test_the_plan_follows_the_cost_not_the_count():
    costs = [1e4] * 1000 + [5e8] + [1e4] * 1000  # one item of 0.5 s among tiny ones
    chunks = _dask.plan(costs, slots=2)
    first = chunks[0]
    assert first[0] <= 1000 < first[1]  # the costly item's chunk goes first
    assert sum(b - a for a, b in chunks) == len(costs)


# ---- errors -------------------------------------------------------------------------------


class OnlyHere:
    """An item whose value can be read only in the process that made it (say a
    handle to local state): it passes validation here, and its parse fails on
    a Dask worker."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.pid = os.getpid()

    def __index__(self) -> int:
        if os.getpid() != self.pid:
            raise LookupError(f"this item belongs to process {self.pid}")
        return self.n


def test_a_bad_item_raises_before_anything_is_submitted(client):
    before = tasks(client)
    items = [1, 2, 3] * 100 + [-1] + [4] * 100
    with pytest.raises(ValueError, match="n must be >= 0") as info:
        parpy.map(parpy.fib, items, client=client, chunksize=10)
    assert info.value.__notes__ == ["parpy.fib: items[300]"]
    with pytest.raises(TypeError) as info:
        parpy.fib_batch([5, 2.0], client=client)
    assert info.value.__notes__ == ["parpy.fib: items[1]"]
    assert_nothing_submitted(client, before)


def test_an_exception_on_a_worker_comes_back_with_its_position_and_traceback(client):
    items = list(range(50)) + [OnlyHere(7)] + list(range(49))
    assert parpy.map(parpy.fib, items)[50] == 13  # valid here
    with pytest.raises(LookupError, match="belongs to process") as info:
        parpy.map(parpy.fib, items, client=client, chunksize=20)
    notes = info.value.__notes__
    assert notes[0] == "parpy.fib: items[50]"  # its position in the whole input
    assert notes[1].startswith("parpy.map: the chunk items[40:60] on Dask (parpy.fib-")
    frames = traceback.extract_tb(info.value.__traceback__)
    names = [frame.name for frame in frames]
    assert "_run_chunk" in names and "__index__" in names  # the worker's traceback


def test_argument_errors_with_a_client(client):
    for options, error in [
        ({"workers": 0}, ValueError),
        ({"workers": 1.5}, TypeError),
        ({"chunksize": 0}, ValueError),
        ({"schedule": "fast"}, ValueError),
        ({"progress": "yes"}, TypeError),
    ]:
        with pytest.raises(error):
            parpy.map(parpy.fib, [1, 2], client=client, **options)
    with pytest.raises(TypeError, match="distributed.Client"):
        parpy.map(parpy.fib, [1, 2], client="tcp://127.0.0.1:8786")
    with pytest.raises(TypeError, match="parpy kernels"):
        parpy.map(parpy.reference.fib, [1, 2], client=client)


def test_without_dask_an_importerror_before_any_work(client, monkeypatch):
    before = tasks(client)
    read = []

    def items():
        read.append(1)
        yield 5

    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"pip install 'parpy\[dask\]'"):
        parpy.map(parpy.fib, items(), client=client)
    with pytest.raises(ImportError, match=r"pip install 'parpy\[dask\]'"):
        parpy.fib_batch(items(), client=client)
    assert read == []
    assert_nothing_submitted(client, before)


def test_a_closed_client_is_refused_before_any_work(client):
    closed = distributed.Client(client.scheduler.address, timeout=T, set_as_default=False)
    closed.close(timeout=T)
    read = []

    def items():
        read.append(1)
        yield 5

    for run in (
        lambda: parpy.map(parpy.fib, items(), client=closed),
        lambda: parpy.fib_batch(items(), client=closed),
        lambda: parpy.map(parpy.fib, [-1], client=closed),  # not even validated
    ):
        with pytest.raises(ValueError, match=f"the Dask client {closed.id} is closed"):
            run()
    assert read == []


# ---- workers lost, Ctrl-C, progress -------------------------------------------------------

# About 3 s of work in chunks of about 0.1 s: fib_iterative(25000) takes about a millisecond.
LONG = [25000 + i % 7 for i in range(2400)]


def test_a_worker_killed_mid_batch_has_its_chunks_rerun(client):
    expected = parpy.map(parpy.fib_iterative, LONG)
    pids = client.run(os.getpid)
    before = tasks(client)
    killed = []
    finished = threading.Event()

    def kill() -> None:
        deadline = time.monotonic() + T
        while time.monotonic() < deadline and not finished.is_set():
            given, started = tasks(client)
            if sum(started.get(key, 0) for key in given[len(before[0]) :]) >= 4:
                busy = [a for a, n in client.run_on_scheduler(_processing).items() if n]
                if busy:
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed.append(busy[0])
                    return
            time.sleep(0.01)

    killer = threading.Thread(target=kill, daemon=True)
    killer.start()
    got = parpy.map(parpy.fib_iterative, LONG, client=client, chunksize=100)
    finished.set()
    killer.join(T)
    assert killed, "the worker was not killed while the batch ran"
    assert got == expected
    given, started = tasks(client)
    given = given[len(before[0]) :]
    assert len(given) == 24
    assert max(started[key] for key in given) >= 2  # a chunk of the killed worker ran again


def interrupt_when(ready) -> tuple[threading.Thread, list[float]]:
    """A thread that sends this (main) thread a KeyboardInterrupt once ``ready()``
    holds, polled every 10 ms, and the list it appends the time of it to."""
    interrupted_at: list[float] = []

    def interrupt() -> None:
        deadline = time.monotonic() + T
        while time.monotonic() < deadline:
            if ready():
                interrupted_at.append(time.monotonic())
                _thread.interrupt_main()
                return
            time.sleep(0.01)

    timer = threading.Thread(target=interrupt, daemon=True)
    timer.start()
    return timer, interrupted_at


def test_ctrl_c_cancels_the_submitted_chunks(client):
    before = tasks(client)

    def three_started() -> bool:
        given, started = tasks(client)
        return sum(started.get(key, 0) for key in given[len(before[0]) :]) >= 3

    timer, interrupted_at = interrupt_when(three_started)
    with pytest.raises(KeyboardInterrupt):
        parpy.map(parpy.fib_iterative, LONG * 4, client=client, chunksize=100)
    took = time.monotonic() - interrupted_at[0]
    timer.join(T)
    assert took < 1.0, took
    # within a second or two nothing of it is held by the scheduler or runs on a worker
    deadline = time.monotonic() + 2.0
    while client.run_on_scheduler(_parpy_tasks_held) or any(client.run(_executing).values()):
        assert time.monotonic() < deadline, "chunks still held or running"
        time.sleep(0.02)
    given, started = tasks(client)
    assert len(given) - len(before[0]) == 96
    assert sum(started.get(key, 0) for key in given[len(before[0]) :]) < 20  # most never ran


def test_ctrl_c_stops_the_chunks_running_on_the_workers(client):
    # Two chunks of about 2.4 s, one on each worker: interrupted once both run,
    # they stop within a fraction of a second instead of running to their end.
    before = tasks(client)
    timer, interrupted_at = interrupt_when(lambda: sum(client.run(_executing).values()) == 2)
    with pytest.raises(KeyboardInterrupt):
        parpy.map(parpy.fib_iterative, LONG * 2, client=client, chunksize=len(LONG))
    timer.join(T)
    assert len(tasks(client)[0]) - len(before[0]) == 2
    while any(client.run(_executing).values()):
        assert time.monotonic() - interrupted_at[0] < 0.75, "a chunk ran on after Ctrl-C"
        time.sleep(0.01)


def test_progress_bar_counts_every_item(client, capsys):
    got = parpy.map(parpy.fib, MIXED, client=client, chunksize=100, progress=True)
    assert got == parpy.map(parpy.fib, MIXED)
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    lines = [line for line in lines if "item" in line]
    assert lines and f"{len(MIXED)}/{len(MIXED)}" in lines[-1]
