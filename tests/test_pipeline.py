"""parpy.Pipeline: the rules every backend keeps, on every backend.

Results equal the serial composition of the stages (in input order, streamed,
or in completion order); at most ``maxsize`` items in flight; the first error
stops the run and comes back with its note and its traceback; an early close
or Ctrl-C leaves every worker at rest and the pipeline ready for another run;
statistics add up; nothing is left behind after close().

Only the public API is used (parpy.pipeline.Pipeline and Stage). The stage
functions live in _pipe_funcs.py, which the worker processes of
backend="multiprocessing" can import. Every wait has a timeout: events,
joins and child Pythons take one, and the module's timeout bounds the rest.
"""

from __future__ import annotations

import collections
import functools
import gc
import itertools
import multiprocessing
import signal
import threading
import time
import traceback
import weakref

import _pipe_funcs as f
import pytest
from _parity import within
from _util import finish, interactive, interrupt_rounds

import parpy
from parpy.pipeline import Pipeline, Stage

pytestmark = pytest.mark.timeout(120)

BACKENDS = ["native", "threading", "multiprocessing"]

M = 10**9 + 7
T = 30.0  # seconds: the most any single wait that should succeed may take


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


def leftovers() -> tuple[list[str], list[object]]:
    """The pipeline threads and child processes alive now."""
    threads = [t.name for t in threading.enumerate() if t.name.startswith("parpy-pipeline")]
    return threads, multiprocessing.active_children()


def assert_nothing_left(threads_before: set[threading.Thread]) -> None:
    """No pipeline thread or child process, and no thread that was not
    there before (such as a multiprocessing queue's feeder thread)."""

    def left():
        return *leftovers(), [t.name for t in set(threading.enumerate()) - threads_before]

    deadline = time.monotonic() + T
    while left() != ([], [], []) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert left() == ([], [], [])


def serial(funcs, items):
    out = []
    for x in items:
        for func in funcs:
            x = func(x)
        out.append(x)
    return out


class Counting:
    """An input that counts the items asked of it: ``read`` is how many the
    pipeline has taken (or is taking) from it."""

    def __init__(self, items):
        self.items = iter(items)
        self.read = 0

    def __iter__(self):
        return self

    def __next__(self):
        item = next(self.items)
        self.read += 1
        return item


# ---- results ----------------------------------------------------------------------

SHAPES = {
    "one-stage": [Stage(f.inc)],
    "kernels": [Stage(parpy.fib, 2), Stage(parpy.to_decimal, 1), Stage(len, 3)],
    "mixed": [Stage(f.inc, 3), Stage(parpy.fib_mod.bind(M), 2), Stage(str), Stage(int, 2)],
}


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_results_are_the_serial_composition(backend, shape, ordered):
    stages = SHAPES[shape]
    funcs = [s.func for s in stages]
    inputs = [
        list(range(300)),
        [],
        [7] * 50 + [0, 1, 1, 2, 7, 7],  # duplicates
        (n * 37 % 500 for n in range(200)),  # a generator: no len, read once
        [4],
    ]
    with Pipeline(stages, backend=backend, ordered=ordered, maxsize=16) as pipe:
        for items in inputs:
            items = list(items)
            got = pipe.map(iter(items))
            expected = serial(funcs, items)
            if ordered:
                assert got == expected
            else:
                assert collections.Counter(got) == collections.Counter(expected)
        # imap gives the same, one by one
        got = list(pipe.imap(range(40)))
        expected = serial(funcs, range(40))
        assert got == expected if ordered else sorted(got) == sorted(expected)


def test_unordered_results_come_as_they_finish(backend):
    """Item 0 takes far longer than the rest: unordered, it comes out last."""
    with Pipeline([Stage(f.slow_first, 2), Stage(f.inc)], backend=backend, ordered=False) as pipe:
        got = pipe.map(range(10))
    assert sorted(got) == list(range(1, 11))
    assert got[-1] == 1, got


