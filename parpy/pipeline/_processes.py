"""The multiprocessing backend of parpy.Pipeline: worker processes joined by
multiprocessing queues.

Start method: "forkserver" where the platform has it (Linux), else "spawn";
never "fork": parpy's extension runs native threads (OpenMP teams, the
executors' workers), and a child forked from a process with threads
inherits locks that those threads may hold. The fork server is a fresh,
single-threaded interpreter; a worker forked from it imports what it needs
(parpy, the stage functions' modules) itself. Measured on 2 cores, four
workers that import parpy are ready in about 0.12 s from the fork server,
0.26 s with spawn (0.10 s with fork). As with spawn, the main module must be
importable without side effects (``if __name__ == "__main__":``), and a stage
function is found by its module and name in the worker (so not one defined
in a notebook); a function that the worker cannot load fails the first item
it gets, with that stage's note.

Lifetime: the worker processes (``stage.workers`` per stage, named
``parpy-pipeline-stage{i}-{w}``, daemonic, ignoring SIGINT: Ctrl-C is the
parent's) are started at the first run and kept for later runs;
:meth:`ProcessRunner.close` ends them, and so does the garbage collection of
the runner; a worker whose parent died ends by itself. A run that cannot
bring its workers to rest within :data:`GRACE` seconds (a stage function
that runs on after an error, Ctrl-C or close) ends them all, and so does a
run that lost a worker (it fails with RuntimeError, noted with the worker's
stage and last item); the next run starts new ones.

Messages: every item carries the run's id and its input position; the item
itself travels as bytes, pickled by the sender, so that an object that does
not pickle fails in the stage that made it (or, for an input item, in
stages[0]), with that stage's note, and not in a queue's feeder thread. The
current run's id is in shared memory; a worker drops a message of any other
run, and so does the parent, so nothing of an aborted run reaches the next
one. A worker marks itself busy, under a shared lock, only after it checked
the message's run id against the current one: once the parent has changed
the id under that lock, no worker starts an item of the old run, and "every
worker at rest" is "no busy mark". The queue in front of each stage holds
:func:`parpy._pipe_threads.room` items.

The feeder thread and the consumer live in the parent. The bound is the
threading backend's: a token of ``maxsize`` before each item is read, given
back when the consumer comes back for the next result. Every wait of the
consumer wakes at least every :data:`POLL` seconds, and checks every
:data:`LIVENESS_EVERY` seconds that no worker died. Exceptions come back
pickled with the worker's traceback text as ``__cause__``
(``multiprocessing.pool.RemoteTraceback``, as ``multiprocessing.pool``
does); one that does not survive pickling is replaced by an exception of a
class of the same name (derived from its nearest built-in exception class)
with the same message and notes.

Statistics: each worker adds its counters (items in and out, seconds busy,
waiting for input, waiting for room) to its own slots of shared arrays; a
snapshot sums them per stage, less their values when the run began. The
run's wall clock starts once its workers are ready.
"""

from __future__ import annotations

import builtins
import itertools
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import pickle
import queue
import signal
import threading
import time
import traceback
import weakref
from collections.abc import Iterator
from multiprocessing.pool import RemoteTraceback  # type: ignore[attr-defined]
from typing import Any

from parpy._support import fork as _fork
from parpy._support.processes import START_METHOD
from parpy.pipeline._handout import Handout, raise_outcome, room, take_token
from parpy.pipeline._stages import POLL, RawStage, RawStats, Stage

__all__ = ["ProcessRunner"]

# Seconds a run that stops early waits for busy workers before it ends them.
GRACE = 0.5
# Seconds between checks, while the consumer waits, that no worker died.
LIVENESS_EVERY = 0.2

_PROTOCOL = pickle.HIGHEST_PROTOCOL


# ctl: the current run's id (0: none) and the shutdown flag.
_RUN, _SHUTDOWN = 0, 1
# times: three per worker, then the monotonic time the current run began.
_BUSY, _BLOCKED_IN, _BLOCKED_OUT = 0, 1, 2


# ---- exceptions across processes -----------------------------------------------


def _rebuild_exception(exc: BaseException, text: str) -> BaseException:
    exc.__cause__ = RemoteTraceback(text)
    return exc


