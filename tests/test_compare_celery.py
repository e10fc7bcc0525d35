"""parpy.compare's "celery" backend: Celery on a Redis broker, the redis-server
and workers that compare starts on 127.0.0.1, or a broker and worker that
these tests start themselves; the same results as serial on both workloads,
a worker's process killed mid-batch, an unreachable broker, and Ctrl-C.

The functions that the workers run are in this module: a worker gets the
sys.path of the process that started it, where pytest put this directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _util import REPO, child_env

import parpy
from parpy import comparison
from parpy.comparison import _backends, _celery

celery = pytest.importorskip("celery", reason="the celery backend needs Celery")
psutil = pytest.importorskip("psutil")
if shutil.which("redis-server") is None:
    pytest.skip("the celery backend starts redis-server", allow_module_level=True)

pytestmark = pytest.mark.unsafe_under(
    "address",
    "thread",
    reason="redis-server and the Celery workers inherit the preloaded sanitizer runtime "
    "(LD_PRELOAD): it would run inside a jemalloc server and interpreters that billiard "
    "forks, none of it parpy's code",
)

NS = [n * 37 % 3000 for n in range(24)]  # 24 items of the book's loop
TESTS = str(Path(__file__).resolve().parent)


def descendants(pid: int | None = None) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def gone(procs: list[psutil.Process], timeout: float = 30) -> list[psutil.Process]:
    """The processes of ``procs`` still running after ``timeout`` seconds (a
    zombie has ended, whoever reaps it)."""
    deadline = time.monotonic() + timeout
    while any(map(running, procs)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in procs if running(p)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- what the workers run ----------------------------------------------------


class Square:
    """x * x; in a process other than the one that made it, after ``pause``
    seconds, and noting each item it runs as a file in ``log``."""

    def __init__(self, log: Path | None = None, pause: float = 0.0) -> None:
        self.origin = os.getpid()
        self.log = log
        self.pause = pause

    def __call__(self, x: int) -> int:
        if os.getpid() != self.origin:
            time.sleep(self.pause)
            if self.log is not None:
                (self.log / f"{x}-{os.getpid()}-{time.monotonic_ns()}").touch()
        return x * x


class KillOnce(Square):
    """x * x; but the first worker process to reach ``victim`` kills itself
    (or, with ``parent``, its worker) with SIGKILL there, once: ``marker``
    says it did."""

    def __init__(self, marker: Path, victim: int, parent: bool = False) -> None:
        super().__init__()
        self.marker, self.victim, self.parent = marker, victim, parent

    def __call__(self, x: int) -> int:
        if x == self.victim and os.getpid() != self.origin:
            try:
                with self.marker.open("x") as marker:
                    if self.parent:  # its pool processes: pid and start time
                        for p in psutil.Process(os.getppid()).children():
                            print(p.pid, repr(p.create_time()), file=marker)
            except FileExistsError:
                pass
            else:
                os.kill(os.getppid() if self.parent else os.getpid(), signal.SIGKILL)
        return x * x


# ---- a broker and worker of the test's own -----------------------------------


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(15)


@pytest.fixture(scope="module")
def broker():
    """redis-server on 127.0.0.1 and one worker of the app (concurrency 2),
    as a user starts them; the broker's URL."""
    port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    env = child_env(PARPY_CELERY_BROKER=url, C_FORCE_ROOT="1")
    env["PYTHONPATH"] = TESTS + os.pathsep + env["PYTHONPATH"]
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "parpy.comparison.celery_app", "worker",
         "--concurrency", "2", "--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert _celery.concurrency(url) == 2
                break
            except Exception:
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise
                time.sleep(0.5)
        yield url
    finally:
        stop(worker)
        stop(redis)


# ---- tests -------------------------------------------------------------------


def test_chunks_and_a_task_per_item_give_serials_results_and_stop_their_servers(monkeypatch):
    started: dict[psutil.Process, str] = {}  # what the backend started, and the names
    backend = _backends._BACKENDS["celery"]
    before = set(descendants())  # (a fork server or resource tracker of earlier tests)

    def open_and_note(work, workers):
        opened = backend.open(work, workers)
        started.update((p, p.name()) for p in descendants() if p not in before)
        return opened

    monkeypatch.setitem(_backends._BACKENDS, "celery", backend._replace(open=open_and_note))
    report = parpy.compare(
        parpy.fib_iterative, NS, backends="celery", workers=[1, 2], repeat=1, progress=False
    )  # (compare checks every row's results against serial's)
    rows = {(row.backend, row.workers): row for row in report.timings}
    assert set(rows) == {("serial", 1)} | {
        (b, w) for b in ("celery", "celery[chunksize=1]") for w in (1, 2)
    }
    # the variant shares its backend's broker and worker: the same startup
    for w in (1, 2):
        assert rows["celery", w].startup == rows["celery[chunksize=1]", w].startup > 0
    assert "redis-server on 127.0.0.1" in report.meta["celery"]
    assert list(started.values()).count("redis-server") == 2  # one per worker count
    assert gone(list(started)) == []  # the servers, the workers and their pool processes


def test_the_crawl_runs_on_celery():
    pages = comparison.WORKLOADS["crawl"].items(8)
    report = parpy.compare("crawl", pages, backends="celery", workers=[2], repeat=1)
    assert {(row.backend, row.workers) for row in report.timings} == {
        ("serial", 1), ("celery", 2), ("celery[chunksize=1]", 2),
    }  # fmt: skip


