"""The "celery" backend of parpy.compare: Celery on a Redis broker.

A run sends the work as tasks of one generic task, :func:`run_chunk` (a
function over a chunk of items), and collects their results by task id, in
order. Without a broker, each worker count gets a ``redis-server`` of its own
on 127.0.0.1 (no persistence, a password of its own) and one ``celery
worker`` of that concurrency (prefork) of :mod:`parpy.comparison.celery_app`,
on a queue of its own; both are stopped after. With ``celery_broker=``, the
tasks go to the queue :data:`QUEUE` of that broker, to its running workers of
the app, at their total concurrency (:func:`concurrency`).

Messages are pickles, for the app's tasks only: the function must travel, as
to any worker process. A worker runs what its broker sends it, so the broker
is compare's own (loopback, with a password that only compare and its
worker know) or the user's. Tasks are acknowledged late and requeued when the
pool process running them is lost (killed), so every chunk still runs to
completion; a chunk that runs twice stores the same result under the same
task id, and the second is ignored. Interrupted, a run revokes what it queued.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import IO, Any

from parpy.comparison._shipping import _ready, _Shipped
from parpy.comparison._work import Call, Opened, _pool_chunksize, _Work

QUEUE = "parpy.compare"  # the queue of a user's workers (compare's own each get one)
TASK = "parpy.compare.run_chunk"
BROKER_VARIABLE = "PARPY_CELERY_BROKER"  # the broker of celery_app's workers
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"

_TIMEOUT = 2.0  # seconds to connect to a broker, or to hear from its workers
_ANSWER = 5.0  # seconds for a broker to answer a command
_START = 60.0  # seconds for a server or worker to come up
_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
_POLL = 0.5  # seconds between checks that the workers are still there
_SILENCE = 10.0  # seconds without a result before asking a user's workers


def run_chunk(func: Callable[[Any], Any], chunk: Sequence[Any]) -> list[Any]:
    """The task: ``func`` over a chunk of items."""
    return [func(x) for x in chunk]


def make_app(broker: str) -> Any:
    """A Celery app whose broker and result backend are ``broker``, with
    :func:`run_chunk` as :data:`TASK`; it connects on first use."""
    from celery import Celery  # type: ignore[import-untyped,unused-ignore]

    app = Celery("parpy.comparison.celery_app", broker=broker, backend=broker, set_as_current=False)
    app.conf.update(
        task_serializer="pickle",
        result_serializer="pickle",
        accept_content=["pickle"],
        result_accept_content=["pickle"],
        task_default_queue=QUEUE,
        # late acknowledgement: a task whose pool process is lost is requeued
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # each process reserves the task it runs
        worker_lost_wait=2.0,  # for the result of a lost process, before requeueing (10 s)
        # A worker lost altogether (its main process killed) leaves its tasks
        # unacknowledged: they are delivered again after visibility_timeout.
        # compare's chunks take seconds, and one that runs twice is ignored.
        broker_transport_options={
            "visibility_timeout": 300,
            "unacked_restore_interval": 10,
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": _TIMEOUT,
            "socket_timeout": _ANSWER,  # (more than a worker's 1 s BRPOP)
        },
        # a broker that does not answer is an error within seconds, not a retry loop
        broker_connection_retry_on_startup=False,
        redis_socket_connect_timeout=_TIMEOUT,
        redis_socket_timeout=_ANSWER,
        task_remote_tracebacks=True,  # an error keeps the worker's frames (with tblib)
        result_expires=3600,  # (on a user's broker, results left by an interrupted run)
        task_publish_retry=False,
    )
    app.task(name=TASK)(run_chunk)
    return app


# ---- processes compare starts ------------------------------------------------


def _popen(args: list[str], log: IO[bytes], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start a process in a session of its own (a terminal's Ctrl-C reaches
    compare, which stops it), its output into ``log``."""
    return subprocess.Popen(
        args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
    )


