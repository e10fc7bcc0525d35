"""parpy.lab: race conditions, deadlock and starvation really happen on native threads, are
measured, and every call returns with its threads joined, Ctrl-C included.

Every blocking wait here has a bound: the lab's own calls are bounded by their arguments
(increments, rounds, seconds, items) and the deadlock's watchdog, the child Pythons of the
Ctrl-C tests by ``finish`` and ``LineReader`` timeouts, and the whole file by pytest-timeout.
"""

from __future__ import annotations

import io
import json
import math
import os
import time

import pytest
from _util import finish, interactive, interrupt_rounds

import parpy
import parpy.lab
from parpy import _core, lab
from parpy.lab import _deadlock, _messages, _race, _starvation


def native_threads() -> int:
    """The threads of this process, native ones included. (Under TSan, count after some
    thread was started: TSan starts a background thread of its own with the first.)"""
    return len(os.listdir("/proc/self/task"))


def cpus() -> int:
    return len(os.sched_getaffinity(0))


# ---- bad input: an error before any thread starts ------------------------------------


class NoNative:
    """Stands in for parpy._core: any native call fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"{name} was called: bad input reached the native code")


BAD = [
    (lab.race, dict(threads=0), ValueError),
    (lab.race, dict(threads=-1), ValueError),
    (lab.race, dict(threads=lab.MAX_THREADS + 1), ValueError),
    (lab.race, dict(threads=2.0), TypeError),
    (lab.race, dict(threads=True), TypeError),
    (lab.race, dict(increments=-1), ValueError),
    (lab.race, dict(increments="10"), TypeError),
    (lab.race, dict(increments=2**64), ValueError),
    (lab.race, dict(mode="locked"), ValueError),
    (lab.race, dict(mode=None), TypeError),
    (lab.deadlock, dict(timeout=0), ValueError),
    (lab.deadlock, dict(timeout=-1.0), ValueError),
    (lab.deadlock, dict(timeout=math.inf), ValueError),
    (lab.deadlock, dict(timeout=math.nan), ValueError),
    (lab.deadlock, dict(timeout="1"), TypeError),
    (lab.deadlock, dict(mode="any_order"), ValueError),
    (lab.deadlock, dict(rounds=-1), ValueError),
    (lab.starvation, dict(workers=0), ValueError),
    (lab.starvation, dict(seconds=0), ValueError),
    (lab.starvation, dict(seconds=math.inf), ValueError),
    (lab.starvation, dict(policy="lottery"), ValueError),
    (lab.starvation, dict(policy=1), TypeError),
    (lab.shared_vs_messages, dict(threads=0), ValueError),
    (lab.shared_vs_messages, dict(threads=(1, 0)), ValueError),
    (lab.shared_vs_messages, dict(threads=()), ValueError),
    (lab.shared_vs_messages, dict(threads=(1, "2")), TypeError),
    (lab.shared_vs_messages, dict(items=-1), ValueError),
    (lab.shared_vs_messages, dict(items=2**32 + 1), ValueError),
]


@pytest.mark.parametrize("func, kwargs, error", BAD, ids=[f"{f.__name__}-{kw}" for f, kw, _ in BAD])
def test_bad_input_raises_before_any_native_work(monkeypatch, func, kwargs, error):
    for experiment in (_race, _deadlock, _starvation, _messages):
        monkeypatch.setattr(experiment, "_core", NoNative())
    with pytest.raises(error):
        func(**kwargs)


@pytest.mark.parametrize(
    "call",
    [
        lambda: _core._lab_race("fast", 2, 10),
        lambda: _core._lab_race("atomic", 0, 10),
        lambda: _core._lab_race("atomic", 2, -1),
        lambda: _core._lab_deadlock("ordered", 0.0, 1),
        lambda: _core._lab_deadlock("ordered", 1.0, -1),
        lambda: _core._lab_starvation("fair", 4, -1.0),
        lambda: _core._lab_starvation("fair", 10**4, 1.0),
        lambda: _core._lab_reduce("shared", 2, 2**33),
    ],
)
def test_the_native_functions_check_their_arguments_too(call):
    with pytest.raises(ValueError):
        call()


def test_reachable_as_parpy_lab():
    assert parpy.lab is lab and "lab" in parpy.__all__
    assert set(lab.RACE_MODES) == {"unsynchronized", "mutex", "atomic", "python"}


# ---- race ------------------------------------------------------------------------------

# Enough increments that each thread runs for milliseconds even when it has the counter's
# cache line to itself (well under a nanosecond an increment), and tens of milliseconds
# when the two threads fight over it.
RACE_INCREMENTS = 2 * 10**7


@pytest.mark.skipif(cpus() < 2, reason="the threads must be able to run at once")
def test_unsynchronized_increments_on_two_threads_lose_updates():
    """Updates are lost when one thread's increments fall between the other's load and
    store. That needs the two loops to overlap in time: on two CPUs, or on one when a
    thread is preempted between its load and its store.

    How this could be flaky: if the two threads never ran at the same time (one finished
    before the other started), nothing would be lost. Why it is not: they start together
    from a spinning barrier, each pinned to a CPU of its own, so from the barrier on both
    are running, and each then increments for milliseconds, far longer than the barrier's
    skew (microseconds); while both run, the cache line moves between the CPUs and about
    half of all updates are lost (the report's ``overlap`` and ``lost`` show it). Only a
    machine that takes both CPUs away from one of the threads for the whole of the other's
    run could stop it, and that three times in a row, which is what the retries are for.
    """
    attempts = []
    for _ in range(3):
        report = lab.race(threads=2, increments=RACE_INCREMENTS)
        attempts.append((report.lost, report.overlap))
        if report.lost > 0:
            break
    assert report.lost > 0, f"(lost, overlap seconds) of each attempt: {attempts}"
    assert report.actual + report.lost == report.expected == 2 * RACE_INCREMENTS
    # (Not even one thread's own increments need survive: a store of a value
    # loaded long before can set the counter back below what it had counted.)
    assert 0 < report.actual < report.expected


@pytest.mark.parametrize("mode", ["mutex", "atomic"])
@pytest.mark.parametrize("threads", [1, 2, 4])
def test_mutex_and_atomic_are_exact(mode, threads):
    report = lab.race(threads=threads, increments=10**5, mode=mode)
    assert report.lost == 0 and report.actual == report.expected == threads * 10**5
    # The fix is timed against an unsynchronized run of the same size.
    fix, baseline = report.runs
    assert (fix.mode, baseline.mode) == (mode, "unsynchronized")
    assert report.cost == pytest.approx(fix.seconds / baseline.seconds)


def test_one_thread_alone_loses_nothing():
    report = lab.race(threads=1, increments=10**5)
    assert report.lost == 0 and report.overlap == 0 and len(report.runs) == 1


def test_python_threads_report_what_they_measure():
    report = lab.race(threads=2, increments=10**5, mode="python")
    assert 0 <= report.lost < report.expected and report.actual + report.lost == 2 * 10**5
    assert report.seconds > 0 and report.cost > 0
    assert "python" in str(report)


@pytest.mark.parametrize("mode", lab.RACE_MODES)
def test_no_increments(mode):
    report = lab.race(threads=3, increments=0, mode=mode)
    assert report.expected == report.actual == report.lost == 0
    assert "expected 0" in str(report)
    json.dumps(report.as_dict(), allow_nan=False)


# ---- deadlock ------------------------------------------------------------------------------

DEADLOCK_TIMEOUT = 0.1
RECOVERY_S = 0.5  # what the issue allows beyond the timeout


def test_the_deadlock_is_detected_and_recovered_repeatedly():
    lab.deadlock("ordered", rounds=1)
    before = native_threads()
    for attempt in range(20):
        start = time.monotonic()
        report = lab.deadlock(timeout=DEADLOCK_TIMEOUT, rounds=100)
        took = time.monotonic() - start
        assert took < DEADLOCK_TIMEOUT + RECOVERY_S, (attempt, took)
        assert report.deadlocked and report.recovered, attempt
        assert DEADLOCK_TIMEOUT <= report.detected <= took, (attempt, report.detected)
        assert report.cycle == (
            "thread 0 holds A and waits for B; thread 1 holds B and waits for A"
        )
        # The victim gave up at once; the other finished every round.
        victim, other = sorted(report.threads, key=lambda t: not t.victim)
        assert victim.victim and victim.rounds == 0 and victim.took_second is None
        assert other.rounds == 100 and other.took_second >= report.detected
        assert report.victim == victim.name
        # Both waited from the start (the barrier) until the watchdog, which acted once the
        # older of the two waits had lasted the timeout.
        waited = [report.detected - t.waiting_since for t in report.threads]
        assert max(waited) >= DEADLOCK_TIMEOUT and min(waited) > DEADLOCK_TIMEOUT / 2, waited
        assert all(t.held_since <= t.waiting_since for t in report.threads)
    assert native_threads() == before  # every thread joined
    # The process is fully usable: the same locks, taken in order, and a plain batch.
    assert lab.deadlock("ordered", rounds=1000).threads[0].rounds == 1000
    assert parpy.fib_batch(list(range(50)), workers=2)[-1] == 7778742049


@pytest.mark.parametrize("mode", ["ordered", "trylock"])
def test_ordered_and_trylock_complete(mode):
    report = lab.deadlock(mode, timeout=DEADLOCK_TIMEOUT, rounds=5000)
    assert not report.deadlocked and report.detected is None and report.cycle is None
    assert [t.rounds for t in report.threads] == [5000, 5000]
    assert report.seconds > 0 and "no deadlock" in str(report)
    if mode == "trylock":
        # Round 0 starts with both holding their first lock: one of them backs off.
        assert report.backoffs >= 1
        assert [t.order for t in report.threads] == ["A then B", "B then A"]
    else:
        assert report.backoffs == 0
        assert [t.order for t in report.threads] == ["A then B", "A then B"]


def test_no_rounds_no_deadlock():
    report = lab.deadlock(timeout=DEADLOCK_TIMEOUT, rounds=0)
    assert not report.deadlocked and [t.rounds for t in report.threads] == [0, 0]


# ---- starvation ----------------------------------------------------------------------------


def test_the_fair_lock_is_fair_and_fairer_than_the_unfair_one():
    unfair = lab.starvation(workers=4, seconds=0.5, policy="unfair")
    fair = lab.starvation(workers=4, seconds=0.5, policy="fair")
    # The ticket lock serves the workers in strict rotation: their counts differ by at
    # most one turn, so its index is 1 to within 1e-6; the unfair one would need every
    # worker's count equal to a fraction of a percent to reach it.
    assert fair.jain >= 0.9
    assert fair.jain > unfair.jain, (fair.acquisitions, unfair.acquisitions)
    assert max(fair.acquisitions) - min(fair.acquisitions) <= 1
    for report in (unfair, fair):
        assert report.workers == len(report.acquisitions) == len(report.longest_wait) == 4
        assert report.total == sum(report.acquisitions) > 0
        assert 0.5 <= report.seconds < 5
        assert all(0 <= w < report.seconds + 1 for w in report.longest_wait)
        assert report.jain == pytest.approx(lab.jain_index(report.acquisitions))


def test_one_worker_is_perfectly_fair():
    report = lab.starvation(workers=1, seconds=0.05)
    assert report.jain == 1.0 and report.acquisitions[0] > 0


def test_jain_index():
    assert lab.jain_index([5, 5, 5, 5]) == 1.0
    assert lab.jain_index([8, 0, 0, 0]) == 0.25
    assert lab.jain_index([0, 0]) == 1.0
    assert lab.jain_index([1, 3]) == pytest.approx(16 / 20)


# ---- shared state versus message passing ----------------------------------------------------


def test_shared_vs_messages_returns_both_throughputs():
    items = 2 * 10**5
    report = lab.shared_vs_messages(threads=(1, 2, 3), items=items)
    assert report.threads == (1, 2, 3)
    for shares in (report.shared, report.messages):
        assert set(shares) == {1, 2, 3} and all(v > 0 for v in shares.values())
    for contention in (report.shared_contention, report.messages_contention):
        assert all(v >= 0 for v in contention.values())
    assert len(report.runs) == 6 and {r.items for r in report.runs} == {items}
    # Nobody waits for a lock that only one thread takes.
    assert report.shared_contention[1] == 0


def test_shared_vs_messages_sums_exactly_at_the_edges():
    for items in (0, 1, 7):
        report = lab.shared_vs_messages(threads=4, items=items)  # more threads than values
        assert report.threads == (4,) and set(report.messages) == {4}


# ---- reports -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reports():
    return [
        lab.race(increments=10**4, mode="mutex"),
        lab.race(increments=10**4, mode="python"),
        lab.deadlock(timeout=DEADLOCK_TIMEOUT, rounds=10),
        lab.deadlock("trylock", rounds=10),
        lab.starvation(workers=2, seconds=0.05, policy="fair"),
        lab.shared_vs_messages(threads=(1, 2), items=1000),
    ]


def test_reports_print_render_and_give_their_figures(reports):
    for report in reports:
        text = str(report)
        assert len(text.splitlines()) >= 3, text
        page = report._repr_html_()
        assert page.startswith('<div class="parpy-lab">') and "<table>" in page
        assert repr(report).startswith("<parpy.lab.")
        json.dumps(report.as_dict(), allow_nan=False)


@pytest.mark.unsafe_under(
    "address",
    reason="matplotlib's C++ extensions throw exceptions that GCC's ASan runtime, preloaded "
    "into Python, cannot forward (a CHECK failure in its __cxa_throw interceptor)",
)
def test_reports_plot(reports):
    from matplotlib.figure import Figure

    for report in reports:
        fig = report.plot()
        assert isinstance(fig, Figure) and fig.axes
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=40)
        assert png.getvalue().startswith(b"\x89PNG\r\n\x1a\n")


# ---- Ctrl-C ----------------------------------------------------------------------------------

CTRL_C_CHILD = """
import os, sys, time
from parpy import lab

calls = {
    "race": lambda: lab.race(increments=2**40),
    "race-mutex": lambda: lab.race(threads=4, increments=2**40, mode="mutex"),
    "race-python": lambda: lab.race(increments=2**40, mode="python"),
    "deadlock": lambda: lab.deadlock(timeout=10**5),
    "starvation": lambda: lab.starvation(seconds=10**5),
    "starvation-fair": lambda: lab.starvation(seconds=10**5, policy="fair"),
    "shared_vs_messages": lambda: lab.shared_vs_messages(threads=(2,), items=2**32),
}
call = calls[sys.argv[1]]
lab.race(threads=1, increments=0)  # TSan starts a thread of its own with the first thread
before = len(os.listdir("/proc/self/task"))
for round in range(2):
    print("READY", round, flush=True)
    try:
        call()
    except KeyboardInterrupt:
        print("INTERRUPTED", round, flush=True)
    else:
        print("COMPLETED", round, flush=True)
# pthread_join returns when the kernel clears the thread's id, an instant
# before it removes the task from /proc: give a joined thread that instant.
for _ in range(500):
    after = len(os.listdir("/proc/self/task"))
    if after == before:
        break
    time.sleep(0.01)
print("NEXT", after == before, lab.race(increments=1000, mode="atomic").lost == 0, flush=True)
"""

CTRL_C_LATENCY_BOUND_S = 2  # generous for a loaded machine: the lab checks every 10 ms


@pytest.mark.parametrize(
    "name",
    [
        "race",
        "race-mutex",
        "race-python",
        "deadlock",
        "starvation",
        "starvation-fair",
        "shared_vs_messages",
    ],
)
def test_ctrl_c_stops_every_experiment(name):
    with interactive(CTRL_C_CHILD, name) as (proc, out):
        # twice: the first leaves the lab ready for more
        latencies = interrupt_rounds(proc, out, pause=0.3)
        assert max(latencies) < CTRL_C_LATENCY_BOUND_S, latencies
        assert out.expect("NEXT", timeout=60).split() == ["NEXT", "True", "True"]
        returncode, _, stderr = finish(proc, timeout=60)
        assert returncode == 0, stderr
