"""The native backend of parpy.Pipeline: what only it does.

C values between native stages, conversions where the GIL is held, every
chunk freed on every way out (weak references count the objects), a long
native computation stopped by another stage's error, flat memory on an
endless input under RLIMIT_AS, and the run object's own checks. The rules
every backend shares are in test_pipeline.py.
"""

from __future__ import annotations

import gc
import itertools
import threading
import time
import weakref

import pytest
from _util import run_python

import parpy
import parpy.reference
from parpy import _core
from parpy.pipeline import Pipeline, Stage

M = 10**9 + 7
T = 60  # seconds: the most any wait here may take


class Token:
    """An object whose death a weak reference shows."""

    def __init__(self, n: int) -> None:
        self.n = n


def run_of(pipe: Pipeline) -> _core.PipelineRun:
    return pipe._runner._run  # type: ignore[attr-defined]


def test_native_stages_pass_c_values():
    bound = parpy.fib_mod.bind(M)
    with Pipeline([Stage(parpy.fib, 2), Stage(parpy.to_decimal, 2), Stage(len)]) as pipe:
        ns = [0, 1, 2, 93, 94, 1000, 10**5, 3 * 10**5, 5, 10**5 + 1]
        assert pipe.map(ns) == [len(parpy.reference.to_decimal(parpy.fib(n))) for n in ns]
        assert run_of(pipe).gives == (True, False, False)
    with Pipeline([bound, bound, Stage(str), Stage(int), bound]) as pipe:
        assert pipe.map(range(1000)) == [bound(int(str(bound(bound(n))))) for n in range(1000)]
        assert run_of(pipe).gives == (True, False, False, False, False)
    # to_decimal gives text, which fib_mod cannot take: the stages pass ints
    with Pipeline([parpy.fib, parpy.to_decimal, int, bound]) as pipe:
        assert pipe.map([5, 20]) == [5, bound(6765)]
        assert run_of(pipe).gives == (True, False, False, False)
    with Pipeline([parpy.fib, parpy.to_decimal, bound]) as pipe:
        with pytest.raises(TypeError, match="must be an int") as info:
            pipe.map([5])
        assert info.value.__notes__ == [
            f"parpy.Pipeline: stages[2] ({bound.__name__}.bind({M})) failed on item 0"
        ]
    with pytest.raises(TypeError, match=r"bind the others first"):
        Stage(parpy.fib_mod)  # no modulus


def test_a_value_the_next_kernel_refuses_names_that_stage():
    bound = parpy.fib_mod.bind(M)
    with Pipeline([parpy.fib, bound]) as pipe:
        assert pipe.map([90, 93]) == [bound(parpy.fib(90)), bound(parpy.fib(93))]
        with pytest.raises(OverflowError, match="n must be < 2") as info:
            pipe.map([90, 93, 94, 5])  # F(94) >= 2**64
        assert info.value.__notes__ == [
            f"parpy.Pipeline: stages[1] ({bound.__name__}.bind({M})) failed on item 2"
        ]
        assert pipe.map([7]) == [233]  # F(F(7)) = F(13)


def test_python_stages_parse_for_the_native_stage_after_them():
    with Pipeline([Stage(int, 2), Stage(parpy.fib, 2), Stage(parpy.to_decimal)]) as pipe:
        want = ["55", "6765", parpy.reference.to_decimal(parpy.fib(300))]
        assert pipe.map(["10", "20", "300"]) == want
        with pytest.raises(ValueError, match="n must be >= 0") as info:
            pipe.map(["1", "-4"])
        assert info.value.__notes__ == ["parpy.Pipeline: stages[1] (fib) failed on item 1"]


@pytest.mark.parametrize("where", [None, "input", "python", "parse", "late"])
def test_every_object_is_released_on_every_way_out(where):
    """Tokens go through Python and native stages; whatever ends the run, none survives."""
    tokens = [Token(n) for n in range(3000)]
    refs = [weakref.ref(t) for t in tokens]

    def source():
        for t in tokens:
            if where == "input" and t.n == 2500:
                raise OSError("input")
            yield t

    def unwrap(t):
        if where == "python" and t.n == 2000:
            raise KeyError(t.n)
        return t.n % 90

    def check(v):  # -1 fails when the last stage parses it
        return -1 if where == "parse" and v == 89 else v

    def late(v):
        if where == "late" and v == parpy.fib_mod(parpy.fib(77), M):
            raise LookupError(v)
        return v

    stages = [Stage(unwrap, 2), Stage(parpy.fib, 2), Stage(check, 2)]
    stages += [Stage(parpy.fib_mod.bind(M)), Stage(late)]
    with Pipeline(stages, maxsize=256) as pipe:
        if where is None:
            assert pipe.map(source()) == [parpy.fib_mod(parpy.fib(n % 90), M) for n in range(3000)]
        else:
            with pytest.raises((OSError, KeyError, ValueError, LookupError)) as info:
                pipe.map(source())
            assert len(info.value.__notes__) == 1
            del info  # its traceback holds the frame that raised, and its token
    tokens.clear()
    gc.collect()
    assert [r for r in refs if r() is not None] == []


def test_an_error_stops_a_long_native_computation_promptly():
    """fib_iterative(10**8) runs for minutes; the input's error stops it at once."""

    def source():
        yield 10**8
        time.sleep(0.2)  # the first item is computing by now
        raise OSError("stop")

    with Pipeline([Stage(parpy.fib_iterative, 1)]) as pipe:
        started = time.monotonic()
        with pytest.raises(OSError, match="stop"):
            pipe.map(source())
        assert time.monotonic() - started < 5
        assert pipe.map([10]) == [55]


