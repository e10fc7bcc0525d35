"""parpy.compare's "pp" backend: Parallel Python's job server, on its local
workers, on ppservers that compare starts on 127.0.0.1, and on ppservers
the tests start there themselves; a server killed mid-batch, Ctrl-C, and
bad options."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterable, Iterator

import pytest
from _util import child_env

import parpy
from parpy.comparison import WORKLOADS, _pp

pytest.importorskip("pp", reason="the pp backend needs Parallel Python")
psutil = pytest.importorskip("psutil")

NS = list(range(2_000, 4_000, 100))  # 20 items of the book's loop
PAGES = WORKLOADS["crawl"].items(6)

# Work for the workers, in a module of its own that they import: ``slow``
# leaves a file named by its process id in MARKS and sleeps, so that a test
# knows when a worker is running a chunk; ``Fails`` raises, but only in
# another process than the one that made it (serial runs it fine);
# ``OnlyHere`` cannot be unpickled in another process.
WORK = """
import os
import time

MARKS = {marks!r}


def slow(x):
    open(os.path.join(MARKS, str(os.getpid())), "w").close()
    time.sleep(0.2)
    return x * x


class Fails:
    def __init__(self):
        self.pid = os.getpid()

    def __call__(self, x):
        if os.getpid() != self.pid and x == 3:
            raise ValueError(f"no {{x}} here")
        return x


def _rebuild(pid):
    if os.getpid() != pid:
        raise ImportError("only in the process that made it")
    return OnlyHere()


class OnlyHere:
    def __call__(self, x):
        return x

    def __reduce__(self):
        return (_rebuild, (os.getpid(),))
