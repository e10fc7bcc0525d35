"""parpy.report: the figures, fits, verdicts and renderings of a comparison.

Every report here is built from synthetic Timings, so the expected figures
are known exactly; nothing is timed.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import struct
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from parpy.report import Fit, Report, Row, Skip, Timing, amdahl_fit, karp_flatt

CPUS = 4


def amdahl_times(f: float, t1: float, workers: list[int], noise: float = 0.0, seed: int = 0):
    """T(p) = t1 (f + (1 - f)/p) at each p, times a random factor in [1 - noise, 1 + noise]."""
    rng = random.Random(seed)
    return [t1 * (f + (1 - f) / p) * (1 + rng.uniform(-noise, noise)) for p in workers]


def timing(backend: str, workers: int, median: float, spread: float = 0.02, startup=0.0):
    """A Timing of five repeats whose median is ``median`` and min/max are ``median*(1±spread)``."""
    times = (median, median * (1 - spread), median * (1 + spread), median, median)
    return Timing(backend, workers, times, startup)


def make_report(**changes) -> Report:
    """A report on 4 CPUs: serial; threading, no gain; multiprocessing and parpy, gains."""
    timings = [
        timing("serial", 1, 0.8),
        timing("threading", 1, 0.8),
        timing("threading", 2, 0.82),
        timing("threading", 4, 0.84),
        timing("multiprocessing", 1, 0.85, startup=0.05),
        timing("multiprocessing", 2, 0.45, startup=0.1),
        timing("multiprocessing", 4, 0.25, startup=0.21),
        timing("parpy", 1, 0.16),
        timing("parpy", 2, 0.08),
        timing("parpy", 4, 0.04),
        timing("parpy", 8, 0.041),
    ]
    kwargs = dict(
        work="fib_iterative over 400 n in [2000, 25000]",
        items=400,
        timings=timings,
        skipped=[Skip("process-pool", "the function does not pickle (a lambda)")],
        cpus=CPUS,
        repeat=5,
        warmup=1,
        meta={"python": "3.11.7", "parpy": "0.1.0", "gmp": "6.3.0"},
    )
    kwargs.update(changes)
    return Report(**kwargs)


# ---- Amdahl and Karp-Flatt -----------------------------------------------------


@pytest.mark.parametrize("f", [0.0, 0.02, 0.1, 0.3, 0.6, 0.95])
@pytest.mark.parametrize("seed", range(5))
def test_amdahl_fit_recovers_the_serial_fraction_through_noise(f, seed):
    workers = [1, 2, 4, 8, 16]
    fit = amdahl_fit(workers, amdahl_times(f, 2.0, workers, noise=0.03, seed=seed))
    assert abs(fit.serial_fraction - f) <= 0.05
    assert fit.t1 == pytest.approx(2.0, rel=0.05)
    assert 0 <= fit.serial_fraction <= 1
    assert 0 < fit.residual < 0.05


@pytest.mark.parametrize("f", [0.0, 0.25, 1.0])
def test_amdahl_fit_is_exact_without_noise(f):
    workers = [1, 2, 3, 6]
    fit = amdahl_fit(workers, amdahl_times(f, 0.5, workers))
    assert fit.serial_fraction == pytest.approx(f, abs=1e-12)
    assert fit.t1 == pytest.approx(0.5, rel=1e-12)
    assert fit.residual == pytest.approx(0, abs=1e-12)
    assert fit.time(3) == pytest.approx(0.5 * (f + (1 - f) / 3), rel=1e-12)


def test_amdahl_fit_clamps_a_serial_part_below_zero():
    # Superlinear: the unconstrained line T = a + b/p has a < 0.
    fit = amdahl_fit([1, 2, 4], [1.0, 0.4, 0.15])
    assert fit.serial_fraction == 0.0
    # The best T = b/p: b = sum(T/p) / sum(1/p^2).
    xs, ts = [1, 1 / 2, 1 / 4], [1.0, 0.4, 0.15]
    b = sum(x * t for x, t in zip(xs, ts, strict=True)) / sum(x * x for x in xs)
    assert fit.t1 == pytest.approx(b, rel=1e-12)


def test_amdahl_fit_clamps_a_parallel_part_below_zero():
    # Slower with more workers: the unconstrained line has b < 0; the best flat line is the mean.
    fit = amdahl_fit([1, 2, 4], [1.0, 1.1, 1.3])
    assert fit.serial_fraction == 1.0
    assert fit.t1 == pytest.approx(statistics.mean([1.0, 1.1, 1.3]), rel=1e-12)
    assert fit.residual > 0.05


@pytest.mark.parametrize(
    "workers, times, match",
    [
        ([2, 2, 2], [1.0, 1.0, 1.0], "two or more distinct"),
        ([1], [1.0], "two or more distinct"),
        ([1, 2], [1.0], "2 worker counts but 1 times"),
        ([0, 2], [1.0, 0.5], ">= 1"),
        ([1, 2], [1.0, 0.0], "> 0"),
        ([1, 2], [1.0, math.nan], "> 0"),
    ],
)
def test_amdahl_fit_rejects_what_it_cannot_fit(workers, times, match):
    with pytest.raises(ValueError, match=match):
        amdahl_fit(workers, times)


@pytest.mark.parametrize(
    "speedup, workers, expected",
    [
        (2.0, 2, 0.0),  # linear: no serial part
        (1.0, 2, 1.0),  # no gain: all serial
        (1.6, 2, 0.25),  # (1/1.6 - 1/2) / (1 - 1/2)
        (3.0, 4, 1 / 9),  # (1/3 - 1/4) / (3/4)
        (2.5, 2, -0.2),  # superlinear: negative
    ],
)
def test_karp_flatt_values(speedup, workers, expected):
    assert karp_flatt(speedup, workers) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("f", [0.0, 0.05, 0.5, 1.0])
@pytest.mark.parametrize("p", [2, 3, 16])
def test_karp_flatt_of_an_amdahl_machine_is_its_serial_fraction(f, p):
    speedup = 1 / (f + (1 - f) / p)
    assert karp_flatt(speedup, p) == pytest.approx(f, abs=1e-12)


def test_karp_flatt_is_undefined_on_one_worker_and_rejects_bad_input():
    assert karp_flatt(1.0, 1) is None
    with pytest.raises(ValueError):
        karp_flatt(1.0, 0)
    with pytest.raises(ValueError):
        karp_flatt(0.0, 2)


# ---- the rows ----------------------------------------------------------------


def test_rows_speedup_efficiency_and_spread():
    report = make_report()
    assert report.baseline == 0.8
    assert [(r.backend, r.workers) for r in report.rows] == [
        (t.backend, t.workers) for t in report.timings
    ]
    for row, t in zip(report.rows, report.timings, strict=True):
        assert isinstance(row, Row)
        assert row.median == statistics.median(t.times)
        assert (row.low, row.high) == (min(t.times), max(t.times))
        assert row.speedup == report.baseline / row.median
        assert row.efficiency == row.speedup / row.workers
        assert row.startup == t.startup
        assert row.over_cpus == (row.workers > CPUS)
    serial = report.rows[0]
    assert (serial.speedup, serial.efficiency, serial.karp_flatt) == (1.0, 1.0, None)


def test_karp_flatt_rows_are_over_the_backends_own_one_worker_time():
    rows = {(r.backend, r.workers): r for r in make_report().rows}
    # parpy on one thread is 5x serial Python; on 2 and 4 it scales linearly
    # from there: no serial fraction, though its speedup over serial is 10x and 20x.
    assert rows["parpy", 1].karp_flatt is None
    assert rows["parpy", 2].speedup == pytest.approx(10)
    assert rows["parpy", 2].karp_flatt == pytest.approx(0, abs=1e-12)
    assert rows["parpy", 4].karp_flatt == pytest.approx(0, abs=1e-12)
    assert rows["threading", 2].karp_flatt == karp_flatt(0.8 / 0.82, 2)
    # Without a one-worker Timing of its own, over the serial baseline.
    report = Report(
        work="w",
        items=1,
        timings=[timing("serial", 1, 1.0), timing("threading", 2, 0.8)],
        cpus=2,
        repeat=5,
        warmup=0,
    )
    assert report.rows[1].karp_flatt == karp_flatt(1.0 / 0.8, 2)
    # ... but not where that is more than p times faster: other code, not a fraction
    report = Report(
        work="w",
        items=1,
        timings=[timing("serial", 1, 1.0), timing("parpy-dask", 2, 0.2)],
        cpus=2,
        repeat=5,
        warmup=0,
    )
    assert report.rows[1].karp_flatt is None
    assert report.rows[1].speedup == pytest.approx(5)
    assert "serial fraction" not in report.verdicts["parpy-dask"]


def test_report_amdahl_fits_each_backend_over_its_worker_counts():
    report = make_report()
    parpy = report.amdahl("parpy")
    assert isinstance(parpy, Fit)
    # 8 workers on 4 CPUs run as 4: the fit sees 0.16, 0.08, 0.04, 0.041 at p = 1, 2, 4, 4.
    assert parpy.serial_fraction == pytest.approx(0, abs=0.01)
    assert parpy.t1 == pytest.approx(0.16, rel=0.02)
    assert report.amdahl("threading").serial_fraction == 1.0
    assert report.amdahl("serial") is None  # one worker count
    with pytest.raises(ValueError, match="process-pool"):
        report.amdahl("process-pool")  # skipped, never timed


def test_a_report_without_serial_raises_value_error():
    with pytest.raises(ValueError, match="serial"):
        make_report(timings=[timing("parpy", 1, 0.1), timing("parpy", 2, 0.05)])


@pytest.mark.parametrize(
    "args, error",
    [
        (("serial", 1, ()), ValueError),
        (("serial", 0, (1.0,)), ValueError),
        (("serial", 1.0, (1.0,)), TypeError),
        (("serial", 1, (1.0, -1.0)), ValueError),
        (("serial", 1, (1.0, math.inf)), ValueError),
        (("", 1, (1.0,)), ValueError),
        (("serial", 1, (1.0,), -0.5), ValueError),
    ],
)
def test_timing_rejects_impossible_values(args, error):
    with pytest.raises(error):
        Timing(*args)


def test_timing_keeps_times_as_a_tuple_of_floats():
    t = Timing("serial", 1, [1, 0.5])
    assert t.times == (1.0, 0.5) and all(type(x) is float for x in t.times)


# ---- verdicts ----------------------------------------------------------------


def test_verdicts_cover_every_backend_in_order():
    report = make_report()
    assert list(report.verdicts) == [
        "serial",
        "threading",
        "multiprocessing",
        "parpy",
        "process-pool",
    ]
    for name, line in report.verdicts.items():
        assert line.startswith(f"{name}: ") and "\n" not in line


def test_verdict_wording():
    v = make_report().verdicts
    assert v["serial"] == "serial: the baseline, 0.800 s"
    # The best threading speedup is 1.00x on one worker: no gain, shown on all 4 CPUs.
    assert v["threading"] == "threading: no gain (0.95x on 4 workers): the GIL"
    fit = make_report().amdahl("multiprocessing")
    assert v["multiprocessing"] == (
        f"multiprocessing: 3.20x on 4 workers, serial fraction {fit.serial_fraction:.2f}, "
        "0.210 s to start its processes"
    )
    assert v["parpy"] == "parpy: 20.00x on 4 workers, serial fraction 0.00"
    assert v["process-pool"] == "process-pool: skipped: the function does not pickle (a lambda)"


def test_verdict_names_worker_counts_above_the_cpus_where_they_are_best():
    report = Report(
        work="w",
        items=10,
        timings=[timing("serial", 1, 1.0), timing("parpy", 2, 0.6), timing("parpy", 4, 0.5)],
        cpus=2,
        repeat=5,
        warmup=0,
    )
    # No fit (4 workers run on the 2 CPUs, as 2 do): Karp-Flatt's e over serial instead.
    assert report.amdahl("parpy") is None
    assert report.verdicts["parpy"] == (
        "parpy: 2.00x on 4 workers (more than the 2 CPUs), serial fraction 0.33"
    )


def test_verdict_no_gain_without_the_gil_and_from_more_workers():
    report = Report(
        work="w",
        items=10,
        timings=[
            timing("serial", 1, 1.0),
            timing("process-pool", 1, 1.05),
            timing("process-pool", 2, 0.95),
            timing("parpy", 1, 0.2),
            timing("parpy", 2, 0.2),
            timing("thread-pool[chunksize=4]", 2, 1.0),
        ],
        cpus=2,
        repeat=5,
        warmup=0,
    )
    assert report.verdicts["process-pool"] == "process-pool: no gain (1.05x on 2 workers)"
    assert report.verdicts["thread-pool[chunksize=4]"] == (
        "thread-pool[chunksize=4]: no gain (1.00x on 2 workers): the GIL"
    )
    assert report.verdicts["parpy"] == (
        "parpy: 5.00x on 1 worker, serial fraction 1.00, no gain from more workers"
    )


# ---- renderings --------------------------------------------------------------


def test_str_is_an_aligned_table_with_every_backend():
    report = make_report()
    text = str(report)
    for name in ["serial", "threading", "multiprocessing", "parpy", "process-pool"]:
        assert name in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("backend"))
    table = lines[header - 1 : header + 1 + len(report.rows)]
    assert len({len(line) for line in table}) == 1, "columns are not aligned"
    for heading in ["workers", "median", "spread", "speedup", "efficiency", "Karp-Flatt"]:
        assert heading in table[0] + table[1]
    assert "serial fraction" in table[0] and "startup" in table[0]
    assert lines[header + 1].split() == ["serial", "1", "0.8000", "0.7840-0.8160"] + [
        "1.00x",
        "1.00",
        "-",
        "-",
    ]
    parpy8 = lines[header + 1 + 10].split()
    assert parpy8[:2] == ["parpy", "8*"]
    assert f"* more workers than the {CPUS} CPUs" in text
    assert "Amdahl fit" in text
    for line in report.verdicts.values():
        assert line in lines


def test_str_shows_fast_work_in_a_unit_of_its_own():
    report = Report(
        work="tiny",
        items=1,
        timings=[
            Timing("serial", 1, (2.5e-6, 2e-6, 3e-6)),
            Timing("parpy", 1, (1e-6,)),
            Timing("parpy", 2, (6e-7,), startup=2e-3),
        ],
        cpus=1,
        repeat=3,
        warmup=0,
    )
    lines = str(report).splitlines()
    assert lines[0] == "tiny: 1 item; median of 3 runs after 0 warm-up; 1 CPU; " + (
        "speedup over serial (2.50 µs)"
    )
    assert lines[2].split()[2:4] == ["µs", "min-max"]
    assert lines[2].split()[-1] == "ms"  # startup
    assert lines[5].split() == ["parpy", "2*", "0.600", "0.600-0.600", "4.17x", "2.08"] + [
        "0.200",
        "2.00",
    ]
    assert report.verdicts["parpy"] == (
        "parpy: 4.17x on 2 workers (more than the 1 CPU), serial fraction 0.20, 2.00 ms to start up"
    )


def test_a_much_slower_backend_keeps_two_significant_figures():
    report = Report(
        work="w",
        items=1,
        timings=[timing("serial", 1, 8e-6), timing("threading", 2, 2.7e-3, startup=4e-3)],
        cpus=2,
        repeat=5,
        warmup=0,
    )
    row = str(report).splitlines()[4].split()
    assert row[:2] == ["threading", "2"]
    assert row[2] == "2.7000" and row[4:6] == ["0.0030x", "0.0015"]  # in ms
    assert report.verdicts["threading"] == "threading: no gain (0.0030x on 2 workers): the GIL"


def test_a_report_without_startups_renders_them_as_dashes():
    # Timings as written by hand, startup left at its default of 0.
    report = Report(
        work="w",
        items=1,
        timings=[Timing("serial", 1, (1.0,)), Timing("parpy", 2, (0.5,))],
        cpus=2,
        repeat=1,
        warmup=0,
    )
    lines = str(report).splitlines()
    assert lines[2].split()[-1] == "s"
    assert [line.split()[-1] for line in lines[3:5]] == ["-", "-"]
    assert "<td>-</td>" in report._repr_html_()


def test_html_parses_with_one_row_per_row():
    odd = timing("x<y>&z", 2, 0.5)  # markup in a name is text
    report = make_report(work="a < b & c", timings=[*make_report().timings, odd])
    page = report._repr_html_()
    root = ET.fromstring(page)
    table = root.find("table")
    assert table is not None
    assert table.findtext("caption").startswith("a < b & c: 400 items")
    headings = [th.text for th in table.iterfind("thead/tr/th")]
    assert headings[0] == "backend" and "serial fraction (Karp-Flatt)" in headings
    body = table.findall("tbody/tr")
    assert len(body) == len(report.rows)
    assert [tr[0].text for tr in body] == [r.backend for r in report.rows]
    assert all(len(tr) == len(headings) for tr in body)
    verdicts = [li.text for li in root.iterfind("ul[@class='verdicts']/li")]
    assert verdicts == list(report.verdicts.values())

    class Rows(HTMLParser):
        rows = 0

        def handle_starttag(self, tag, attrs):
            self.rows += tag == "tr"

    parser = Rows()
    parser.feed(page)
    parser.close()
    assert parser.rows == 1 + len(report.rows)


def test_json_round_trip_is_exact():
    times = (0.1 + 0.2, 1e-9, 5e-324, 1 / 3, 123456.789012345, 2.0**-40)
    report = make_report(
        timings=[
            Timing("serial", 1, times, 0.0),
            Timing("parpy", 2, tuple(t * 1.5 for t in times), startup=0.1 + 0.7),
            Timing("parpy", 3, (7 / 11,), startup=1e-7),
        ],
        meta={"python": "3.11.7 (main)", "nested": {"a": [1, 2.5, None, True]}, "é": (1, 2)},
    )
    assert report.meta["é"] == [1, 2]  # meta is kept as JSON values
    text = report.to_json()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
    back = Report.from_json(text)
    assert back == report
    for field in ["work", "items", "cpus", "repeat", "warmup", "meta", "timings", "skipped"]:
        assert getattr(back, field) == getattr(report, field), field
    for a, b in zip(back.timings, report.timings, strict=True):
        assert [x.hex() for x in a.times] == [x.hex() for x in b.times]
        assert a.startup.hex() == b.startup.hex()
    assert back.rows == report.rows
    assert back.baseline == report.baseline
    assert back.verdicts == report.verdicts
    assert back.to_json() == text


def test_json_has_the_derived_figures_and_reports_compare_by_what_was_given():
    report = make_report()
    data = json.loads(report.to_json())
    assert data["baseline"] == report.baseline
    assert len(data["rows"]) == len(report.rows)
    # (others and busy only where measured)
    assert data["rows"][1] == {
        k: v for k, v in report.rows[1]._asdict().items() if k not in ("others", "busy")
    }
    assert data["amdahl"]["parpy"] == report.amdahl("parpy")._asdict()
    assert data["verdicts"] == report.verdicts
    assert make_report(repeat=3) != report
    assert make_report(meta={}) != report
    with pytest.raises(ValueError, match="version"):
        Report.from_json(json.dumps({**data, "version": 99}))


@pytest.mark.unsafe_under(
    "address",
    reason="matplotlib's and pandas' C++ extensions throw exceptions that GCC's ASan runtime, "
    "preloaded into Python, cannot forward (a CHECK failure in its __cxa_throw interceptor)",
)
def test_to_pandas_has_one_row_per_row():
    import pandas

    report = make_report()
    frame = report.to_pandas()
    assert isinstance(frame, pandas.DataFrame)
    assert len(frame) == len(report.rows)
    assert list(frame.columns) == list(Row._fields)
    assert frame["backend"].tolist() == [r.backend for r in report.rows]
    assert frame["speedup"].tolist() == [r.speedup for r in report.rows]
    assert frame["over_cpus"].tolist() == [r.over_cpus for r in report.rows]


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.unsafe_under(
    "address",
    reason="matplotlib's and pandas' C++ extensions throw exceptions that GCC's ASan runtime, "
    "preloaded into Python, cannot forward (a CHECK failure in its __cxa_throw interceptor)",
)
def test_plot_saves_a_png_with_two_labelled_panels(tmp_path):
    report = make_report()
    fig = report.plot()
    assert fig.canvas.manager is None  # a bare Figure: no pyplot state
    time_ax, speed_ax = fig.axes
    assert time_ax.get_xlabel() == speed_ax.get_xlabel() == "workers"
    assert "time" in time_ax.get_ylabel() and "speedup" in speed_ax.get_ylabel()
    labels = [t.get_text() for t in speed_ax.get_legend().get_texts()]
    for label in ["threading", "multiprocessing", "parpy", "ideal (speedup = p)", "Amdahl fit"]:
        assert label in labels
    assert f"{CPUS} CPUs" in labels and "more workers than CPUs" in labels
    # The ideal line is speedup = p.
    ideal = next(line for line in speed_ax.get_lines() if line.get_label() == "ideal (speedup = p)")
    assert list(ideal.get_xdata()) == list(ideal.get_ydata())

    path = tmp_path / "report.png"
    fig.savefig(path, dpi=50)
    data = path.read_bytes()
    assert png_size(data) == (600, 240)  # figsize 12 x 4.8 inches at 50 dpi
    assert len(data) > 10_000


@pytest.mark.parametrize(
    "method, module, command",
    [
        ("to_pandas", "pandas", "pip install pandas"),
        ("plot", "matplotlib", "pip install matplotlib"),
    ],
)
def test_a_missing_optional_package_raises_import_error_naming_pip(
    monkeypatch, method, module, command
):
    for name in list(sys.modules):
        if name == module or name.startswith(module + "."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # "import module" now raises ImportError
    with pytest.raises(ImportError, match=command) as info:
        getattr(make_report(), method)()
    assert info.value.__cause__ is None and info.value.__suppress_context__
