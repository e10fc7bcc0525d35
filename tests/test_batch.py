"""parpy.map and parpy.fib_batch: results equal the reference for every way of running."""

from __future__ import annotations

import array
import collections
import collections.abc
import itertools
import os
import sys

import pytest
from _util import (
    Index,
    child_env,
    fib_table,
    finish,
    interactive,
    interrupt_rounds,
    mismatches,
    run_python,
)

import parpy
import parpy.reference

SCHEDULES = [None, "static", "dynamic", "guided"]
WORKERS = [None, 1, 2, 3, 8]
CHUNKSIZES = [None, 1, 7, 1000]


# F(0) .. F(5000), one table (fib_exact keeps a table for every n it is asked for)
F = fib_table(5000)


def expected_fibs(ns):
    return [F[n] if n <= 5000 else parpy.reference.fib(n) for n in ns]


# A mixed batch: small and medium n, repeats, out of order.
MIXED = [(i * 37) % 2500 for i in range(600)] + [93, 94, 0, 1, 2] * 3


@pytest.mark.parametrize("chunksize", CHUNKSIZES)
@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_fib_batch_every_schedule_workers_chunksize(schedule, workers, chunksize):
    got = parpy.fib_batch(MIXED, workers=workers, schedule=schedule, chunksize=chunksize)
    assert mismatches(got, expected_fibs(MIXED)) == []


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("workers", [1, 2, 4])
@pytest.mark.parametrize(
    ("algorithm", "ns"),
    [
        ("doubling", MIXED),
        ("iterative", MIXED[:200]),
        ("recursive", [(i * 7) % 26 for i in range(300)]),
    ],
)
def test_fib_batch_every_algorithm(algorithm, ns, workers, schedule):
    got = parpy.fib_batch(ns, algorithm=algorithm, workers=workers, schedule=schedule)
    assert mismatches(got, expected_fibs(ns)) == []


def test_default_algorithm_is_doubling():
    ns = list(range(100))
    assert parpy.fib_batch(ns) == parpy.fib_batch(ns, algorithm="doubling") == list(fib_table(99))


@pytest.mark.parametrize("name", ["fib", "fib_iterative", "fib_recursive"])
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("workers", [1, 2])
def test_map_every_one_argument_kernel(name, schedule, workers):
    ns = [(i * 13) % 27 for i in range(200)] + list(range(27))
    kernel = getattr(parpy, name)
    got = parpy.map(kernel, ns, workers=workers, schedule=schedule)
    assert got == [getattr(parpy.reference, name)(n) for n in ns]


@pytest.mark.parametrize("chunksize", CHUNKSIZES)
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_map_fib_mod(workers, schedule, chunksize):
    pairs = [((i * 0x9E3779B97F4A7C15) % 2**64, (i * 7919) % 2**64 or 1) for i in range(500)]
    pairs += [(n, m) for n in (0, 1, 2**64 - 1) for m in (1, 2, 2**64 - 1)]
    got = parpy.map(parpy.fib_mod, pairs, workers=workers, schedule=schedule, chunksize=chunksize)
    assert got == [parpy.reference.fib_mod(n, m) for n, m in pairs]


# ---- what counts as a batch ------------------------------------------------------------

NS = [5, 100, 3, 5, 0, 1000, 94, 93]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: list(NS), id="list"),
        pytest.param(lambda: tuple(NS), id="tuple"),
        pytest.param(lambda: (n for n in NS), id="generator"),
        pytest.param(lambda: iter(NS), id="iterator"),
        pytest.param(lambda: collections.deque(NS), id="deque"),
        pytest.param(lambda: array.array("Q", NS), id="array"),
        pytest.param(lambda: map(int, NS), id="map-object"),
        pytest.param(lambda: dict.fromkeys(NS), id="dict"),
    ],
)
@pytest.mark.parametrize("workers", [1, 2])
def test_any_iterable(make, workers):
    items = make()
    expected_ns = list(dict.fromkeys(NS)) if isinstance(items, dict) else NS
    assert parpy.fib_batch(items, workers=workers) == expected_fibs(expected_ns)


def test_ranges():
    assert parpy.fib_batch(range(2001), workers=2) == list(fib_table(2000))
    assert parpy.fib_batch(range(2000, -1, -3)) == [F[n] for n in range(2000, -1, -3)]
    assert parpy.map(parpy.fib_recursive, range(25)) == list(fib_table(24))