def test_closing_an_imap_early_stops_the_run_and_frees_its_items():
    tokens = (Token(n) for n in itertools.count())
    refs = []

    def keep(t):
        refs.append(weakref.ref(t))
        return t.n

    with Pipeline([Stage(keep, 2), Stage(parpy.fib_mod.bind(M), 2)], maxsize=128) as pipe:
        results = pipe.imap(tokens)
        assert [next(results) for _ in range(1000)] == [parpy.fib_mod(n, M) for n in range(1000)]
        results.close()
        stats = pipe.stats()
        assert not stats.running
        assert stats.stages[0].items_in <= 1000 + 128
    gc.collect()
    assert [r for r in refs if r() is not None] == []


def test_close_from_another_thread_stops_a_run():
    pipe = Pipeline([Stage(lambda x: time.sleep(0.01) or x, 2)])
    caught: list[BaseException] = []

    def consume():
        try:
            pipe.map(itertools.count())
        except BaseException as exc:
            caught.append(exc)

    thread = threading.Thread(target=consume)
    thread.start()
    time.sleep(0.2)
    pipe.close()
    thread.join(T)
    assert not thread.is_alive()
    assert len(caught) == 1 and isinstance(caught[0], RuntimeError), caught
    assert "closed" in str(caught[0])
    assert not [t for t in threading.enumerate() if t.name.startswith("parpy-pipeline")]
    with pytest.raises(ValueError, match="closed"):
        pipe.map([1])


@pytest.mark.memory_limits
def test_an_endless_input_runs_in_flat_memory_under_rlimit_as():
    body = """
        import itertools, resource
        import parpy
        from parpy.pipeline import Pipeline, Stage

        def rss_kib():
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))

        bound = parpy.fib_mod.bind(10**9 + 7)
        pipe = Pipeline([Stage(str, 1), Stage(int, 1), Stage(bound, 2), Stage(bound, 2)])
        results = pipe.imap(itertools.count())
        samples = []
        for i, r in enumerate(results):
            if i % 200_000 == 0:
                samples.append(rss_kib())
            if i == 2_000_000:
                break
        results.close()
        print("RSS", samples[1], samples[-1])
    """
    cap = 1 << 30  # the address space: about 3x what the child needs
    child = run_python(body, timeout=300, rlimits={"RLIMIT_AS": cap})
    assert child.returncode == 0, child.stderr
    first, last = map(int, child.stdout.split()[1:3])
    assert last - first < 16 * 1024, (first, last)  # KiB: no growth with the items


def test_the_run_object_checks_its_arguments():
    with pytest.raises(ValueError):
        _core.PipelineRun((), 10, True)
    with pytest.raises(ValueError):
        _core.PipelineRun(((str, 1, "s"),), 0, True)
    with pytest.raises(ValueError):
        _core.PipelineRun(((str, 0, "s"),), 10, True)
    with pytest.raises(TypeError):
        _core.PipelineRun(((str, 1),), 10, True)
    run = _core.PipelineRun(((str, 1, "s"),), 10, True)
    with pytest.raises(IndexError):
        run.work(1)
    run.stop()
    run.close()


def test_native_stages_leave_the_gil_to_python_threads():
    """While fib_iterative computes on the stage's workers, a Python thread counts freely."""
    counted = [0]
    stop = threading.Event()

    def count():
        while not stop.is_set():
            counted[0] += 1

    with Pipeline([Stage(parpy.fib_iterative, 2)]) as pipe:
        thread = threading.Thread(target=count)
        thread.start()
        try:
            started = time.monotonic()
            pipe.map([2 * 10**5] * 4)
            elapsed = time.monotonic() - started
        finally:
            stop.set()
            thread.join(T)
    # A thread that had to wait for the GIL through the run would count a few
    # hundred times (one switch interval, 5 ms, per item); free, it counts
    # millions a second.
    assert elapsed > 0.05 and counted[0] > 20_000, (elapsed, counted[0])


def test_progress_bar_follows_the_items_out(capsys):
    with Pipeline([parpy.fib, parpy.to_decimal], progress=True) as pipe:
        assert pipe.map(range(500)) == [str(parpy.fib(n)) for n in range(500)]
    err = capsys.readouterr().err
    assert "500/500" in err, err


@pytest.mark.parametrize("nth", [0, 2, 4])
def test_ctrl_c_while_a_worker_thread_starts_leaves_no_thread_behind(monkeypatch, nth):
    # Ctrl-C lands where the consumer waits for a new thread to start (seen
    # under ASan): the run stops, and no thread is left waiting for a task.
    pipe = Pipeline([Stage(lambda x: time.sleep(0.01) or x, 2), Stage(parpy.fib_mod.bind(M), 2)])
    started = [0]
    start = threading.Thread.start

    def interrupted_start(thread: threading.Thread) -> None:
        start(thread)
        started[0] += 1
        if started[0] == nth + 1:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(threading.Thread, "start", interrupted_start)
        with pytest.raises(KeyboardInterrupt):
            pipe.map(range(100))
    assert pipe.map(range(50)) == [parpy.reference.fib_mod(i, M) for i in range(50)]
    pipe.close()
    deadline = time.monotonic() + T
    while [t for t in threading.enumerate() if t.name.startswith("parpy-pipeline")]:
        assert time.monotonic() < deadline, threading.enumerate()
        time.sleep(0.01)