def test_ordered_output_streams_before_the_input_ends(backend):
    """The input waits for the consumer's first result before its fourth item."""
    first_out = threading.Event()
    waits = []

    def source():
        yield from range(3)
        waits.append(first_out.wait(T / 3))  # False: the pipeline waited for the input
        yield from range(3, 10)

    with Pipeline(
        # room for the whole input: a pipeline that waited for its end would
        # not deadlock on the bound but be caught by ``waits``
        [Stage(f.jitter, 2), Stage(f.inc, 2)],
        backend=backend,
        ordered=True,
        maxsize=64,
    ) as pipe:
        got = []
        for value in pipe.imap(source()):
            got.append(value)
            first_out.set()
    assert waits == [True]
    assert got == [x + 1 for x in range(10)]


# ---- errors -----------------------------------------------------------------------


@pytest.mark.parametrize("where", [0, 1, 2], ids=["first", "middle", "last"])
def test_a_stage_error_stops_the_run(backend, where):
    names = ["a", "b", "c"]
    funcs = [f.identity, f.sleepy, f.identity]  # values unchanged: item 7 fails at `where`
    funcs[where] = functools.partial(f.fail_at, 7)
    stages = [
        Stage(func, workers, name)
        for func, workers, name in zip(funcs, [1, 2, 1], names, strict=True)
    ]
    with Pipeline(stages, backend=backend, maxsize=8) as pipe:
        for _ in range(2):  # a fresh error each time, one note each
            source = Counting(itertools.count())  # endless: the error must stop it
            with pytest.raises(ValueError) as info:
                pipe.map(source)
            exc = info.value
            assert str(exc) == "fail_at 7"
            assert exc.__notes__ == [
                f"parpy.Pipeline: stages[{where}] ({names[where]}) failed on item 7"
            ]
            if backend == "multiprocessing":
                cause = exc.__cause__
                assert type(cause).__name__ == "RemoteTraceback"
                assert "in fail_at" in str(cause) and "ValueError: fail_at 7" in str(cause)
            else:
                assert "fail_at" in [fr.name for fr in traceback.extract_tb(exc.__traceback__)]
            assert source.read <= 8 + 8  # stopped: not read on (item 7 is read by now)
            stats = pipe.stats()
            assert not stats.running
        # and runs again
        items = list(range(7)) + list(range(8, 40))
        pipe_funcs = [s.func for s in stages]
        assert pipe.map(items) == serial(pipe_funcs, items)


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
def test_an_input_error_stops_the_run(backend, ordered):
    def source():
        yield from range(5)
        raise OSError("the input broke")

    with Pipeline(
        [Stage(f.sleepy, 2), Stage(f.inc)], backend=backend, ordered=ordered, maxsize=4
    ) as pipe:
        with pytest.raises(OSError, match="the input broke") as info:
            pipe.map(source())
        exc = info.value
        assert exc.__notes__ == ["parpy.Pipeline: the input iterator failed reading item 5"]
        assert "source" in [fr.name for fr in traceback.extract_tb(exc.__traceback__)]
        got = pipe.map(range(20))
        assert got == [x + 1 for x in range(20)] if ordered else sorted(got) == list(range(1, 21))


def test_an_exception_that_does_not_unpickle_keeps_its_name_and_message(backend):
    with Pipeline([Stage(f.identity), Stage(f.raise_two_arg, name="two")], backend=backend) as pipe:
        with pytest.raises(ValueError) as info:
            pipe.map(range(10))
        exc = info.value
        assert type(exc).__name__ == "TwoArgError"
        assert str(exc) == "two args: 3 b"
        assert exc.__notes__ == ["parpy.Pipeline: stages[1] (two) failed on item 3"]
        assert pipe.map([0, 1, 2]) == [0, 1, 2]