def _stop(proc: subprocess.Popen[bytes], stop: int = signal.SIGTERM) -> None:
    """Signal ``stop``, then after _GRACE seconds SIGKILL to its whole process
    group (a worker's pool processes too); returns once it is gone."""
    try:
        if proc.poll() is None:
            proc.send_signal(stop)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(_GRACE)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _tail(log: IO[bytes], size: int = 2000) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-size:].strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start_redis(stack: ExitStack) -> str:
    """Start redis-server on 127.0.0.1 and a free port, with no persistence
    and a password of its own; return its URL once it answers PING."""
    import redis

    server = shutil.which("redis-server")
    if server is None:
        raise FileNotFoundError(
            'the backend "celery" starts redis-server, which is not installed (on Debian: '
            "apt-get install redis-server); or give celery_broker= a running broker"
        )
    password = secrets.token_hex(16)
    for _ in range(3):  # another process may take the free port first
        port = _free_port()
        log = stack.enter_context(tempfile.TemporaryFile())
        # the password comes on stdin: a command line is public
        proc = _popen(
            [server, "-", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
             "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning"],
            log,
            stdin=subprocess.PIPE,
        )  # fmt: skip
        stack.callback(_stop, proc)
        assert proc.stdin is not None
        proc.stdin.write(f"requirepass {password}\n".encode())
        proc.stdin.close()
        client = redis.Redis(
            "127.0.0.1", port, password=password, socket_timeout=_TIMEOUT,
            socket_connect_timeout=_TIMEOUT,
        )  # fmt: skip
        deadline = time.monotonic() + _START
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                client.ping()
            except redis.ConnectionError:
                time.sleep(0.02)
                continue
            client.close()
            return f"redis://:{password}@127.0.0.1:{port}/0"
        client.close()
        if proc.poll() is None:
            raise TimeoutError(f"redis-server did not answer within {_START:g} s: {_tail(log)}")
    raise RuntimeError(f"redis-server did not start: {_tail(log)}")


def _pythonpath() -> str:
    """This process's sys.path, for a worker to import what it imports (as a
    multiprocessing child does): parpy, and the modules of the function."""
    return os.pathsep.join(os.path.abspath(p) if p else os.getcwd() for p in sys.path)


def _start_worker(broker: str, queue: str, workers: int, stack: ExitStack) -> _Worker:
    """Start ``celery worker`` of celery_app, of concurrency ``workers`` on ``queue``."""
    log = stack.enter_context(tempfile.TemporaryFile())
    env = {
        **os.environ,
        BROKER_VARIABLE: broker,
        "PYTHONPATH": _pythonpath(),
        # Celery refuses to run pickles as root: only compare and its worker
        # know this broker's password, and the worker runs what compare would.
        "C_FORCE_ROOT": "1",
    }
    proc = _popen(
        [sys.executable, "-m", "celery", "-A", "parpy.comparison.celery_app", "worker",
         "--pool", "prefork", "--concurrency", str(workers), "--queues", queue,
         "--hostname", f"{queue}@%h", "--without-gossip", "--without-mingle",
         "--without-heartbeat", "--loglevel", "WARNING"],
        log,
        env=env,
    )  # fmt: skip
    # SIGQUIT: a cold shutdown, not waiting for tasks (a warm one takes seconds)
    stack.callback(_stop, proc, signal.SIGQUIT)
    return _Worker(proc, log)


@dataclass
class _Worker:
    proc: subprocess.Popen[bytes]
    log: IO[bytes]

    def check(self, waited: float) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"the celery worker that compare started exited with code {self.proc.returncode}"
                f": {_tail(self.log)}"
            )


# ---- a user's broker ---------------------------------------------------------


def _connected(app: Any, broker: str) -> None:
    """Raise the broker's connection error, with a note, unless it answers."""
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=0, timeout=_TIMEOUT)
    except Exception as exc:
        exc.add_note(f"parpy.compare: the Celery broker at {_safe(broker)} does not answer")
        raise


def _safe(url: str) -> str:
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url))


def _consumers(app: Any) -> dict[str, int]:
    """The workers that consume :data:`QUEUE`, and the concurrency of each."""
    inspect = app.control.inspect(timeout=_TIMEOUT)
    queues = inspect.active_queues() or {}
    names = [node for node, qs in queues.items() if any(q["name"] == QUEUE for q in qs)]
    if not names:
        return {}
    stats = app.control.inspect(names, timeout=_TIMEOUT).stats() or {}
    return {node: int(stats[node]["pool"]["max-concurrency"]) for node in names if node in stats}


