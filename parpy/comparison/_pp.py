"""The "pp" backend of parpy.compare: Parallel Python's job server.

At each swept worker count ``k`` compare opens a ``pp.Server`` and sends it
the items in chunks sized like process-pool's (about four per worker):

- By default (``pp_servers`` 0) the server runs ``k`` local worker
  processes (``ncpus=k``), which it talks to over pipes.
- With ``pp_servers=N`` compare starts ppservers (``python -m pp.cli``) on
  127.0.0.1, on free ports, with a random secret, and deals the ``k``
  workers out over them (``-w``: ``k // N``, one more for the first
  ``k % N``; a server that would get none is not started), so that ``k``
  processes still run the work; the local server runs none (``ncpus=0``)
  and sends every chunk over TCP. The ppservers are stopped (with their
  workers: each is a process group of its own) when the comparison ends.
- With the addresses of running ppservers, and their ``pp_secret``, the
  local server runs none either: the servers run the work on the workers
  they were started with, and ``k`` only sizes the chunks.

pp is always given its servers' addresses: never its auto-discovery, which
broadcasts beyond the machine.

pp ships a function as its source, not as a pickle, so what it runs is
:func:`_pp_chunk`, a function with no dependencies: it unpickles the work
and its chunk (the work as :class:`~parpy.comparison._shipping._Shipped`,
so a worker that cannot import it reports :class:`WorkerLoadError`, and
compare skips the backend) and returns the pickle of the results, or of the
exception the work raised with its traceback.

Failures: pp gives a chunk whose ppserver dies (its connection drops) to
the other servers, so every result still arrives, once; the report's meta
then names the server lost. With every server gone the chunks left could
never run: compare raises RuntimeError instead of waiting. A local worker
that dies fails its chunk, and compare raises pp's message.
"""

from __future__ import annotations

import functools
import os
import pickle
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import IO, Any

from parpy.comparison._shipping import WorkerLoadError, _Shipped
from parpy.comparison._work import Call, Opened, _pool_chunksize, _Work

_HOST = "127.0.0.1"  # where compare's own ppservers listen
_CONNECT_TIMEOUT = 10.0  # seconds for a ppserver to listen, and for pp to connect to it
_POLL = 0.5  # seconds between checks, while waiting for results, that a ppserver is left
_STOP_TIMEOUT = 5.0  # seconds for a ppserver to exit on SIGTERM, then on SIGKILL
# A ppserver that compare started exits by itself this long after its last
# client left: if compare is killed before it can stop them.
_IDLE_EXIT = 60


def _pp_chunk(blob):
    # Runs in a pp worker, which gets this function as its source (no
    # annotations, no globals). ``blob``: the pickle of (function, items).
    import pickle
    import traceback

    try:
        func, items = pickle.loads(blob)
    except Exception as exc:
        return pickle.dumps(("load", f"{type(exc).__name__}: {exc}"))
    try:
        return pickle.dumps(("ok", [func(x) for x in items]))
    except Exception as exc:
        text = traceback.format_exc()
        try:
            return pickle.dumps(("raised", exc, text))
        except Exception:  # an exception that does not pickle: its traceback alone
            return pickle.dumps(("raised", None, text))


@dataclass
class _Cluster:
    """An open pp.Server, and the ppservers it sends chunks to (none: local workers)."""

    server: Any  # pp.Server
    nodes: dict[str, subprocess.Popen[bytes] | None]  # "host:port": the process compare started

    def lost(self) -> list[str]:
        """The ppservers gone: exited, or with no connection left, each with why."""
        gone = []
        for address, proc in self.nodes.items():
            if proc is not None and proc.poll() is not None:
                gone.append(f"{address}: {_exit_text(proc.returncode)}")
            elif not self.server.autopp_list.get(address):
                gone.append(f"{address}: connection lost")
        return gone


def _exit_text(status: int) -> str:
    if status < 0:
        return f"killed by {signal.Signals(-status).name}"
    return f"exited with status {status}"


# ---- ppservers on 127.0.0.1 --------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((_HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _python_path() -> str:
    """PYTHONPATH for a ppserver, as pp.Server makes it for its own workers:
    theirs then imports the work from where this process does (parpy from a
    checkout, the work's module)."""
    given = os.environ.get("PYTHONPATH")
    dirs = [*(given.split(os.pathsep) if given else []), os.getcwd(), *sys.path]
    return os.pathsep.join(dict.fromkeys(d for d in dirs if d))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stops a ppserver and its workers (its process group): SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:  # the whole group is gone
            break
        try:
            proc.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            continue
    proc.wait(_STOP_TIMEOUT)


def _start_ppserver(workers: int, secret: str, stack: ExitStack) -> tuple[str, Any, IO[bytes]]:
    """Starts a ppserver of ``workers`` workers on 127.0.0.1; ``stack`` stops it.
    Returns its address, its process and the file of its stderr."""
    port = _free_port()
    log = stack.enter_context(tempfile.TemporaryFile())
    # The secret goes in the environment: a command line is visible to every user.
    env = {**os.environ, "PP_SECRET": secret, "PYTHONPATH": _python_path()}
    command = [sys.executable, "-m", "pp.cli", "-q", "-i", _HOST, "-p", str(port)]
    proc = subprocess.Popen(
        [*command, "-w", str(workers), "-t", str(_IDLE_EXIT)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=env,
        start_new_session=True,  # a group to stop; a terminal's Ctrl-C goes to compare
    )
    stack.callback(_stop, proc)
    return f"{_HOST}:{port}", proc, log


def _wait_listening(address: str, proc: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + _CONNECT_TIMEOUT
    while True:
        if proc.poll() is not None:
            log.seek(0)
            said = log.read().decode(errors="replace").strip()
            raise RuntimeError(
                f"the ppserver for {address} {_exit_text(proc.returncode)} before it listened"
                + (f": {said}" if said else "")
            )
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the ppserver for {address} did not listen within {_CONNECT_TIMEOUT:g} s"
                ) from None
            time.sleep(0.02)


def _wait_connected(cluster: _Cluster) -> None:
    """Waits until pp has its connections to every ppserver (two per worker:
    pp's own and its reserve), so that start-up holds them."""
    deadline = time.monotonic() + _CONNECT_TIMEOUT
    while True:
        ncpus = cluster.server.get_active_nodes()
        waiting = [
            a
            for a in cluster.nodes
            if not ncpus.get(a) or cluster.server.autopp_list.get(a, 0) < 2 * ncpus[a]
        ]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"pp could not connect to the ppserver at {', '.join(waiting)} within "
                f"{_CONNECT_TIMEOUT:g} s: is it running there, with pp_secret as its secret?"
            )
        time.sleep(0.01)