def test_multiprocessing_values_that_do_not_pickle_fail_in_their_stage():
    with Pipeline(
        [Stage(f.identity, name="id"), Stage(f.make_lock, name="lock")], backend="multiprocessing"
    ) as pipe:
        with pytest.raises(TypeError, match="pickle") as info:
            pipe.map(range(5))  # item 2's result, a lock, cannot leave stages[1]
        assert info.value.__notes__ == ["parpy.Pipeline: stages[1] (lock) failed on item 2"]
        with pytest.raises(TypeError, match="pickle") as info:
            pipe.map([0, 1, threading.Lock()])  # an input item that cannot reach stages[0]
        assert info.value.__notes__ == ["parpy.Pipeline: stages[0] (id) failed on item 2"]
        assert pipe.map([0, 1, 3]) == [0, 1, 3]


@pytest.mark.parametrize("way", ["end", "input-error", "stage-error", "closed-early"])
def test_no_item_is_kept_after_a_run(backend, way):
    """Whatever ends a run, the pipeline holds none of its items afterwards."""
    tokens = [f.Token(n) for n in range(300)]
    refs = [weakref.ref(t) for t in tokens]

    def source():
        for t in tokens:
            if way == "input-error" and t.n == 250:
                raise OSError("input")
            yield t

    fail = functools.partial(f.fail_at, 200 if way == "stage-error" else -1)
    stages = [Stage(f.unwrap, 2), Stage(fail, 2), Stage(f.inc)]
    with Pipeline(stages, backend=backend, maxsize=64) as pipe:
        if way == "end":
            assert pipe.map(source()) == [n + 1 for n in range(300)]
        elif way == "closed-early":
            results = pipe.imap(source())
            assert [next(results) for _ in range(100)] == [n + 1 for n in range(100)]
            results.close()
        else:
            with pytest.raises((OSError, ValueError)):
                pipe.map(source())
        tokens.clear()
        gc.collect()
        assert [r for r in refs if r() is not None] == []


# ---- the in-flight bound ------------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
def test_items_in_flight_never_exceed_maxsize(backend, ordered):
    """An item is in flight from its read until the consumer asks for the
    result after it: holding its k-th result (k from 1), the consumer has let
    k - 1 go, so at most k - 1 + maxsize items were read."""
    maxsize = 5
    seen: list[int] = []  # positions stages[0] has seen (in-process backends)

    def probe(x):
        seen.append(x)
        return x

    first = Stage(probe if backend != "multiprocessing" else f.identity, 2)
    with Pipeline(
        [first, Stage(f.jitter, 3), Stage(f.inc)], backend=backend, ordered=ordered, maxsize=maxsize
    ) as pipe:
        source = Counting(range(120))
        gaps = []
        for k, _ in enumerate(pipe.imap(source), 1):
            gaps.append(source.read - k)
            if seen:
                assert max(seen) <= k - 1 + maxsize - 1
            if k % 10 == 0:
                time.sleep(0.02)  # a slow consumer: the pipeline fills up
        assert len(gaps) == 120
    assert max(gaps) <= maxsize - 1, gaps
    assert max(gaps) >= 1  # items were read ahead: the stages ran side by side


def test_an_endless_input_stops_cleanly(backend):
    maxsize = 4
    with Pipeline([Stage(f.inc, 2), Stage(f.double)], backend=backend, maxsize=maxsize) as pipe:
        source = Counting(itertools.count())
        results = pipe.imap(source)
        got = [next(results) for _ in range(50)]
        assert got == [2 * (x + 1) for x in range(50)]
        stats = pipe.stats()
        assert stats.running
        results.close()
        assert source.read <= 50 + maxsize
        stats = pipe.stats()
        assert not stats.running
        assert stats.stages[0].items_in <= 50 + maxsize
        if backend in ("threading", "multiprocessing"):  # (their threads end with the run)
            assert leftovers()[0] == []
        # an exception thrown in at the consumer (Ctrl-C while it waits) ends it too
        results = pipe.imap(itertools.count())
        assert next(results) == 2
        with pytest.raises(KeyboardInterrupt):
            results.throw(KeyboardInterrupt)
        assert not pipe.stats().running
        assert pipe.map(range(30)) == [2 * (x + 1) for x in range(30)]