def concurrency(broker: str) -> int:
    """The tasks that the workers at ``broker`` run at once, in all.

    Raises the broker's connection error if it does not answer, and
    RuntimeError if no worker of celery_app consumes :data:`QUEUE` there."""
    app = make_app(broker)
    try:
        _connected(app, broker)
        workers = _consumers(app)
    finally:
        app.close()
    if not workers:
        raise RuntimeError(
            f"no Celery worker consumes the queue {QUEUE!r} at {_safe(broker)}: start one with "
            f"{BROKER_VARIABLE}={_safe(broker)} celery -A parpy.comparison.celery_app worker"
        )
    return sum(workers.values())


@dataclass
class _Users:
    """A user's workers: asked whether they are still there once a result
    is awaited for ``_SILENCE`` seconds, and then every ``_SILENCE`` s."""

    app: Any
    asked: float = 0.0

    def check(self, waited: float) -> None:
        if waited > _SILENCE and time.monotonic() - self.asked > _SILENCE:
            if not _consumers(self.app):
                raise RuntimeError(f"no Celery worker consumes the queue {QUEUE!r} any more")
            self.asked = time.monotonic()


# ---- running the work --------------------------------------------------------


@dataclass
class _Celery:
    app: Any  # the client
    queue: str
    workers: _Worker | _Users  # check(): raises if they are gone


def _collect(handle: _Celery, result: Any, deadline: float | None) -> Any:
    """``result``'s value once it comes, checking that the workers are still there."""
    from celery.exceptions import TimeoutError as CeleryTimeout  # type: ignore[import-untyped,unused-ignore]

    start = time.monotonic()
    while True:
        try:
            return result.get(timeout=_POLL)
        except CeleryTimeout:
            handle.workers.check(time.monotonic() - start)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"the Celery workers did not answer within {_START:g} s"
                ) from None


def _run(
    handle: _Celery,
    func: Callable[[Any], Any],
    items: Sequence[Any],
    chunksize: int,
    deadline: float | None = None,
) -> list[Any]:
    """``func`` over ``items``, sent as tasks of ``chunksize`` items; their
    results in order. Interrupted, it revokes the tasks it has not collected."""
    app = handle.app
    sent: list[Any] = []
    done = 0
    try:
        with app.producer_or_acquire() as producer:
            for start in range(0, len(items), chunksize):
                chunk = items[start : start + chunksize]
                sent.append(
                    app.send_task(TASK, (func, chunk), queue=handle.queue, producer=producer)
                )
        results: list[Any] = []
        for result in sent:
            results.extend(_collect(handle, result, deadline))
            done += 1
        return results
    except BaseException:
        left = sent[done:]
        with contextlib.suppress(Exception):
            app.control.revoke([r.id for r in left])
            # no longer awaited: unsubscribed while the broker is there
            for result in left:
                app.backend.remove_pending_result(result)
        raise


def open_celery(work: _Work, workers: int) -> Opened:
    stack = ExitStack()
    try:
        if work.celery_broker is None:
            broker = _start_redis(stack)
            queue = f"{QUEUE}.{secrets.token_hex(4)}"
            watch: _Worker | _Users = _start_worker(broker, queue, workers, stack)
            app = make_app(broker)
            work.meta.setdefault(
                "celery",
                "redis-server on 127.0.0.1 and a celery worker (prefork) of each concurrency",
            )
        else:
            broker, queue = work.celery_broker, QUEUE
            app = make_app(broker)
            watch = _Users(app)
            work.meta.setdefault("celery", f"the workers at {_safe(broker)}")
        stack.callback(app.close)
        handle = _Celery(app, queue, watch)
        # up once it has run a task; the client's connections are open then
        _run(handle, _ready, range(workers), 1, time.monotonic() + _START)
    except BaseException:
        stack.close()
        raise
    return handle, stack.close


def call_celery(handle: Any, work: _Work, workers: int, options: Mapping[str, Any]) -> Call:
    chunksize = options.get("chunksize") or _pool_chunksize(len(work.items), workers)
    return functools.partial(_run, handle, _Shipped(work.python), work.items, chunksize)