def test_fib_mod_items_from_a_generator():
    pairs = ((n, n + 2) for n in range(300))
    assert parpy.map(parpy.fib_mod, pairs, workers=2) == [F[n] % (n + 2) for n in range(300)]


@pytest.mark.parametrize(
    "empty",
    [[], (), range(0), iter([]), (n for n in ())],
    ids=["list", "tuple", "range", "iter", "gen"],
)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_empty_batch(empty, schedule):
    assert parpy.fib_batch(empty, workers=2, schedule=schedule) == []


@pytest.mark.parametrize(
    "kernel", [parpy.fib, parpy.fib_iterative, parpy.fib_recursive, parpy.fib_mod]
)
def test_empty_map_every_kernel(kernel):
    result = parpy.map(kernel, [])
    assert result == [] and type(result) is list


def test_single_item():
    assert parpy.fib_batch([10]) == [55]
    assert parpy.fib_batch([10**5], workers=8) == [parpy.reference.fib(10**5)]
    assert parpy.map(parpy.fib_mod, [(10, 7)], workers=4) == [6]


def test_duplicates_only():
    assert parpy.fib_batch([1234] * 500, workers=2) == [F[1234]] * 500


def test_result_is_a_new_list_and_input_is_unchanged():
    ns = [3, 2, 1]
    result = parpy.fib_batch(ns)
    assert result == [2, 1, 1]
    assert result is not ns
    assert ns == [3, 2, 1]
    assert all(type(v) is int for v in result)


def test_many_small_items():
    ns = [i % 94 for i in range(100_000)]
    table = fib_table(93)
    assert parpy.fib_batch(ns, workers=2) == [table[n] for n in ns]
    pairs = [(i, 1000 + i % 7) for i in range(100_000)]
    expected = [parpy.reference.fib_mod(n, m) for n, m in pairs[:2000]]
    assert parpy.map(parpy.fib_mod, pairs, workers=2)[:2000] == expected


def test_same_result_for_any_worker_count():
    ns = MIXED[:300]
    results = [parpy.fib_batch(ns, workers=w) for w in (1, 2, 3, 5, 16)]
    assert all(r == results[0] for r in results)


def test_more_workers_than_items():
    assert parpy.fib_batch([10, 20], workers=64, schedule="static") == [55, 6765]
    got = parpy.fib_batch([10, 20, 30], workers=64, schedule="dynamic", chunksize=1)
    assert got == [55, 6765, 832040]


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_many_more_workers_than_cpus(schedule):
    ns = [i % 94 for i in range(1000)] + [5000] * 10
    assert parpy.fib_batch(ns, workers=200, schedule=schedule) == expected_fibs(ns)


# ---- skewed batches: item costs differing by orders of magnitude ----------------------

SKEWED = [10**6] + list(range(1500)) + [2 * 10**5] * 3 + [50_000] * 10 + [10**6 - 1]
SKEWED_RECURSIVE = [32] + [1] * 2000 + [25] * 20 + [0, 30]


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("workers", [None, 2, 3])
def test_skewed_batch(schedule, workers):
    got = parpy.fib_batch(SKEWED, workers=workers, schedule=schedule)
    assert mismatches(got, expected_fibs(SKEWED)) == []


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_skewed_recursive_batch(schedule):
    got = parpy.fib_batch(SKEWED_RECURSIVE, algorithm="recursive", workers=2, schedule=schedule)
    assert got == [F[n] for n in SKEWED_RECURSIVE]


def test_skewed_iterative_batch_most_expensive_last():
    ns = list(range(300)) + [30_000, 20_000]
    got = parpy.fib_batch(ns, algorithm="iterative", workers=2)
    assert mismatches(got, expected_fibs(ns)) == []


# ---- the default thread count ------------------------------------------------------------


def test_set_and_get_num_threads(restore_num_threads):
    default = parpy.get_num_threads()
    assert isinstance(default, int) and default >= 1
    for n in (1, 3, 7):
        parpy.set_num_threads(n)
        assert parpy.get_num_threads() == n
        assert parpy.fib_batch(MIXED) == expected_fibs(MIXED)
    parpy.set_num_threads(None)
    assert parpy.get_num_threads() == default