def test_the_error_is_the_first_failing_position(backend, tmp_path):
    """Every item fails: the error raised is item 0's, on every backend, even
    when another item failed before it in time."""
    with Pipeline([Stage(parpy.fib, 2)], backend=backend) as pipe:
        with pytest.raises(ValueError) as info:
            pipe.map([-1] * 20)
    assert info.value.__notes__ == ["parpy.Pipeline: stages[0] (fib) failed on item 0"]
    stage = Stage(functools.partial(f.fail_late_first, str(tmp_path / "started")), 2, name="x")
    with Pipeline([stage], backend=backend, maxsize=2) as pipe:
        with pytest.raises(ValueError, match="item 0") as info:
            pipe.map(range(2))
    assert info.value.__notes__ == ["parpy.Pipeline: stages[0] (x) failed on item 0"]


# ---- statistics ---------------------------------------------------------------------


def test_stats_add_up_and_name_the_bottleneck(backend):
    stages = [
        Stage(f.identity, name="fast-in"),
        Stage(f.slow, name="slow"),
        Stage(f.inc, 2, name="fast-out"),
    ]
    with Pipeline(stages, backend=backend, maxsize=8) as pipe:
        before = pipe.stats()
        assert not before.running and before.wall == 0 and before.items == 0
        assert before.bottleneck is None
        # during a run
        results = pipe.imap(range(1000))
        assert next(results) == 1
        during = pipe.stats()
        assert during.running and during.wall > 0
        assert during.stages[0].items_in >= 1
        results.close()
        # after one
        n = 40
        assert pipe.map(range(n)) == list(range(1, n + 1))
        stats = pipe.stats()
    assert not stats.running
    assert stats.items == n
    assert stats.wall >= n * f.SLOW
    for row, stage in zip(stats.stages, stages, strict=True):
        assert row.name == stage.name and row.workers == stage.workers
        assert row.items_in == row.items_out == n
        assert min(row.busy, row.blocked_in, row.blocked_out) >= 0
        assert row.busy <= row.workers * stats.wall + 0.05
        assert 0 <= row.utilisation <= 1
    assert stats.stages[1].busy >= n * f.SLOW * 0.9
    assert stats.input_blocked >= 0
    assert stats.bottleneck == "slow"
    text = str(stats)
    assert all(name in text for name in ("fast-in", "slow", "fast-out"))
    assert "bottleneck: slow" in text
    page = stats._repr_html_()
    assert page.startswith('<div class="parpy-pipeline">') and page.count("<tr>") == 1 + len(stages)
    assert stats.as_dict()["bottleneck"] == "slow"


def test_a_progress_bar_follows_the_run(backend, capsys):
    pytest.importorskip("tqdm")
    with Pipeline([f.inc], backend=backend, progress=True) as pipe:
        assert pipe.map(range(25)) == list(range(1, 26))
    assert "25/25" in capsys.readouterr().err


# ---- construction -------------------------------------------------------------------


def test_bad_arguments_are_refused(backend):
    with pytest.raises(ValueError, match="workers must be >= 1"):
        Stage(f.inc, workers=0)
    with pytest.raises(TypeError, match="workers must be an int"):
        Stage(f.inc, workers=True)
    with pytest.raises(TypeError, match="workers must be an int"):
        Stage(f.inc, workers=2.0)
    with pytest.raises(TypeError, match="callable"):
        Stage(42)
    with pytest.raises(TypeError, match="name"):
        Stage(f.inc, name=3)
    with pytest.raises(TypeError, match="callable"):
        Pipeline([f.inc, "not callable"], backend=backend)
    with pytest.raises(ValueError, match="at least one stage"):
        Pipeline([], backend=backend)
    with pytest.raises(TypeError, match="iterable of Stage"):
        Pipeline(f.inc, backend=backend)
    with pytest.raises(ValueError, match="maxsize must be >= 1"):
        Pipeline([f.inc], maxsize=0, backend=backend)
    with pytest.raises(TypeError, match="maxsize must be an int"):
        Pipeline([f.inc], maxsize=False, backend=backend)
    with pytest.raises(TypeError, match="ordered"):
        Pipeline([f.inc], ordered=1, backend=backend)
    with pytest.raises(ValueError, match="backend must be one of"):
        Pipeline([f.inc], backend=backend + "x")
    assert leftovers() == ([], [])