_STAND_INS: dict[tuple[str, str, str], type[BaseException]] = {}


def _stand_in_str(self: BaseException) -> str:
    return str(self.args[0]) if self.args else ""


def _rebuild_stand_in(
    module: str, qualname: str, base: str, message: str, notes: list[str], text: str
) -> BaseException:
    """An exception of a new class named as the one that did not pickle."""
    key = (module, qualname, base)
    cls = _STAND_INS.get(key)
    if cls is None:
        parent = getattr(builtins, base, Exception)
        if not (isinstance(parent, type) and issubclass(parent, BaseException)):
            parent = Exception
        namespace = {"__module__": module, "__qualname__": qualname, "__str__": _stand_in_str}
        cls = _STAND_INS[key] = type(qualname.rpartition(".")[2], (parent,), namespace)
    try:
        exc = cls(message)
    except Exception:  # a built-in base that takes other arguments
        namespace = {"__module__": module, "__qualname__": qualname, "__str__": _stand_in_str}
        cls = _STAND_INS[key] = type(qualname.rpartition(".")[2], (Exception,), namespace)
        exc = cls(message)
    for note in notes:
        exc.add_note(note)
    return _rebuild_exception(exc, text)


class _Remote:
    """Pickles as an exception that gets the remote traceback as its cause."""

    def __init__(self, exc: BaseException, text: str) -> None:
        self.exc = exc
        self.text = text

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild_exception, (self.exc, self.text)


class _RemoteStandIn(_Remote):
    def __reduce__(self) -> tuple[Any, ...]:
        exc = self.exc
        cls = type(exc)
        base = next((c.__name__ for c in cls.__mro__ if c.__module__ == "builtins"), "Exception")
        try:
            message = str(exc)
        except Exception:
            message = f"<{cls.__name__}: str() failed>"
        notes = [n for n in getattr(exc, "__notes__", ()) if isinstance(n, str)]
        module = cls.__module__ if isinstance(cls.__module__, str) else "builtins"
        return _rebuild_stand_in, (module, cls.__qualname__, base, message, notes, self.text)


def dump_error(exc: BaseException) -> bytes:
    """exc, pickled with its traceback text; replaced when it does not round-trip."""
    try:
        text = "".join(traceback.format_exception(exc))
    except BaseException:
        text = f"{type(exc).__qualname__} (its traceback could not be formatted)\n"
    text = f'\n"""\n{text}"""'
    try:
        data = pickle.dumps(_Remote(exc, text), _PROTOCOL)
        pickle.loads(data)
        return data
    except BaseException:
        pass
    try:
        return pickle.dumps(_RemoteStandIn(exc, text), _PROTOCOL)
    except BaseException:
        error = RuntimeError(f"{type(exc).__qualname__} raised in a worker could not be sent")
        return pickle.dumps(_Remote(error, text), _PROTOCOL)


def load_error(data: bytes) -> BaseException:
    try:
        exc = pickle.loads(data)
    except BaseException as error:  # it round-tripped in the worker; still, never hang on it
        exc = RuntimeError(f"an exception from a worker process could not be unpickled: {error!r}")
    if not isinstance(exc, BaseException):
        exc = RuntimeError(f"a worker process sent {exc!r} as its exception")
    return exc


# ---- the worker process --------------------------------------------------------