def test_workers_override_num_threads(restore_num_threads):
    parpy.set_num_threads(1)
    assert parpy.fib_batch(MIXED, workers=3) == expected_fibs(MIXED)
    assert parpy.get_num_threads() == 1


NUM_THREADS_CHILD = """
import os, parpy
print(parpy.get_num_threads())
parpy.set_num_threads(5)
print(parpy.get_num_threads())
parpy.set_num_threads(None)
print(parpy.get_num_threads())
print(parpy.fib_batch(range(500)) == [parpy.reference.fib(n) for n in range(500)])
"""


@pytest.mark.parametrize(
    ("omp_num_threads", "expected"),
    [("3", 3), ("1", 1), ("4,2", 4), (None, len(os.sched_getaffinity(0)))],
    ids=["3", "1", "nested-list", "unset"],
)
def test_default_honours_omp_num_threads(omp_num_threads, expected):
    proc = run_python(NUM_THREADS_CHILD, env=child_env(OMP_NUM_THREADS=omp_num_threads))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(expected), "5", str(expected), "True"]


def test_default_is_the_cpus_this_process_may_use():
    proc = run_python(
        """
        import os
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        import parpy
        same = parpy.fib_batch(range(300)) == parpy.fib_batch(range(300), workers=1)
        print(parpy.get_num_threads(), same)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "True"]


def test_batches_agree_across_all_option_combinations():
    # One batch, every combination at once: identical lists.
    ns = MIXED[:120]
    first = None
    for workers, schedule, chunksize in itertools.product(WORKERS, SCHEDULES, CHUNKSIZES):
        got = parpy.fib_batch(ns, workers=workers, schedule=schedule, chunksize=chunksize)
        first = got if first is None else first
        assert got == first, (workers, schedule, chunksize)
    assert first == expected_fibs(ns)


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_bar_counts_every_item(workers, capsys):
    ns = [n % 3000 for n in range(3000)]
    assert parpy.fib_batch(ns, workers=workers, progress=True) == expected_fibs(ns)
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    lines = [line for line in lines if "item" in line]
    assert lines and "3000/3000" in lines[-1]
    assert parpy.map(parpy.fib, [], progress=True) == []


def test_progress_without_tqdm_raises_importerror_before_any_work(monkeypatch):
    read = []

    def ns():
        read.append(1)
        yield 5

    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with pytest.raises(ImportError, match="tqdm"):
        parpy.map(parpy.fib, ns(), progress=True)
    assert read == []
    with pytest.raises(TypeError, match="progress"):
        parpy.fib_batch([1], progress="yes")


# ---- parpy.map and a Batch run alike --------------------------------------------------
#
# parpy.map makes and runs its batch in one call (parpy._core.map); an input of more than
# 16 MiB of parsed items whose items are plain values is first validated, then parsed,
# computed and built 1 MiB of parsed items at a time. Pools and executors make a Batch, which
# parses every item at once, and run it. Both give the same results, the same errors with the
# same notes, and stop alike on Ctrl-C.

# Items enough for more than 16 MiB of parsed items: 90 bytes each for fib and fib_iterative,
# 42 for fib_recursive and fib_mod, 122 for to_decimal (150,000 of them), 234 for
# extract_links (75,000).
WINDOWED = 200_000
WINDOWED_SMALL = 420_000


def batch_run(kernel, items, workers):
    return parpy._core.Batch(kernel, items, workers=workers).run()


def many_pages(count):
    return [f'<p><a href="/p{i % 97}">{i}</a> <a href=q>' for i in range(count)]


ref = parpy.reference
M = 10**9 + 7
F_MOD = [f % M for f in F]
# the items of the windowed fib_mod cases, shared: the large inputs take little memory here
PAIRS = [(n, 1000 + n % 7) for n in range(5000)]
PAIRS_MOD = {pair: F[pair[0]] % pair[1] for pair in PAIRS}
# name: a function giving the kernel, its items and the twin on one item (made in the test,
# so that the large inputs do not stay in this process's memory)
MAP_CASES = {
    "tiny": lambda: (parpy.fib, [5, 0, 93, 1, 94, 2000], F.__getitem__),
    "mixed": lambda: (parpy.fib, MIXED, F.__getitem__),
    "windowed tiny ints": lambda: (parpy.fib, [i % 94 for i in range(WINDOWED)], F.__getitem__),
    "windowed mixed costs": lambda: (
        parpy.fib,
        [(i * 7919) % 600 for i in range(WINDOWED)],
        F.__getitem__,
    ),
    "windowed a tuple": lambda: (parpy.fib, tuple(i % 200 for i in range(WINDOWED)), F.__getitem__),
    "windowed a generator": lambda: (parpy.fib, (i % 94 for i in range(WINDOWED)), F.__getitem__),
    "windowed iterative": lambda: (
        parpy.fib_iterative,
        [i % 300 for i in range(WINDOWED)],
        F.__getitem__,
    ),
    "windowed recursive": lambda: (
        parpy.fib_recursive,
        [i % 16 for i in range(WINDOWED_SMALL)],
        F.__getitem__,
    ),
    "windowed pairs": lambda: (
        parpy.fib_mod,
        [PAIRS[i % 5000] for i in range(WINDOWED_SMALL)],
        PAIRS_MOD.__getitem__,
    ),
    "windowed bound": lambda: (
        parpy.fib_mod.bind(M),
        [i % 5000 for i in range(WINDOWED_SMALL)],
        F_MOD.__getitem__,
    ),
    "windowed decimal": lambda: (parpy.to_decimal, [i * 10**20 for i in range(150_000)], str),
    "windowed pages": lambda: (parpy.extract_links, many_pages(75_000), ref.extract_links),
    "pages with a base": lambda: (
        parpy.extract_links,
        [(page, "http://h/d/") for page in many_pages(2000)],
        lambda item: ref.extract_links(*item),
    ),
    # not plain: parsed once, all at once, as a Batch does
    "index objects": lambda: (
        parpy.fib,
        [Index(i % 94) for i in range(WINDOWED)],
        lambda i: F[i.value],
    ),
    "list pairs": lambda: (
        parpy.fib_mod,
        [[i, 1000 + i % 7] for i in range(30_000)],
        lambda pair: ref.fib_mod(*pair),
    ),
}


@pytest.mark.parametrize("case", list(MAP_CASES))
def test_map_and_a_batch_run_agree(case):
    kernel, items, twin = MAP_CASES[case]()
    generator = isinstance(items, collections.abc.Iterator)
    items = list(items) if generator else items
    expected = [twin(item) for item in items]
    for workers in (1, 2):
        by_map = parpy.map(kernel, iter(items) if generator else items, workers=workers)
        assert mismatches(by_map, expected) == [], workers
        del by_map
        assert mismatches(batch_run(kernel, items, workers), expected) == [], workers


def with_bad(items, position, bad):
    items = list(items)
    items[position] = bad
    return items


FAIL_CASES = {
    # name: a function giving the kernel and items with a bad one
    "tiny": lambda: (parpy.fib, with_bad([5, 0, 93, 1], 2, "x")),
    "windowed, first": lambda: (parpy.fib, with_bad(range(WINDOWED), 0, -1)),
    "windowed, inside the first window": lambda: (parpy.fib, with_bad(range(WINDOWED), 5, 2.0)),
    "windowed, a later window": lambda: (
        parpy.fib,
        with_bad(range(WINDOWED), WINDOWED // 2, 2**64),
    ),
    "windowed, last": lambda: (parpy.fib, with_bad(range(WINDOWED), WINDOWED - 1, None)),
    "windowed, too large": lambda: (parpy.fib, with_bad(range(WINDOWED), 777, 2**40)),
    "windowed pairs": lambda: (
        parpy.fib_mod,
        with_bad([(i, 7) for i in range(WINDOWED_SMALL)], 300_000, (1, 0)),
    ),
    "windowed pair too short": lambda: (
        parpy.fib_mod,
        with_bad([(i, 7) for i in range(WINDOWED_SMALL)], 12_345, (1,)),
    ),
    "index objects": lambda: (
        parpy.fib,
        with_bad([Index(i % 94) for i in range(WINDOWED)], 4321, "x"),
    ),
}


@pytest.mark.parametrize("case", list(FAIL_CASES))
def test_map_and_a_batch_run_fail_alike(case):
    kernel, items = FAIL_CASES[case]()
    with pytest.raises(Exception) as by_map:
        parpy.map(kernel, items, workers=2)
    with pytest.raises(Exception) as by_batch:
        batch_run(kernel, items, 2)
    assert type(by_map.value) is type(by_batch.value)
    assert str(by_map.value) == str(by_batch.value)
    assert by_map.value.__notes__ == by_batch.value.__notes__
    assert by_map.value.__notes__[-1].startswith(f"parpy.{kernel.__name__}: items[")


def test_map_validates_every_item_before_any_work():
    # The bad item is in the last window: nothing was computed, and the progress bar's
    # start (called once every item is valid) was not called.
    control = parpy._core.Control()
    started = []
    items = [i % 94 for i in range(WINDOWED)] + ["x"]
    with pytest.raises(TypeError) as info:
        parpy._core.map(parpy.fib, items, 2, None, None, control, started.append)
    assert info.value.__notes__ == [f"parpy.fib: items[{WINDOWED}]"]
    assert control.done == 0
    assert started == []
    results = parpy._core.map(parpy.fib, items[:-1], 2, None, None, control, started.append)
    assert results == [F[n] for n in items[:-1]]
    assert started == [WINDOWED]
    assert control.done == WINDOWED


@pytest.mark.parametrize("size", [10, WINDOWED])
def test_map_stops_before_any_work_if_started_raises(size):
    # started (the progress bar's start) raising: its exception, every parsed item released
    # (the leak and sanitizer jobs check that), nothing computed.
    control = parpy._core.Control()

    def started(total):
        raise ZeroDivisionError(total)

    with pytest.raises(ZeroDivisionError, match=str(size)):
        parpy._core.map(parpy.fib, [i % 94 for i in range(size)], 2, None, None, control, started)
    assert control.done == 0


def test_map_parses_plain_items_the_same_twice():
    # A windowed input is parsed twice (validated, then a window at a time): only items
    # whose parsing runs no Python code are. One that runs __index__ is parsed once.
    calls = collections.Counter()

    class Counted(Index):
        def __index__(self):
            calls[self.value] += 1
            return self.value

    items = [i % 94 for i in range(WINDOWED)] + [Counted(7), Counted(8)]
    assert parpy.map(parpy.fib, items, workers=2)[-2:] == [13, 21]
    assert calls == {7: 1, 8: 1}


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_bar_counts_every_item_of_a_windowed_input(workers, capsys):
    ns = [n % 94 for n in range(WINDOWED)]
    assert parpy.fib_batch(ns, workers=workers, progress=True) == [F[n] for n in ns]
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    lines = [line for line in lines if "item" in line]
    assert lines and f"{WINDOWED}/{WINDOWED}" in lines[-1]
    with pytest.raises(TypeError):
        parpy.fib_batch([*ns, "x"], workers=workers, progress=True)
    assert "item" not in capsys.readouterr().err  # no bar for an input that is not valid


CTRL_C_CHILD = """
import sys, parpy, parpy.reference

many = [2500] * 300_000  # about 10 s of fib_iterative, a window at a time in parpy.map
few = [10**7] * 4
kernel = parpy.fib_iterative
how, size = sys.argv[1:]
items = many if size == "many" else few
calls = {
    "map": lambda: parpy.map(kernel, items, workers=2),
    "batch": lambda: parpy._core.Batch(kernel, items, workers=2).run(),
}
call = calls[how]
for round in range(2):
    print("READY", round, flush=True)
    try:
        call()
    except KeyboardInterrupt:
        print("INTERRUPTED", round, flush=True)
    else:
        print("COMPLETED", round, flush=True)
ns = list(range(0, 3000, 7)) * 50
print("NEXT", parpy.map(kernel, ns, workers=2) == [parpy.reference.fib(n) for n in ns], flush=True)
"""


@pytest.mark.parametrize("size", ["many", "few"])
@pytest.mark.parametrize("how", ["map", "batch"])
def test_map_and_a_batch_run_stop_alike_on_ctrl_c(how, size):
    with interactive(CTRL_C_CHILD, how, size) as (proc, out):
        # twice: the first interruption leaves parpy ready for more
        latencies = interrupt_rounds(proc, out, pause=0.5)
        assert max(latencies) < 5, latencies  # generous: what is checked is that it stops
        assert out.expect("NEXT", timeout=60).split() == ["NEXT", "True"]
        returncode, _, stderr = finish(proc, timeout=60)
        assert returncode == 0, stderr