"""


@pytest.fixture
def work(tmp_path, monkeypatch):
    """The module ``ppwork`` (on sys.path, which pp gives its workers), and its MARKS."""
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "ppwork.py").write_text(WORK.format(marks=str(marks)))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ppwork", raising=False)
    import ppwork

    yield ppwork
    sys.modules.pop("ppwork", None)


def descendants(pid: int | None = None) -> set[int]:
    return {p.pid for p in psutil.Process(pid).children(recursive=True)}


def assert_gone(pids: set[int]) -> None:
    procs = [psutil.Process(pid) for pid in pids if psutil.pid_exists(pid)]
    _, alive = psutil.wait_procs(procs, timeout=30)
    assert alive == [], [p.cmdline() for p in alive]


def pp_processes(pid: int | None = None) -> dict[int, list[str]]:
    """pp's processes below a process (this one by default): ppservers and
    workers, each with its command line."""
    found = {}
    try:
        below = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return found
    for p in below:
        try:
            command = p.cmdline()
        except psutil.Error:  # gone, or a zombie
            continue
        if "pp.cli" in command or "pp._worker" in command:
            found[p.pid] = command
    return found


@contextlib.contextmanager
def every_pp_process(pid: int | None = None) -> Iterator[dict[int, list[str]]]:
    """Every pp process that appeared below ``pid`` during the block (a
    ppserver's worker may outlive it, no longer below us); none may be left
    after it."""
    before = set(pp_processes(pid))
    seen: dict[int, list[str]] = {}
    stop = threading.Event()

    def watch() -> None:
        while True:
            seen.update((p, c) for p, c in pp_processes(pid).items() if p not in before)
            if stop.wait(0.01):
                return

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield seen
    finally:
        stop.set()
        watcher.join(timeout=30)
    assert_gone(set(seen))


def ppserver_ports(seen: dict[int, list[str]]) -> dict[int, list[str]]:
    """The ppservers among pp's processes, by port (a ppserver's child seen
    between its fork and its exec has the same command line)."""
    return {int(c[c.index("-p") + 1]): c for c in seen.values() if "pp.cli" in c}


def running(marks: str, pids: Iterable[int]) -> set[int]:
    """Of ``pids``, those that have started ``slow`` on an item."""
    return {int(name) for name in os.listdir(marks)} & set(pids)


# pp, and beside it a job per item, as the material submits them, at 1 and 2 workers
EVERY_PP = {(b, w) for b in ("pp", "pp[chunksize=1]") for w in (1, 2)}


def rows(report: parpy.Report) -> set[tuple[str, int]]:
    return {(t.backend, t.workers) for t in report.timings}


# ---- local workers, and ppservers on loopback ----------------------------------


@pytest.mark.parametrize("servers", [0, 2], ids=["local", "two-ppservers"])
def test_both_workloads_give_serials_results(servers):
    pythonpath = os.environ.get("PYTHONPATH")
    with every_pp_process() as seen:
        for workload, items in (("iterative", NS), ("crawl", PAGES)):
            report = parpy.compare(workload, items, backends="pp", workers=[1, 2], repeat=1,
                                   warmup=0, pp_servers=servers)  # fmt: skip
            # (results that differ from serial's raise MismatchError)
            assert rows(report) == {("serial", 1), *EVERY_PP}
            assert not report.skipped
            assert all(t.startup > 0 for t in report.timings if t.backend == "pp")
            assert ("ppservers on 127.0.0.1" in report.meta["pp"]) == bool(servers)
            assert "pp_lost" not in report.meta
    # one ppserver for 1 worker and two for 2, for each workload
    assert len(ppserver_ports(seen)) == (6 if servers else 0)
    assert os.environ.get("PYTHONPATH") == pythonpath  # (pp.Server changes it)


def test_the_workers_are_dealt_over_the_ppservers():
    # 3 workers over 2 ppservers: -w 2 and -w 1; 1 worker: one ppserver only.
    with every_pp_process() as seen:
        parpy.compare(parpy.fib, list(range(6)), backends="pp", workers=[1, 3], repeat=1,
                      warmup=0, pp_servers=2)  # fmt: skip
    servers = ppserver_ports(seen).values()
    assert sorted(int(command[command.index("-w") + 1]) for command in servers) == [1, 1, 2]
    for command in servers:
        assert command[command.index("-i") + 1] == "127.0.0.1" and "-a" not in command


# ---- ppservers the test starts: given addresses ----------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            assert time.monotonic() < deadline, f"no ppserver on port {port} after {timeout} s"
            time.sleep(0.05)


@pytest.fixture
def cluster():
    """Two ppservers of one worker each on 127.0.0.1: (their addresses, secret, processes)."""
    secret = "a-test-secret"
    env = dict(child_env(), PP_SECRET=secret)
    ports = [free_port(), free_port()]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pp.cli", "-q", "-i", "127.0.0.1", "-p", str(port), "-w", "1"],
            env=env,
            start_new_session=True,
        )
        for port in ports
    ]
    try:
        for port in ports:
            listening(port, timeout=30)
        yield [f"127.0.0.1:{port}" for port in ports], secret, procs
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the server and its workers
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)


def test_given_ppservers_run_both_workloads(cluster):
    addresses, secret, _ = cluster
    for workload, items in (("iterative", NS), ("crawl", PAGES)):
        report = parpy.compare(workload, items, backends="pp", workers=[1, 2], repeat=1,
                               warmup=0, pp_servers=addresses, pp_secret=secret)  # fmt: skip
        assert rows(report) == {("serial", 1), *EVERY_PP}
        assert all(a in report.meta["pp"] for a in addresses)


def test_a_wrong_secret_is_a_clear_error_within_seconds(cluster, monkeypatch):
    addresses, _, _ = cluster
    monkeypatch.setattr(_pp, "_CONNECT_TIMEOUT", 2.0)
    started = time.monotonic()
    with (
        every_pp_process(),
        pytest.raises(RuntimeError, match="pp could not connect to the ppserver at 127.0.0.1"),
    ):
        parpy.compare(parpy.fib, [1, 2], backends="pp", pp_servers=addresses, pp_secret="wrong")
    assert time.monotonic() - started < 30


# ---- failures --------------------------------------------------------------------


def kill_a_busy(kind: str, work, killed: list[int], stop: threading.Event) -> None:
    """SIGKILLs the first ppserver whose worker runs ``slow`` (``kind``
    "pp.cli"), or the first local pp worker that does ("pp._worker")."""
    while not stop.wait(0.01):
        for pid, command in pp_processes().items():
            if kind not in command:
                continue
            try:
                workers = (
                    [p.pid for p in psutil.Process(pid).children()]
                    if "pp.cli" in command
                    else [pid]
                )
            except psutil.Error:
                continue
            if running(work.MARKS, workers):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return


def compare_killing(kind: str, work, servers: int) -> tuple[list[int], parpy.Report]:
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=kill_a_busy, args=(kind, work, killed, stop))
    killer.start()
    try:
        with every_pp_process():
            return killed, parpy.compare(work.slow, list(range(6)), backends="pp", workers=[2],
                                         repeat=1, warmup=0, pp_servers=servers)  # fmt: skip
    finally:
        stop.set()
        killer.join(timeout=30)


def test_a_ppserver_killed_mid_batch_has_its_chunks_run_by_the_other(work):
    killed, report = compare_killing("pp.cli", work, servers=2)
    assert len(killed) == 1
    # every result, checked against serial's, chunked and a job per item
    assert rows(report) == {("serial", 1), ("pp", 2), ("pp[chunksize=1]", 2)}
    assert "killed by SIGKILL (at 2 workers)" in report.meta["pp_lost"]


def test_with_every_ppserver_killed_compare_raises_instead_of_waiting(work):
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="every ppserver is gone .*killed by SIGKILL") as caught:
        compare_killing("pp.cli", work, servers=1)
    assert time.monotonic() - started < 60
    assert "pp on 2 workers raised this" in caught.value.__notes__[-1]


def test_a_local_worker_killed_mid_batch_fails_its_chunk_with_pps_message(work):
    # pp restarts the worker but does not run the chunk again.
    with pytest.raises(RuntimeError, match="pp: error: the local worker failed to complete"):
        compare_killing("pp._worker", work, servers=0)


def test_an_exception_in_a_worker_keeps_its_traceback(work):
    with pytest.raises(ValueError, match="no 3 here") as caught:
        parpy.compare(work.Fails(), list(range(6)), backends="pp", workers=[2], repeat=1)
    notes = "\n".join(caught.value.__notes__)
    assert "raised in a pp worker" in notes and "in __call__" in notes
    assert "pp on 2 workers raised this" in notes


def test_a_function_the_workers_cannot_load_is_skipped(work):
    report = parpy.compare(work.OnlyHere(), list(range(4)), backends="pp", workers=[1], repeat=1)
    assert rows(report) == {("serial", 1)}
    assert [skip.backend for skip in report.skipped] == ["pp", "pp[chunksize=1]"]
    assert all("only in the process that made it" in skip.reason for skip in report.skipped)


CTRL_C = """
import parpy
import ppwork

