"""compare() on a busy machine: the CPU that other processes use during each run,
and the rows and verdicts it marks as not to be trusted.

The measurement (OtherCpu) on a fake /proc, where every figure is known; on the real
one, against what getrusage and the processes themselves say they used; the report's
marks on synthetic Timings; and compare() itself, with processes that spin on the
CPUs, started apart from this process as another program's would be.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import parpy
from parpy.comparison import _measure
from parpy.comparison._measure import OtherCpu, _machine_busy, _process
from parpy.report import Report, Timing

CPUS = _measure._cpus()
WORK = (parpy.fib_iterative, [25000] * 20)  # about 0.2 s on serial Python


# ---- a fake /proc ------------------------------------------------------------


# (as for tests/test_report.py's pandas and plot tests)
CXX_EXTENSIONS = pytest.mark.unsafe_under(
    "address",
    reason="matplotlib's and pandas' C++ extensions throw exceptions that GCC's ASan runtime, "
    "preloaded into Python, cannot forward (a CHECK failure in its __cxa_throw interceptor)",
)


def stat_line(pid, ppid, start, utime, stime=0, cutime=0, cstime=0, name="python3"):
    """A /proc/<pid>/stat line: state, ppid, 9 fields, the 4 times, 4 fields, starttime."""
    return (
        f"{pid} ({name}) S {ppid} 1 1 0 -1 4194560 10 0 0 0 "
        f"{utime} {stime} {cutime} {cstime} 20 0 1 0 {start} 1000 100\n"
    )


def write_proc(root: Path, busy: int, processes: dict[int, tuple]) -> None:
    """A /proc with a machine of ``busy`` ticks (user + system) and these processes
    (pid: (ppid, start, utime, stime, cutime, cstime)); the ones not named are gone."""
    root.mkdir(exist_ok=True)
    user, system = busy - busy // 3, busy // 3
    # user nice system idle iowait irq softirq steal guest guest_nice: idle and iowait not busy
    (root / "stat").write_text(
        f"cpu  {user} 0 {system} 99999 777 0 0 0 0 0\ncpu0 {user} 0 {system} 99999 777 0 0 0 0 0\n"
    )
    for entry in root.iterdir():
        if entry.name.isdigit() and int(entry.name) not in processes:
            (entry / "stat").unlink()
            entry.rmdir()
    for pid, fields in processes.items():
        (root / str(pid)).mkdir(exist_ok=True)
        (root / str(pid) / "stat").write_text(stat_line(pid, *fields))


def own_ticks(meter: OtherCpu) -> int:
    reading = meter.read()
    assert reading is not None
    return reading.own


def test_the_fields_of_a_stat_line():
    # The name may hold spaces and parentheses: the fields start after the last ')'.
    p = _process(stat_line(42, 7, 1234, 50, 20, 300, 100, name="a (b) c"))
    assert (p.ppid, p.start, p.cpu, p.reaped) == (7, 1234, 70, 400)
    mine = _process(Path("/proc/self/stat").read_text())
    assert mine.ppid == os.getppid()


def test_the_machine_is_busy_in_all_but_idle_and_iowait():
    text = "cpu  100 2 30 5000 40 6 7 8 9 10\ncpu0 1 1 1 1 1 1 1 1 1 1\nintr 5\n"
    assert _machine_busy(text) == 100 + 2 + 30 + 6 + 7 + 8  # guest is within user already
    with pytest.raises(ValueError, match="no 'cpu' line"):
        _machine_busy("intr 5\n")


def test_own_is_the_root_and_its_descendants_however_deep(tmp_path):
    processes = {
        1: (0, 1, 900, 0, 0, 0),  # init: other
        10: (1, 100, 5, 0, 0, 0),  # the root
        11: (10, 200, 7, 1, 0, 0),  # its child
        12: (11, 300, 20, 2, 0, 0),  # a grandchild
        20: (1, 150, 50, 0, 0, 0),  # another program: other
        21: (20, 160, 60, 0, 0, 0),  # and its child
    }
    write_proc(tmp_path, 5000, processes)
    assert own_ticks(OtherCpu(str(tmp_path), root=10)) == 5 + 8 + 22


def test_cores_are_the_others_cpu_over_the_seconds_between_readings(tmp_path):
    write_proc(tmp_path, 1000, {10: (1, 100, 50, 0, 0, 0), 20: (1, 150, 10, 0, 0, 0)})
    meter = OtherCpu(str(tmp_path), root=10)
    before = meter.read()
    # in 2 s: the machine +300 ticks, the root +100, another program +200: 1 core
    write_proc(tmp_path, 1300, {10: (1, 100, 150, 0, 0, 0), 20: (1, 150, 210, 0, 0, 0)})
    after = meter.read()
    assert before is not None and after is not None
    assert (after.busy - before.busy, after.own - before.own) == (300, 100)
    assert meter.cores(before._replace(when=0.0), after._replace(when=2.0)) == pytest.approx(1.0)
    assert meter.cores(after, after) == 0.0


def test_a_child_that_exits_still_counts_as_own_through_its_parent(tmp_path):
    write_proc(tmp_path, 1000, {10: (1, 100, 50, 0, 0, 0), 11: (10, 200, 30, 5, 4, 0)})
    meter = OtherCpu(str(tmp_path), root=10)
    before = own_ticks(meter)
    # The child ran 15 more ticks, exited and was reaped: its 35 + 15 and its own reaped
    # 4 are now in the root's cutime + cstime.
    write_proc(tmp_path, 1100, {10: (1, 100, 60, 0, 50, 4)})
    assert own_ticks(meter) - before == 10 + 15


def test_children_started_between_readings_are_own(tmp_path):
    write_proc(tmp_path, 1000, {10: (1, 100, 50, 0, 0, 0)})
    meter = OtherCpu(str(tmp_path), root=10)
    before = own_ticks(meter)
    write_proc(tmp_path, 1100, {10: (1, 100, 50, 0, 0, 0), 11: (10, 500, 40, 0, 0, 0)})
    assert own_ticks(meter) - before == 40


def test_an_own_process_adopted_elsewhere_stays_own_and_a_reused_pid_does_not(tmp_path):
    write_proc(tmp_path, 1000, {10: (1, 100, 5, 0, 0, 0), 11: (10, 200, 5, 0, 0, 0)})
    meter = OtherCpu(str(tmp_path), root=10)
    assert own_ticks(meter) == 10
    # pid 11's parent is now init (adopted): still own
    write_proc(tmp_path, 1100, {10: (1, 100, 5, 0, 0, 0), 11: (1, 200, 25, 0, 0, 0)})
    assert own_ticks(meter) == 30
    # pid 11 is another process now (another start time): not own
    write_proc(tmp_path, 1200, {10: (1, 100, 5, 0, 0, 0), 11: (1, 900, 80, 0, 0, 0)})
    assert own_ticks(meter) == 5


def test_measure_reads_others_around_each_run_where_there_is_a_proc_stat(monkeypatch, tmp_path):
    assert OtherCpu(str(tmp_path / "none"), root=1).read() is None
    calls = {"a": lambda: None, "b": lambda: None}
    others: dict[str, list[float]] = {}
    assert _measure.measure(calls, 3, others=others).keys() == others.keys()
    assert [len(v) for v in others.values()] == [3, 3]
    monkeypatch.setattr(OtherCpu, "read", lambda self: None)  # not Linux
    others = {}
    assert len(_measure.measure(calls, 3, others=others)["a"]) == 3
    assert others == {}


# ---- on the real /proc -------------------------------------------------------

# Spins for argv[1] CPU seconds, starts a copy of itself for the rest (if any), prints the
# CPU seconds of both, and stays alive until its stdin closes.
SPIN_TREE = """
import subprocess, sys, time
while time.process_time() < float(sys.argv[1]):
    pass