def test_multiprocessing_refuses_stage_functions_that_do_not_pickle():
    def local(x):
        return x

    cases = [
        ([f.inc, lambda x: x], 1, "<lambda>"),
        ([f.inc, Stage(f.double, 2), local], 2, "local"),
    ]
    for stages, index, name in cases:
        with pytest.raises(TypeError, match="needs stage functions that pickle") as info:
            Pipeline(stages, backend="multiprocessing")
        message = str(info.value)
        assert f"stages[{index}] (" in message and name in message and "does not:" in message
        assert info.value.__cause__ is not None
    assert leftovers() == ([], [])


# ---- lifecycle ----------------------------------------------------------------------


def test_many_pipelines_leave_nothing_behind(backend):
    threads_before = set(threading.enumerate())
    count = 20
    for i in range(count):
        stages = [Stage(f.inc), Stage(f.double, 1 + i % 2)]
        if i % 3 == 0:  # the context manager closes
            with Pipeline(stages, backend=backend, maxsize=4) as pipe:
                assert pipe.map(range(10)) == [2 * (x + 1) for x in range(10)]
            with pytest.raises(ValueError, match="closed"):
                pipe.map([1])
        elif i % 3 == 1:  # closed with an unfinished imap
            pipe = Pipeline(stages, backend=backend, maxsize=4)
            results = pipe.imap(itertools.count())
            assert next(results) == 2
            pipe.close()
            with pytest.raises(RuntimeError, match="closed"):
                next(results)
            pipe.close()  # idempotent
        else:  # closed after a failed run
            pipe = Pipeline([Stage(functools.partial(f.fail_at, 3), name="x")], backend=backend)
            with pytest.raises(ValueError):
                pipe.map(range(10))
            pipe.close()
    assert_nothing_left(threads_before)


def test_one_run_at_a_time(backend):
    with Pipeline([Stage(f.sleepy, 2)], backend=backend, maxsize=4) as pipe:
        results = pipe.imap(range(100))
        assert next(results) == 0
        with pytest.raises(RuntimeError, match="already running"):
            within(T, pipe.map, [1, 2])  # from another thread
        with pytest.raises(RuntimeError, match="already running"):
            pipe.map([1, 2])  # or this one
        assert list(results) == list(range(1, 100))
        assert within(T, pipe.map, [1, 2]) == [1, 2]


def test_close_from_another_thread_stops_a_run(backend):
    threads_before = set(threading.enumerate())
    pipe = Pipeline([Stage(f.sleepy, 2), Stage(f.inc)], backend=backend, maxsize=8)
    started = threading.Event()
    caught: list[BaseException] = []

    def source():
        for n in itertools.count():
            if n == 10:
                started.set()
            yield n

    def consume():
        try:
            pipe.map(source())
        except BaseException as exc:
            caught.append(exc)

    thread = threading.Thread(target=consume)
    thread.start()
    assert started.wait(T)
    pipe.close()
    thread.join(T)
    assert not thread.is_alive()
    assert len(caught) == 1 and isinstance(caught[0], RuntimeError), caught
    assert "closed" in str(caught[0])
    assert_nothing_left(threads_before)
    with pytest.raises(ValueError, match="closed"):
        pipe.map([1])