def _worker(
    index: int,
    slot: int,
    last: bool,
    func_data: bytes,
    inbox: Any,
    outbox: Any,
    results: Any,
    lock: Any,
    ctl: Any,
    state: Any,
    where: Any,
    ints: Any,
    times: Any,
) -> None:
    """A worker of stages[index], in its own process, until shutdown."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    for q in (inbox, outbox, results):
        q.cancel_join_thread()  # at shutdown, what is unsent is of no use
    parent = multiprocessing.parent_process()

    def orphaned() -> bool:
        return parent is not None and not parent.is_alive()

    def hold() -> bool:
        """Takes the shared lock; False if the parent went away meanwhile."""
        while not lock.acquire(timeout=1.0):
            if orphaned():
                return False
        return True

    loads, dumps, now = pickle.loads, pickle.dumps, time.monotonic
    t = 3 * slot
    clock = len(times) - 1
    func = None
    while True:
        began = now()
        try:
            message = inbox.get(timeout=POLL)
        except queue.Empty:
            if ctl[_SHUTDOWN] or orphaned():
                return
            if ctl[_RUN]:
                times[t + _BLOCKED_IN] += now() - max(began, times[clock])
            continue
        except (EOFError, OSError, ValueError):
            return  # the queue is gone: the parent went away
        if ctl[_RUN]:
            times[t + _BLOCKED_IN] += now() - max(began, times[clock])
        run, position, data = message
        del message
        if not hold():
            return
        try:
            if run != ctl[_RUN]:
                continue  # of a run that ended
            state[slot] = 1
        finally:
            lock.release()
        where[slot] = position
        ints[2 * slot] += 1
        began = now()
        try:
            if func is None:
                func = loads(func_data)
            data = dumps(func(loads(data)), _PROTOCOL)
        except BaseException as exc:
            times[t + _BUSY] += now() - began
            results.put((run, False, index, position, dump_error(exc)))
            del exc
            if not hold():
                return
            state[slot] = 0
            lock.release()
            continue
        finished = now()
        times[t + _BUSY] += finished - began
        message = (run, True, index, position, data) if last else (run, position, data)
        del data
        while True:
            try:
                outbox.put(message, timeout=POLL)
            except queue.Full:
                if ctl[_RUN] != run or ctl[_SHUTDOWN] or orphaned():
                    break  # the run ended: the result is dropped
            else:
                ints[2 * slot + 1] += 1
                break
        del message
        times[t + _BLOCKED_OUT] += now() - finished
        if not hold():
            return
        state[slot] = 0
        lock.release()


# ---- the parent's side ---------------------------------------------------------


class _Pool:
    """The worker processes, their queues and the shared counters."""

    def __init__(self, stages: tuple[Stage, ...], funcs: list[bytes], maxsize: int) -> None:
        ctx: Any = multiprocessing.get_context(START_METHOD)
        n = sum(s.workers for s in stages)
        self.stages = stages
        self.lock = ctx.Lock()
        self.ctl: Any = ctx.RawArray("q", 2)
        self.state: Any = ctx.RawArray("q", n)
        self.where: Any = ctx.RawArray("q", n)
        self.ints: Any = ctx.RawArray("q", 2 * n)
        self.times: Any = ctx.RawArray("d", 3 * n + 1)
        self.queues: list[Any] = [ctx.Queue(room(s, maxsize)) for s in stages]
        self.results: Any = ctx.Queue()
        self.procs: list[Any] = []
        self.stage_of: list[int] = []
        self.closed = False
        try:
            for index, stage in enumerate(stages):
                last = index == len(stages) - 1
                outbox = self.results if last else self.queues[index + 1]
                for w in range(stage.workers):
                    slot = len(self.procs)
                    args = (
                        *(index, slot, last, funcs[index], self.queues[index], outbox),
                        *(self.results, self.lock, self.ctl, self.state, self.where),
                        *(self.ints, self.times),
                    )
                    proc = ctx.Process(
                        target=_worker, args=args, name=f"parpy-pipeline-stage{index}-{w}"
                    )
                    proc.daemon = True
                    self.procs.append(proc)
                    self.stage_of.append(index)
                    proc.start()
        except BaseException:
            self.shutdown()
            raise

    def _set_run(self, run: int, timeout: float = 1.0) -> bool:
        if not self.lock.acquire(timeout=timeout):
            return False  # a worker died holding it
        try:
            self.ctl[_RUN] = run
        finally:
            self.lock.release()
        return True

    def at_rest(self) -> bool | None:
        """Whether no worker is busy; None when that cannot be known."""
        if not self.lock.acquire(timeout=1.0):
            return None
        try:
            return not any(self.state)
        finally:
            self.lock.release()

    def wait_rest(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            rest = self.at_rest()
            if rest or rest is None:
                return bool(rest)
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)

    def begin(self, run: int) -> tuple[list[int], list[float]]:
        """Starts a run (the workers are at rest); returns the counters' baseline."""
        baseline = (list(self.ints), list(self.times[:-1]))
        self.times[len(self.times) - 1] = time.monotonic()
        if not self._set_run(run):
            raise RuntimeError("parpy.Pipeline: the worker processes are not usable")
        return baseline

    def cancel(self) -> bool:
        return self._set_run(0)

    def dead(self) -> int | None:
        """The slot of a worker that exited, if any did."""
        if self.closed:
            return None
        for slot, proc in enumerate(self.procs):
            try:
                if proc.exitcode is not None:
                    return slot
            except ValueError:  # closed by shutdown() meanwhile
                return None
        return None

    def counters(self, baseline: tuple[list[int], list[float]]) -> tuple[RawStage, ...]:
        ints0, times0 = baseline
        ints, times = list(self.ints), list(self.times[:-1])
        rows = []
        slot = 0
        for stage in self.stages:
            counts = [0, 0]
            seconds = [0.0, 0.0, 0.0]
            for s in range(slot, slot + stage.workers):
                for k in range(2):
                    counts[k] += ints[2 * s + k] - ints0[2 * s + k]
                for k in range(3):
                    seconds[k] += max(0.0, times[3 * s + k] - times0[3 * s + k])
            slot += stage.workers
            rows.append(RawStage(*counts, *seconds))
        return tuple(rows)

    def shutdown(self) -> None:
        """Ends every worker and releases the queues; idempotent. A worker at
        rest ends within POLL; one still busy (its run already gave it GRACE
        to finish) is terminated."""
        if self.closed:
            return
        self.closed = True
        self.ctl[_RUN] = 0  # without the lock: a dead worker may hold it
        self.ctl[_SHUTDOWN] = 1
        deadline = time.monotonic() + 5 * POLL
        started = [p for p in self.procs if p.pid is not None]
        for slot, proc in enumerate(self.procs):
            if self.state[slot] and proc.pid is not None:
                proc.terminate()  # busy past its grace
        for proc in started:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in started:
            if proc.exitcode is None:
                proc.terminate()
        for proc in started:
            proc.join(5.0)
            if proc.exitcode is None:
                proc.kill()
                proc.join()
        for proc in self.procs:
            proc.close()
        # The parent puts only on the first queue: it takes back what no
        # worker took, so that the queue's feeder thread can end. (The other
        # queues have no thread here; their pipes close with the objects.)
        first = self.queues[0]
        drained = _drain(first, time.monotonic() + GRACE)
        first.close()
        if drained:
            first.join_thread()
        else:  # a worker was ended holding the queue's lock: leave it
            first.cancel_join_thread()