below, child = 0.0, None
if sys.argv[2:]:
    child = subprocess.Popen(
        [sys.executable, __file__, *sys.argv[2:]],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    below = float(child.stdout.readline())
print(time.process_time() + below, flush=True)
sys.stdin.read()
if child is not None:
    child.communicate("", timeout=60)
"""


def rusage_seconds() -> float:
    """CPU seconds of this process and of the children it has waited for."""
    me, children = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def test_own_cpu_is_this_process_its_live_descendants_and_the_children_it_reaped(tmp_path):
    script = tmp_path / "spin_tree.py"
    script.write_text(SPIN_TREE)
    meter = OtherCpu()
    tick = 1 / os.sysconf("SC_CLK_TCK")
    before, used_before = meter.read(), rusage_seconds()
    end = time.process_time() + 0.3
    while time.process_time() < end:  # this process
        pass
    subprocess.run(  # a child that exits and is reaped
        [sys.executable, "-c", "import time\nwhile time.process_time() < 0.3: pass"],
        timeout=60,
        check=True,
    )
    tree = subprocess.Popen(  # a child and a grandchild, alive at the reading
        [sys.executable, str(script), "0.3", "0.3"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        live = float(tree.stdout.readline())
        after, used_after = meter.read(), rusage_seconds()
    finally:
        tree.communicate("", timeout=60)
    assert before is not None and after is not None
    own = (after.own - before.own) * tick
    expected = used_after - used_before + live  # at least 4 x 0.3 s
    assert expected >= 1.2
    assert own == pytest.approx(expected, abs=0.1)


@contextlib.contextmanager
def spinning(count: int, seconds: float = 120) -> Iterator[list[int]]:
    """``count`` processes that spin on the CPUs, not descendants of this one: their
    parent exits at once, as another program's would be; killed on exit (and each ends
    by itself after ``seconds``)."""
    spin = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"
    start = (
        "import subprocess, sys\n"
        "for _ in range(int(sys.argv[1])):\n"
        "    print(subprocess.Popen([sys.executable, '-c', sys.argv[2]], stdin=subprocess.DEVNULL,"
        " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", start, str(count), spin],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    pids = [int(pid) for pid in out.split()]
    try:
        for pid in pids:  # adopted elsewhere: not this process's
            assert _process(Path(f"/proc/{pid}/stat").read_text()).ppid != os.getpid()
        time.sleep(0.2)  # their Pythons started
        yield pids
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def others_for(seconds: float) -> float:
    """The cores that other processes keep busy over ``seconds``, this one asleep."""
    meter = OtherCpu()
    before = meter.read()
    time.sleep(seconds)
    after = meter.read()
    assert before is not None and after is not None
    return meter.cores(before, after)


def test_a_spinning_process_is_another_process():
    with spinning(1):
        assert others_for(1.0) >= 0.7
    assert OtherCpu().read() is not None


# ---- compare() ---------------------------------------------------------------


def compare(**options) -> Report:
    return parpy.compare(*WORK, **{"repeat": 3, "progress": False, **options})


def test_compare_does_not_count_its_own_work_as_others():
    # Its workers (processes and native threads) keep the CPUs busy: none of that is
    # others'. What others are left is the machine's background (this machine may be
    # shared): at most what it was with compare idle, while compare takes CPUs from it.
    around = others_for(1.0)
    report = compare(backends=["serial", "multiprocessing", "parpy"], workers=[1, CPUS])
    around = max(around, others_for(1.0))
    assert all(r.others is not None for r in report.rows)
    for row in report.rows:
        assert row.others <= around + 0.5, (row, around)
    assert "busy" not in report.meta


@pytest.mark.unsafe_under(
    "address",
    reason="timing: under the instrumented build, in one run, parpy's row on 2 workers was "
    "not marked while the spinners ran (its runs' lengths change with the instrumentation)",
)
def test_spinning_processes_mark_the_rows_and_verdicts():
    # One spinning process per CPU: the rows on every CPU lose half of them.
    with spinning(CPUS):
        report = compare(backends=["serial", "threading", "parpy"], workers=[1, CPUS])
    busy = {(r.backend, r.workers) for r in report.rows if r.busy}
    assert {("threading", CPUS), ("parpy", CPUS)} <= busy
    for name in ("threading", "parpy"):
        verdict = report.verdicts[name]
        assert "; the machine was busy (other processes kept" in verdict
        assert verdict.endswith("not to be trusted")
        assert "serial fraction" not in verdict and "from more workers" not in verdict
        assert "GIL" not in verdict
    table = str(report)
    assert "others" in table.splitlines()[1] and "!" in table
    assert "! busy: other processes took over 10% of the CPU" in table
    assert Report.from_json(report.to_json()) == report


def test_without_proc_stat_compare_measures_and_marks_nothing(monkeypatch):
    monkeypatch.setattr(OtherCpu, "read", lambda self: None)
    report = compare(backends=["serial", "parpy"], workers=[CPUS], repeat=1)
    assert all(t.others is None for t in report.timings)
    assert not any(r.busy or r.others is not None for r in report.rows)
    assert report.meta["busy"] == "not measured (no /proc/stat)"
    assert "busy" not in report.verdicts["parpy"]


# ---- the report ----------------------------------------------------------------


def timing(backend, workers, median, others=None, repeats=5, run=1.0):
    times = tuple(median * run for _ in range(repeats))
    return Timing(backend, workers, times, 0.0, None if others is None else (others,) * repeats)


def report_of(others: dict[tuple[str, int], float | None], run: float = 1.0, meta=None):
    medians = {("serial", 1): 1.0, ("threading", 1): 1.0, ("threading", 2): 1.02}
    medians |= {("parpy", 1): 0.2, ("parpy", 2): 0.1}
    return Report(
        work="fib",
        items=100,
        timings=[
            timing(name, w, median, others.get((name, w)), run=run)
            for (name, w), median in medians.items()
        ],
        cpus=2,
        repeat=5,
        warmup=1,
        meta=meta,
    )


def test_an_idle_report_has_no_marks_and_reads_as_one_not_measured():
    idle = report_of(dict.fromkeys([("serial", 1), ("threading", 1), ("threading", 2)], 0.02))
    unmeasured = report_of({})
    assert not any(r.busy for r in idle.rows)
    assert [r.others for r in idle.rows] == pytest.approx([0.02, 0.02, 0.02, None, None])
    assert idle.verdicts == unmeasured.verdicts
    assert str(idle) == str(unmeasured)
    assert "threading: no gain" in idle.verdicts["threading"]


@pytest.mark.parametrize(
    "workers, others, busy",
    [
        (2, 0.15, False),  # less than a tenth of the 2 CPUs that 2 workers use
        (2, 0.3, True),
        (1, 1.05, False),  # the other CPU is free for others, and a tenth of the first
        (1, 1.3, True),
    ],
)
def test_busy_is_others_taking_a_tenth_of_what_the_workers_could_use(workers, others, busy):
    report = report_of({("parpy", workers): others}, run=10)  # runs of 1 s and more
    row = next(r for r in report.rows if r.backend == "parpy" and r.workers == workers)
    assert row.others == pytest.approx(others)
    assert row.busy is busy


def test_short_runs_are_marked_only_beyond_the_counters_resolution():
    # 5 runs of 10 ms: /proc's 10 ms ticks leave their others' figure to +-0.5 core or so
    assert not any(r.busy for r in report_of({("parpy", 2): 1.5}, run=0.1).rows)
    assert any(r.busy for r in report_of({("parpy", 2): 1.5}, run=1).rows)  # 5 x 0.1 s
    assert not any(r.busy for r in report_of({("parpy", 2): 0.3}, run=1).rows)
    assert any(r.busy for r in report_of({("parpy", 2): 0.3}, run=10).rows)  # 5 x 1 s


def test_others_are_the_time_weighted_mean_of_the_runs_and_not_below_zero():
    t = Timing("serial", 1, (1.0, 3.0), others=(2.0, 0.0))
    report = Report(work="w", items=1, timings=[t], cpus=2, repeat=2, warmup=0)
    assert report.rows[0].others == pytest.approx(0.5)
    t = Timing("serial", 1, (1.0, 1.0), others=(-0.2, 0.1))
    report = Report(work="w", items=1, timings=[t], cpus=2, repeat=2, warmup=0)
    assert report.rows[0].others == 0.0


def test_a_busy_backend_has_no_conclusion_only_its_figure_and_the_load():
    idle = report_of({})
    assert idle.verdicts["threading"] == "threading: no gain (0.98x on 2 workers): the GIL"
    assert idle.verdicts["parpy"] == "parpy: 10.00x on 2 workers, serial fraction 0.00"
    report = report_of({("threading", 2): 1.0, ("parpy", 2): 0.9, ("serial", 1): 1.6})
    assert report.verdicts["threading"] == (
        "threading: no gain (0.98x on 2 workers); the machine was busy (other processes "
        "kept 1.0 of the 2 CPUs busy during its runs on 2 workers): not to be trusted"
    )
    assert report.verdicts["parpy"] == (
        "parpy: 10.00x on 2 workers; the machine was busy (other processes "
        "kept 0.9 of the 2 CPUs busy during its runs on 2 workers): not to be trusted"
    )
    assert report.verdicts["serial"] == (
        "serial: the baseline, 1.00 s; the machine was busy (other processes "
        "kept 1.6 of the 2 CPUs busy during its runs on 1 worker): not to be trusted"
    )
    several = report_of({("parpy", 1): 1.9, ("parpy", 2): 0.7})
    assert "1.9 of the 2 CPUs busy during its runs on 1 and 2 workers" in several.verdicts["parpy"]


def test_a_busy_verdict_keeps_how_the_work_releases_the_gil():
    # What the meta says of the work is no conclusion from the figures: it stays.
    others = {("threading", 1): 1.3, ("threading", 2): 1.0}
    released = {"gil_released": "by ctypes during each call of f"}
    report = report_of(others, meta=released)
    assert report.verdicts["threading"] == (
        "threading: no gain (0.98x on 2 workers); the GIL is released by ctypes during each "
        "call of f; the machine was busy (other processes kept 1.3 of the 2 CPUs busy during "
        "its runs on 1 and 2 workers): not to be trusted"
    )


def test_the_table_marks_busy_rows_in_an_others_column_with_a_legend():
    report = report_of({("serial", 1): 0.0, ("parpy", 1): 0.4, ("parpy", 2): 0.9})
    lines = str(report).splitlines()
    assert lines[1].split()[-1] == "others" and lines[2].split()[-1] == "cores"
    cells = {tuple(line.split()[:2]): line.split()[-1] for line in lines[3:8]}
    assert cells[("serial", "1")] == "0.0"
    assert cells[("parpy", "1")] == "0.4"
    assert cells[("parpy", "2")] == "0.9!"
    assert cells[("threading", "2")] == "-"
    assert lines[8].startswith("! busy: other processes took over 10% of the CPU")
    fits = [line for line in lines if " f = " in line]
    assert [line.split()[0] for line in fits if line.endswith(" !")] == ["parpy"]
    html = report._repr_html_()
    assert "<th>others (cores)</th>" in html and "<td>0.9!</td>" in html
    assert "! busy: other processes took over 10%" in html


@CXX_EXTENSIONS
def test_others_round_trip_through_json_and_show_in_pandas():
    report = report_of({("serial", 1): 0.1, ("parpy", 2): 0.9})
    data = json.loads(report.to_json())
    assert data["timings"][0]["others"] == [0.1] * 5
    assert "others" not in data["timings"][1]  # not measured: written as before
    assert "others" not in data["rows"][1] and "busy" not in data["rows"][1]
    assert data["rows"][4]["busy"] is True
    back = Report.from_json(report.to_json())
    assert back == report and back.timings[0].others == (0.1,) * 5
    assert str(back) == str(report)
    frame = report.to_pandas()
    assert list(frame["busy"]) == [False, False, False, False, True]
    assert frame["others"][0] == pytest.approx(0.1)


def test_a_report_written_before_others_were_measured_still_loads():
    data = json.loads(report_of({}).to_json())
    for t in data["timings"]:
        t.pop("others", None)
    back = Report.from_json(json.dumps(data))
    assert back == report_of({})
    assert all(t.others is None for t in back.timings)


@pytest.mark.parametrize("others", [(0.1,), (0.1, 0.2, float("nan"))])
def test_others_must_be_one_finite_value_per_time(others):
    with pytest.raises(ValueError, match="one finite value per time"):
        Timing("serial", 1, (1.0, 1.0, 1.0), others=others)


@CXX_EXTENSIONS
def test_the_plot_crosses_busy_points():
    pytest.importorskip("matplotlib")
    fig = report_of({("parpy", 2): 0.9}).plot()
    labels = fig.axes[1].get_legend().get_texts()
    assert "machine busy: not to be trusted" in [t.get_text() for t in labels]