parpy.compare(ppwork.slow, list(range(6)), backends="pp", workers=[2], repeat=20, warmup=0,
              pp_servers={servers})
"""


@pytest.mark.parametrize("servers", [0, 2], ids=["local", "two-ppservers"])
def test_ctrl_c_stops_the_run_and_leaves_no_process(work, servers):
    env = child_env()
    env["PYTHONPATH"] += os.pathsep + os.path.dirname(work.__file__)
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CTRL_C.format(servers=servers))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        with every_pp_process(child.pid) as seen:
            deadline = time.monotonic() + 60
            while not running(work.MARKS, seen):  # until a pp worker runs a chunk
                assert child.poll() is None, child.communicate(timeout=30)
                assert time.monotonic() < deadline, "no pp worker ran a chunk within 60 s"
                time.sleep(0.01)
            everything = descendants(child.pid)
            child.send_signal(signal.SIGINT)
            _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=30)
    assert child.returncode != 0 and "KeyboardInterrupt" in err
    # pp's workers (and ppservers) were there...
    assert len(ppserver_ports(seen)) == servers
    assert sum("pp._worker" in command for command in seen.values()) >= 2
    assert_gone(everything)  # ...and neither they nor any other process is left


# ---- the command line, and bad options ------------------------------------------


def test_cli_runs_pp_on_two_ppservers():
    command = [sys.executable, "-m", "parpy", "compare", "iterative", "--backends", "pp",
               "--pp-servers", "2", "--workers", "1,2", "--repeat", "1", "--count", "20",
               "--no-progress"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=child_env())
    assert done.returncode == 0, done.stderr
    table = [line.split()[:2] for line in done.stdout.splitlines()]
    assert ["pp", "1"] in table and ["pp", "2"] in table
    assert "ppservers on 127.0.0.1" in done.stdout


@pytest.mark.parametrize(
    ("servers", "secret", "error", "match"),
    [
        (-1, None, ValueError, "pp_servers must be >= 0"),
        (True, None, TypeError, "not bool"),
        ("127.0.0.1", "s", ValueError, "is not host:port"),
        ("127.0.0.1:0", "s", ValueError, "is not host:port"),
        ("127.0.0.1:65536", "s", ValueError, "is not host:port"),
        ("[::1]:60000", "s", ValueError, "is not host:port"),
        ("*:60000", "s", ValueError, "auto-discovery is never used"),
        ("192.168.1.*:60000", "s", ValueError, "auto-discovery is never used"),
        ([60000], "s", TypeError, "an address is a str"),
        ("127.0.0.1:60000", None, ValueError, "needs their pp_secret"),
        (1, 42, TypeError, "pp_secret must be a str"),
    ],
)
def test_bad_pp_options_are_refused_before_anything_starts(servers, secret, error, match):
    seen = []

    def record(x):
        seen.append(x)
        return x

    before = descendants()
    with pytest.raises(error, match=match):
        parpy.compare(record, [1, 2], backends="pp", pp_servers=servers, pp_secret=secret)
    assert seen == [] and descendants() == before