def _drain(q: Any, deadline: float) -> bool:
    while True:
        try:
            if q.qsize() == 0:
                return True
        except NotImplementedError:  # no sem_getvalue (macOS): best effort
            if q.empty():
                return True
        try:
            q.get(timeout=POLL)
        except queue.Empty:
            pass
        except (EOFError, OSError, ValueError):
            return False
        if time.monotonic() > deadline:
            return False


class _Run:
    """One run, on the parent's side."""

    def __init__(self, ident: int, pool: _Pool, maxsize: int) -> None:
        self.id = ident
        self.pool = pool
        self.stop = threading.Event()
        self.tokens = threading.Semaphore(maxsize)
        self.cond = threading.Condition(threading.Lock())
        self.lock = threading.Lock()
        self.sent = 0  # items put on the first stage's queue
        self.total: int | None = None  # items read, once the input ended
        self.error: tuple[BaseException, int | None, int] | None = None
        self.closed = False
        self.broken = False  # a worker died: the pool is ended with the run
        self.input_blocked = 0.0
        self.done = 0
        self.feeder: threading.Thread | None = None
        self.baseline = pool.begin(ident)
        self.started = time.monotonic()
        self.ended: float | None = None
        self.final: RawStats | None = None

    def fail(self, exc: BaseException, stage: int | None, position: int) -> None:
        """Keeps the run's error: the first, or one of a lower position."""
        with self.lock:
            if not self.closed and (self.error is None or position < self.error[2]):
                self.error = (exc, stage, position)
        self.stop.set()
        with self.cond:
            self.cond.notify_all()

    def feed(self, iterator: Iterator[Any]) -> None:
        """The feeder thread: a token, an item, pickled, onto the first queue."""
        stop, cond = self.stop, self.cond
        put, now = self.pool.queues[0].put, time.monotonic
        position = 0
        while True:
            if not take_token(self):
                return
            try:
                item = next(iterator)
            except StopIteration:
                with cond:
                    self.total = position
                    cond.notify_all()
                return
            except BaseException as exc:
                self.fail(exc, None, position)
                return
            try:
                message = (self.id, position, pickle.dumps(item, _PROTOCOL))
            except BaseException as exc:  # it cannot reach stages[0]
                self.fail(exc, 0, position)
                return
            del item
            began = now()
            while True:
                try:
                    put(message, timeout=POLL)
                except queue.Full:
                    if stop.is_set():
                        return
                except (ValueError, OSError, AssertionError):
                    return  # closed under us (close() from another thread)
                else:
                    break
            del message
            self.input_blocked += now() - began
            position += 1
            with cond:
                self.sent = position
                cond.notify_all()

    def snapshot(self) -> RawStats:
        if self.final is not None:
            return self.final
        ended = self.ended
        wall = (time.monotonic() if ended is None else ended) - self.started
        stages = self.pool.counters(self.baseline)
        return RawStats(wall, ended is None, stages, self.input_blocked)