CTRL_C_CHILD = """
import itertools, multiprocessing, os, sys, threading
sys.path.insert(0, os.path.abspath("tests"))
import _pipe_funcs as f
from parpy.pipeline import Pipeline, Stage

def source(round):
    for n in itertools.count():
        if n == 20:
            print(f"READY {round}", flush=True)
        yield n

pipe = Pipeline([Stage(f.sleepy, 2), Stage(f.inc)], backend=sys.argv[1], maxsize=8)
for round in range(2):
    try:
        pipe.map(source(round))
    except KeyboardInterrupt:
        print(f"INTERRUPTED {round}", flush=True)
print("NEXT", pipe.map(range(50)) == [x + 1 for x in range(50)], flush=True)
pipe.close()
threads = [t.name for t in threading.enumerate() if t.name.startswith("parpy-pipeline")]
print("LEFT", threads, multiprocessing.active_children(), flush=True)
"""


def test_ctrl_c_stops_a_run_promptly_and_the_pipeline_runs_again(backend):
    with interactive(CTRL_C_CHILD, backend) as (proc, out):
        latencies = interrupt_rounds(proc, out, pause=0.2, timeout=T)
        assert max(latencies) < 1.5, latencies
        assert out.expect("NEXT", timeout=T) == "NEXT True"
        assert out.expect("LEFT", timeout=T) == "LEFT [] []"
        returncode, _, stderr = finish(proc, timeout=T)
        assert returncode == 0, stderr


CTRL_C_SLOW_STAGE_CHILD = """
import sys, threading, time
from parpy.pipeline import Pipeline, Stage

SLEEP = 3.0  # seconds in the stage's call: far longer than Ctrl-C may take
calls = []
delay = [SLEEP]

def stage(x):
    calls.append(x)
    if len(calls) == 1:
        print("IN CALL", flush=True)
    time.sleep(delay[0])
    return x

pipe = Pipeline([Stage(stage)], backend=sys.argv[1], maxsize=4)
began = time.monotonic()
try:
    try:
        pipe.map(range(10))
    except KeyboardInterrupt:
        print(f"INTERRUPTED {time.monotonic() - began:.2f}", flush=True)
        time.sleep(0.5)  # a second Ctrl-C, when sent, lands here or earlier
except KeyboardInterrupt:
    pass
print("CALLS", len(calls), flush=True)
time.sleep(SLEEP + 1.0)  # the call in progress returns meanwhile
print("CALLS", len(calls), flush=True)  # and its thread took no other item
delay[0] = 0.0
print("AGAIN", pipe.map(range(5)) == list(range(5)), flush=True)
pipe.close()
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    left = [t.name for t in threading.enumerate() if t.name.startswith("parpy-pipeline")]
    if not left:
        break
    time.sleep(0.05)
print("LEFT", left, flush=True)
"""


@pytest.mark.parametrize("backend", ["native", "threading"])
@pytest.mark.parametrize("signals", [1, 2])
def test_ctrl_c_does_not_wait_for_a_python_stage(backend, signals):
    """Ctrl-C while a Python stage is in a long call: KeyboardInterrupt within a
    fraction of a second; the call cannot be cut short, so its thread finishes
    it and leaves without taking another item; a second Ctrl-C changes nothing
    of that; the pipeline runs again and leaves no thread behind."""
    with interactive(CTRL_C_SLOW_STAGE_CHILD, backend) as (proc, out):
        out.expect("IN CALL", timeout=T)
        sent = time.monotonic()
        for _ in range(signals):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.05)
        out.expect("INTERRUPTED", timeout=T)
        assert time.monotonic() - sent < 1.0
        assert out.expect("CALLS", timeout=T) == "CALLS 1"
        assert out.expect("CALLS", timeout=T) == "CALLS 1"
        assert out.expect("AGAIN", timeout=T) == "AGAIN True"
        assert out.expect("LEFT", timeout=T) == "LEFT []"
        returncode, _, stderr = finish(proc, timeout=T)
        assert returncode == 0, stderr