def test_a_pool_process_killed_mid_batch_loses_no_result(tmp_path):
    # The first pool process to reach item 7 kills itself with SIGKILL; its
    # task was acknowledged late, so it is requeued and runs again.
    work = KillOnce(tmp_path / "killed", NS[7])
    report = parpy.compare(work, NS, backends="celery", workers=[2], repeat=1, warmup=0)
    assert (tmp_path / "killed").exists()
    assert ("celery", 2) in [(row.backend, row.workers) for row in report.timings]


def test_a_worker_killed_whole_is_an_error_not_a_hang(tmp_path):
    # A pool process kills its worker; it writes down its pool first.
    work = KillOnce(tmp_path / "killed", NS[7], parent=True)
    with pytest.raises(RuntimeError, match="the celery worker that compare started exited") as e:
        parpy.compare(work, NS, backends="celery", workers=[2], repeat=1, warmup=0)
    assert "parpy.compare: celery on 2 workers raised this" in e.value.__notes__
    pool = []
    for line in (tmp_path / "killed").read_text().splitlines():
        pid, created = line.split()
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(int(pid)).create_time() == float(created):
                pool.append(psutil.Process(int(pid)))
    assert gone(pool) == []  # the orphaned pool processes too


def test_a_function_the_workers_cannot_load_is_skipped(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent("""
        import parpy

        def square(x):  # in __main__: the workers' __main__ is celery's
            return x * x

        if __name__ == "__main__":
            report = parpy.compare(square, range(6), backends="celery", workers=1, repeat=1)
            print(report.skipped[0].backend, report.skipped[0].reason)
        """)
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120,
        env=child_env(), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("celery a worker process could not load the function")


@pytest.mark.parametrize("broker", ["closed", "silent"])
def test_an_unreachable_broker_is_an_error_within_seconds(broker):
    # a port where nothing listens, or one that takes connections and never answers
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        if broker == "silent":
            listener.listen()
        url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
        start = time.monotonic()
        with pytest.raises(Exception, match="Connection refused|Timeout") as caught:
            parpy.compare(parpy.fib_iterative, NS, backends="celery", celery_broker=url)
        assert time.monotonic() - start < 30
    assert caught.value.__notes__ == [f"parpy.compare: the Celery broker at {url} does not answer"]


def test_a_given_broker_runs_at_its_workers_concurrency(broker):
    report = parpy.compare(
        parpy.fib_iterative, NS, backends="celery", workers=[1, 4], repeat=1, celery_broker=broker
    )
    assert {(row.backend, row.workers) for row in report.timings} == {
        ("serial", 1), ("celery", 2), ("celery[chunksize=1]", 2),
    }  # fmt: skip
    assert report.meta["celery"] == f"the workers at {broker}"


INTERRUPTED = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
import parpy
from test_compare_celery import Square
try:
    parpy.compare(Square(Path({log!r}), 0.2), range({count}), backends="celery", workers=[2],
                  repeat=1, progress=False, celery_broker={broker!r})
except KeyboardInterrupt:
    print("INTERRUPTED", flush=True)
    raise
"""


def interrupt(tmp_path: Path, broker: str | None, count: int) -> tuple[list, str, Path]:
    """Run compare in a child Python, send it SIGINT once the workers run
    the work, and wait for it to end. Returns its descendants by then and
    their command lines, and the log of the items the workers ran."""
    log = tmp_path / "log"
    log.mkdir()
    code = INTERRUPTED.format(tests=TESTS, log=str(log), count=count, broker=broker)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=child_env(), cwd=REPO,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not any(log.iterdir()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        started = descendants(proc.pid)
        names = " ".join(" ".join(p.cmdline()) for p in started)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0 and "INTERRUPTED" in out, err
    assert "KeyboardInterrupt" in err
    return started, names, log


def test_ctrl_c_stops_the_run_and_leaves_no_process(tmp_path):
    started, names, _ = interrupt(tmp_path, None, 24)
    assert "redis-server" in names and "celery" in names
    assert gone(started) == []  # redis-server, the worker and its pool processes


def test_ctrl_c_revokes_what_was_queued(tmp_path, broker):
    # 60 items at 0.2 s on 2 processes: 6 s of work, interrupted at its start.
    _, _, log = interrupt(tmp_path, broker, 60)
    ran = -1
    deadline = time.monotonic() + 30
    while ran != len(list(log.iterdir())) and time.monotonic() < deadline:
        ran = len(list(log.iterdir()))
        time.sleep(2.5)  # more than a task of 8 items takes
    assert 0 < ran < 60  # the tasks that ran when it was interrupted, no more


def test_cli_runs_celery_on_its_own_servers_or_a_given_broker(broker):
    command = [sys.executable, "-m", "parpy", "compare", "iterative", "--backends", "celery"]
    command += ["--repeat", "1", "--count", "20", "--no-progress"]
    for flags, counts in [(["--workers", "1,2"], ["1", "2"]), (["--celery-broker", broker], ["2"])]:
        done = subprocess.run(
            [*command, *flags], capture_output=True, text=True, timeout=180, env=child_env(),
            cwd=REPO,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        rows = [line.split()[:2] for line in done.stdout.splitlines()]
        rows = [r for r in rows if len(r) == 2 and r[1].isdigit()]
        for backend in ("celery", "celery[chunksize=1]"):
            assert [[backend, w] for w in counts] == [r for r in rows if r[:1] == [backend]]