def _restore_pythonpath(saved: str | None) -> None:
    # pp.Server sets PYTHONPATH for its workers in this process's environment.
    if saved is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = saved


# ---- the backend -------------------------------------------------------------


def open_pp(work: _Work, workers: int) -> Opened:
    """Opens a pp.Server for ``workers`` workers, local or on ppservers (see
    the module's docstring); returns it and how to close it (and the
    ppservers compare started)."""
    import pp

    with ExitStack() as stack:
        nodes: dict[str, subprocess.Popen[bytes] | None] = {}
        secret = work.pp_secret
        if isinstance(work.pp_servers, int) and work.pp_servers:
            secret = secrets.token_hex(16)
            count = work.pp_servers
            shares = [workers // count + (i < workers % count) for i in range(count)]
            started = [_start_ppserver(share, secret, stack) for share in shares if share]
            for address, proc, log in started:
                _wait_listening(address, proc, log)
                nodes[address] = proc
            work.meta["pp"] = (
                f"the workers dealt over up to {count} ppservers on {_HOST} that compare starts "
                "(pp.Server(ncpus=0): every chunk over TCP)"
            )
        elif isinstance(work.pp_servers, tuple):
            for address in work.pp_servers:
                host, _, port = address.rpartition(":")
                nodes[f"{host}:{int(port)}"] = None
            work.meta["pp"] = (
                f"the ppservers at {', '.join(nodes)}, on their own workers (the swept count "
                "sizes the chunks); pp.Server(ncpus=0): every chunk over TCP"
            )
        else:
            work.meta["pp"] = "pp.Server(ncpus=k): k local worker processes, over pipes"
        stack.callback(_restore_pythonpath, os.environ.get("PYTHONPATH"))
        server = pp.Server(ncpus=0 if nodes else workers, ppservers=tuple(nodes), secret=secret)
        stack.callback(server.destroy)
        cluster = _Cluster(server, nodes)
        _wait_connected(cluster)
        close = stack.pop_all().close
    return cluster, close


def call_pp(handle: Any, work: _Work, workers: int, options: Mapping[str, Any]) -> Call:
    chunksize = options.get("chunksize") or _pool_chunksize(len(work.items), workers)
    return functools.partial(_run, handle, work, workers, chunksize)


def _run(cluster: _Cluster, work: _Work, workers: int, chunksize: int) -> list[Any]:
    """One run: every chunk submitted, then the results in order."""
    shipped = _Shipped(work.python)
    done = threading.Semaphore(0)

    def finished(result: object) -> None:  # pp's callback, in its thread
        done.release()

    jobs = [
        cluster.server.submit(
            _pp_chunk,
            (pickle.dumps((shipped, work.items[i : i + chunksize]), pickle.HIGHEST_PROTOCOL),),
            callback=finished,
        )
        for i in range(0, len(work.items), chunksize)
    ]
    for _ in jobs:
        while not done.acquire(timeout=_POLL):
            _check_servers(cluster, jobs)
    lost = cluster.lost()
    if lost:
        noted = work.meta.get("pp_lost")
        entry = f"{'; '.join(lost)} (at {workers} workers)"
        if noted is None or entry not in noted:
            work.meta["pp_lost"] = f"{noted}; {entry}" if noted else entry
    results: list[Any] = []
    for job in jobs:
        results.extend(_results(job(raw_result=True)))
    return results


def _check_servers(cluster: _Cluster, jobs: list[Any]) -> None:
    """Raise RuntimeError if every ppserver is gone with chunks left, which
    then never run (pp would wait for a server forever)."""
    if not cluster.nodes:
        return
    lost = cluster.lost()
    left = sum(not job.finished for job in jobs)
    if left and len(lost) == len(cluster.nodes):
        raise RuntimeError(
            f"pp: every ppserver is gone ({'; '.join(lost)}): {left} of the run's {len(jobs)} "
            "chunks are left with nothing to run them"
        )


def _results(sresult: bytes) -> list[Any]:
    """A chunk's results from what pp returned; raises what the work raised."""
    value, output = pickle.loads(sresult)
    if value is None:  # pp's own failure (a worker died), in its captured output
        raise RuntimeError(f"pp: {output.strip() or 'a chunk returned no result'}")
    status, *rest = pickle.loads(value)
    if status == "load":
        raise WorkerLoadError(f"a pp worker could not load the function: {rest[0]}")
    if status == "raised":
        exc, text = rest
        if exc is None:
            exc = RuntimeError("the work raised an exception that does not pickle")
        exc.add_note(f"parpy.compare: raised in a pp worker, where:\n{text.rstrip()}")
        raise exc
    results: list[Any] = rest[0]
    return results
