"""Load: several Python threads run batches and single kernels at once while
the main thread's batches are cancelled again and again by a signal handler
that raises (as Ctrl-C does). Every result must be right, every cancellation
must surface as the handler's exception, and memory must stay bounded.

Bounded for CI (PARPY_SOAK_SECONDS, default 3); set it higher locally.
"""

from __future__ import annotations

import os

from _util import run_python

SOAK_SECONDS = float(os.environ.get("PARPY_SOAK_SECONDS", "3"))

SOAK_CHILD = """
import os, random, signal, threading, time
import parpy
from parpy import reference

SECONDS = {seconds}
TABLE = [reference.fib(n) for n in range(4000)]

class Cancel(Exception):
    pass

armed = False  # the handler raises only while the main thread is in a batch

def on_signal(signum, frame):
    global armed
    if armed:
        armed = False  # at most once per batch, never in the except clause
        raise Cancel

signal.signal(signal.SIGUSR1, on_signal)
stop = threading.Event()
errors, done = [], [0]

def worker(seed):
    rng = random.Random(seed)
    while not stop.is_set():
        ns = [rng.randrange(4000) for _ in range(rng.randrange(1, 300))]
        kind = rng.randrange(4)
        expected = [TABLE[n] for n in ns]
        if kind == 0:
            got = parpy.fib_batch(ns, workers=rng.randrange(1, 4))
        elif kind == 1:
            got = parpy.fib_batch(ns, algorithm="iterative", schedule="dynamic", chunksize=3)
        elif kind == 2:
            got, expected = [parpy.fib(n) for n in ns[:20]], expected[:20]
        else:
            got = parpy.map(parpy.fib_mod, [(n, 1000003) for n in ns])
            expected = [value % 1000003 for value in expected]
        if got != expected:
            errors.append((kind, ns))
        done[0] += 1

def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024

threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(3)]
for t in threads:
    t.start()

def interrupter():
    rng = random.Random(99)
    while not stop.is_set():
        time.sleep(rng.uniform(0.005, 0.05))
        os.kill(os.getpid(), signal.SIGUSR1)

big = [20000 + i for i in range(400)]
expected_big = [reference.fib(n) for n in big]
parpy.fib_batch(big, workers=2)  # warm-up before the baseline of memory
rss_start = rss_mib()
cancelled = completed = 0
start = time.monotonic()
killer = threading.Thread(target=interrupter, daemon=True)
killer.start()
# The handler's exception lands anywhere between arming and disarming, all
# inside the try; a signal that arrives elsewhere does nothing.
while time.monotonic() - start < SECONDS:
    try:
        armed = True
        got = parpy.fib_batch(big, workers=2)
        armed = False
        if got != expected_big:
            errors.append("main batch")
        completed += 1
    except Cancel:
        cancelled += 1
stop.set()
killer.join(60)
for t in threads + [killer]:
    t.join(60)
print("ALIVE", sum(t.is_alive() for t in threads + [killer]))
print("ERRORS", len(errors), errors[:3])
print("COUNTS", cancelled, completed, done[0])
print("RSS_GROWTH_MIB", rss_mib() - rss_start)
print("AFTER", parpy.fib_batch(range(100), workers=2) == TABLE[:100])
"""


def run_soak(child: str, timeout: float) -> dict[str, str]:
    """Runs a soak child; checks that it ended well, with every thread back
    and no wrong result. Returns its "NAME value" report lines as a dict."""
    proc = run_python(child.format(seconds=SOAK_SECONDS), timeout=SOAK_SECONDS + timeout)
    assert proc.returncode == 0, proc.stderr
    out = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert out["ALIVE"] == "0"
    assert out["ERRORS"].startswith("0 "), out["ERRORS"]
    return out


def test_soak_threads_and_cancellations():
    out = run_soak(SOAK_CHILD, timeout=120)
    cancelled, completed, others = map(int, out["COUNTS"].split())
    assert cancelled > 0 and others > 0, out["COUNTS"]
    assert out["AFTER"] == "True"
    if not os.environ.get("PARPY_SANITIZER"):  # sanitizers keep freed memory in quarantine
        assert int(out["RSS_GROWTH_MIB"]) < 64, out["RSS_GROWTH_MIB"]


POOL_SOAK_CHILD = """
import random, threading, time, concurrent.futures as cf
import parpy
from parpy import reference

SECONDS = {seconds}
TABLE = [reference.fib(n) for n in range(3000)]
pool = parpy.Pool(3)
executor = parpy.ThreadPoolExecutor(3)
stop = threading.Event()
errors, counts = [], [0] * 6

def py_fib(n):
    return TABLE[n]

def client(seed):
    rng = random.Random(seed)
    while not stop.is_set():
        ns = [rng.randrange(3000) for _ in range(rng.randrange(0, 200))]
        want = [TABLE[n] for n in ns]
        kind = rng.randrange(6)
        if kind == 0:
            got = pool.map(parpy.fib, ns, chunksize=rng.choice([None, 1, 7]))
        elif kind == 1:
            got = pool.map_async(py_fib, ns).get(60)
        elif kind == 2:
            got = list(pool.imap(rng.choice([parpy.fib, py_fib]), ns))
        elif kind == 3:
            got = sorted(pool.imap_unordered(parpy.fib, ns, rng.randrange(1, 9)))
            want = sorted(want)
        elif kind == 4:
            futures = [executor.submit(parpy.fib, n) for n in ns]
            # cancel some: each is then cancelled or right, never wrong
            for f in futures[::5]:
                f.cancel()
            got = [TABLE[n] if f.cancelled() else f.result(60) for f, n in zip(futures, ns)]
        else:
            func, size = rng.choice([parpy.fib, py_fib]), rng.randrange(1, 9)
            got = list(executor.map(func, ns, chunksize=size))
        if got != want:
            errors.append(kind)
        counts[kind] += 1

def short_lived(seed):
    # pools terminated with work in flight, executors shut down with work queued
    rng = random.Random(seed)
    while not stop.is_set():
        with parpy.Pool(2) as p:
            r = p.map_async(parpy.fib_iterative, [rng.randrange(20000, 40000)] * 20)
            time.sleep(rng.uniform(0, 0.01))
        try:
            r.get(60)
        except RuntimeError:
            pass
        e = parpy.ThreadPoolExecutor(2)
        fs = [e.submit(parpy.fib, rng.randrange(3000)) for _ in range(50)]
        e.shutdown(wait=rng.random() < 0.5, cancel_futures=True)
        for f in fs:
            if not f.cancelled() and f.result(60) not in TABLE:
                errors.append("short-lived")

threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]
threads.append(threading.Thread(target=short_lived, args=(9,)))
for t in threads:
    t.start()
time.sleep(SECONDS)
stop.set()
for t in threads:
    t.join(120)
print("ALIVE", sum(t.is_alive() for t in threads))
print("ERRORS", len(errors), errors[:5])
print("COUNTS", *counts)
pool.close(); pool.join(); executor.shutdown()
"""


def test_soak_pools_and_executors():
    out = run_soak(POOL_SOAK_CHILD, timeout=180)
    assert all(int(c) > 0 for c in out["COUNTS"].split()), out["COUNTS"]