class ProcessRunner:
    """Runs a Pipeline's stages on worker processes joined by multiprocessing queues."""

    def __init__(self, stages: tuple[Stage, ...], maxsize: int, ordered: bool) -> None:
        funcs = []
        for i, stage in enumerate(stages):
            try:
                funcs.append(pickle.dumps(stage.func, _PROTOCOL))
            except Exception as exc:
                raise TypeError(
                    f"backend='multiprocessing' needs stage functions that pickle: "
                    f"stages[{i}] ({stage.name}) does not: {exc}"
                ) from exc
        self._stages = stages
        self._funcs = funcs
        self._maxsize = maxsize
        self._ordered = ordered
        self._lock = threading.RLock()  # the pool's lifecycle
        self._pool: _Pool | None = None
        self._finalizer: weakref.finalize | None = None
        self._ids = itertools.count(1)
        self._run: _Run | None = None
        self._starting = False
        self._closed = False
        _fork.register(self)

    def _disown(self) -> None:
        """In a forked child, alone: the worker processes, their queues and the
        feeder are the parent's. They are left alone: never ended from here,
        not even by multiprocessing's exit handler, which would terminate them
        as children of this process; a run in progress counts as closed, and
        the next run starts a pool of the child's own."""
        self._lock = threading.RLock()
        if self._finalizer is not None:
            self._finalizer.detach()
        if self._pool is not None:
            children = multiprocessing.process._children  # type: ignore[attr-defined]
            children.difference_update(self._pool.procs)
        self._finalizer, self._pool = None, None
        run = self._run
        if run is not None and run.final is None:
            run.lock, run.cond = threading.Lock(), threading.Condition(threading.Lock())
            run.closed = True
            run.ended = time.monotonic()
            run.final = run.snapshot()

    def _ready_pool(self) -> _Pool:
        pool = self._pool
        if pool is not None and pool.dead() is not None:  # lost a worker between runs
            self._end_pool()
            pool = None
        if pool is None:
            pool = _Pool(self._stages, self._funcs, self._maxsize)
            self._pool = pool
            self._finalizer = weakref.finalize(self, pool.shutdown)
        return pool

    def _end_pool(self) -> None:
        finalizer, self._finalizer, self._pool = self._finalizer, None, None
        if finalizer is not None:
            finalizer()  # pool.shutdown(), once

    def run(self, iterator: Iterator[Any], total: int | None = None) -> Iterator[Any]:
        with self._lock:
            if self._closed:
                raise ValueError("Pipeline is closed")
            last = self._run
            if last is not None and last.final is None:
                self._finish(last)  # its end was interrupted (a second Ctrl-C)
            self._starting = True  # done reads 0, not the last run's count
            try:
                pool = self._ready_pool()
                try:
                    run = _Run(next(self._ids), pool, self._maxsize)
                except BaseException:
                    self._end_pool()
                    raise
                self._run = run
            finally:
                self._starting = False
        try:
            feeder = threading.Thread(
                target=run.feed, args=(iterator,), name="parpy-pipeline-feeder", daemon=True
            )
            run.feeder = feeder
            feeder.start()
            yield from self._collect(run)
        finally:
            self._finish(run)
        raise_outcome(run, self._stages)

    def _collect(self, run: _Run) -> Iterator[Any]:
        """The consumer: results of this run, in order or as they come."""
        pool, cond, handout = run.pool, run.cond, Handout(run, run.tokens, self._ordered)
        get, loads, now = pool.results.get, pickle.loads, time.monotonic
        last = len(self._stages) - 1
        received = 0
        check = now() + LIVENESS_EVERY
        while run.error is None and not run.closed and run.done != run.total:
            if received >= run.sent:  # nothing under way: wait for the feeder
                with cond:
                    if (
                        received >= run.sent
                        and run.total is None
                        and run.error is None
                        and not run.closed
                    ):
                        cond.wait(POLL)
                if run.total is not None and received >= run.total:
                    break  # (every result was handed out)
                continue
            if now() >= check:  # also while results come: a lost item is not waited for
                check = now() + LIVENESS_EVERY
                if self._check_workers(run):
                    break
            try:
                message = get(timeout=POLL)
            except queue.Empty:
                continue
            except (EOFError, OSError, ValueError):
                if run.closed:
                    break
                raise
            ident, ok, stage, position, data = message
            del message
            if ident != run.id:
                continue  # of an earlier run
            received += 1
            if not ok:
                run.fail(load_error(data), stage, position)
                break
            try:
                value = loads(data)
            except BaseException as exc:
                run.fail(exc, last, position)
                break
            del data
            yield from handout.add(position, value)

    def _check_workers(self, run: _Run) -> bool:
        """Fails the run if a worker died; returns whether one did."""
        pool = run.pool
        with self._lock:  # not while close() ends the pool
            slot = pool.dead()
        if slot is None:
            return False
        index = pool.stage_of[slot]
        proc = pool.procs[slot]
        run.broken = True
        run.fail(
            RuntimeError(
                f"a worker process of stages[{index}] ({self._stages[index].name}) "
                f"exited unexpectedly (exit code {proc.exitcode})"
            ),
            index,
            pool.where[slot],
        )
        return True

    def _finish(self, run: _Run) -> None:
        """Ends a run: its feeder stopped, its workers at rest (or ended)."""
        with self._lock:
            if run.final is not None:
                return
            run.ended = time.monotonic()
            complete = run.error is None and not run.closed and run.done == run.total
            run.stop.set()
            with run.cond:
                run.cond.notify_all()
            pool = run.pool
            rest = False
            if not pool.closed and not run.broken:
                # A run that ended well: its workers only finish their
                # bookkeeping. Else they drop what they hold within GRACE.
                if complete:
                    pool.wait_rest(GRACE)
                rest = pool.cancel() and pool.wait_rest(GRACE)
                if rest and run.error is not None:
                    self._gather_errors(run)
            feeder = run.feeder
            if feeder is not None and feeder is not threading.current_thread():
                while feeder.is_alive():
                    feeder.join(POLL)
            run.final = run.snapshot()
            if not rest and pool is self._pool:
                self._end_pool()

    @staticmethod
    def _gather_errors(run: _Run) -> None:
        """After a failure, the workers at rest: the items that were in a stage
        at the stop have failed or not, and their errors are on their way; the
        run keeps that of the lowest position."""
        while True:
            try:
                ident, ok, stage, position, data = run.pool.results.get(timeout=POLL)
            except (queue.Empty, EOFError, OSError, ValueError):
                return
            if ident == run.id and not ok:
                run.fail(load_error(data), stage, position)

    def snapshot(self) -> RawStats | None:
        run = self._run
        return None if run is None else run.snapshot()

    @property
    def done(self) -> int:
        run = self._run
        return 0 if run is None or self._starting else run.done

    def close(self) -> None:
        with self._lock:
            self._closed = True
            run = self._run
            if run is not None and run.final is None:
                with run.lock:
                    run.closed = True
                self._finish(run)
            self._end_pool()
