"""Bad input: single calls on both implementations, batches, options, limits."""

from __future__ import annotations

import collections
import decimal
import enum
import fractions
import math
import os
import re
import time
import traceback

import pytest
from _util import (
    FIB_GMP_MAX_N,
    LOG2_PHI,
    MAPPED,
    U64,
    BackgroundPython,
    Index,
    child_env,
    fib_exact,
    run_python,
)

import parpy
import parpy.reference

ONE_ARG = ["fib", "fib_iterative", "fib_recursive"]
BATCH_ALGORITHMS = {"fib": "doubling", "fib_iterative": "iterative", "fib_recursive": "recursive"}

NOT_INTS = [
    pytest.param("5", id="str"),
    pytest.param(b"5", id="bytes"),
    pytest.param(5.0, id="float"),
    pytest.param(float("nan"), id="nan"),
    pytest.param(None, id="None"),
    pytest.param(True, id="True"),
    pytest.param(False, id="False"),
    pytest.param([5], id="list"),
    pytest.param((5,), id="tuple"),
    pytest.param(5 + 0j, id="complex"),
    pytest.param(decimal.Decimal(5), id="Decimal"),
    pytest.param(fractions.Fraction(5), id="Fraction"),
    pytest.param(object(), id="object"),
]
NEGATIVE = [-1, -2, -(2**63), -(2**64), -(10**30)]
TOO_BIG = [2**64, 2**64 + 1, 2**100, 10**30]


class Color(enum.IntEnum):
    RED = 10


class MyInt(int):
    pass


def call(impl, kernel, n, m=7):
    """Calls ``impl.<kernel>`` (impl: the fixture or a module) with n first."""
    function = getattr(impl, kernel)
    return function(n, m) if kernel == "fib_mod" else function(n)


# ---- single calls, both implementations ------------------------------------------


@pytest.mark.parametrize("kernel", ONE_ARG + ["fib_mod"])
@pytest.mark.parametrize("value", NOT_INTS)
def test_not_an_int_is_type_error(impl, kernel, value):
    with pytest.raises(TypeError, match="^n must be an int, not "):
        call(impl, kernel, value)
    if kernel == "fib_mod":
        with pytest.raises(TypeError, match="^m must be an int, not "):
            impl.fib_mod(7, value)


@pytest.mark.parametrize("kernel", ONE_ARG + ["fib_mod"])
@pytest.mark.parametrize("value", NEGATIVE)
def test_negative_is_value_error(impl, kernel, value):
    with pytest.raises(ValueError, match=f"^n must be >= 0, not {value}$"):
        call(impl, kernel, value)
    if kernel == "fib_mod":
        with pytest.raises(ValueError, match="^m must be >= "):
            impl.fib_mod(7, value)


@pytest.mark.parametrize("kernel", ONE_ARG + ["fib_mod"])
@pytest.mark.parametrize("value", TOO_BIG)
def test_2_to_the_64_and_above_is_overflow_error(impl, kernel, value):
    with pytest.raises(OverflowError, match=f"^n must be < 2\\*\\*64, not {value}$"):
        call(impl, kernel, value)
    if kernel == "fib_mod":
        with pytest.raises(OverflowError, match="^m must be < 2\\*\\*64"):
            impl.fib_mod(7, value)


@pytest.mark.parametrize("n", [94, 95, 1000, 2**63, U64 - 1])
def test_fib_recursive_above_93_is_overflow_error(impl, n):
    with pytest.raises(OverflowError, match=f"must be <= 93, not {n}$"):
        impl.fib_recursive(n)


@pytest.mark.parametrize("n", [0, 1, 10**18, U64 - 1])
def test_fib_mod_zero_modulus_is_value_error(impl, n):
    with pytest.raises(ValueError, match="^m must be >= 1, not 0$"):
        impl.fib_mod(n, 0)


def test_fib_mod_accepts_the_whole_u64_range(impl):
    assert impl.fib_mod(U64 - 1, U64 - 1) == parpy.reference.fib_mod(U64 - 1, U64 - 1)
    assert impl.fib_mod(U64 - 1, 1) == 0
    assert impl.fib_mod(0, U64 - 1) == 0


@pytest.mark.parametrize("value", ["5", 5.0, None, True, [5], -1, 2**64])
def test_native_and_reference_messages_agree(value):
    for kernel in ONE_ARG + ["fib_mod"]:
        errors = []
        for module in (parpy, parpy.reference):
            with pytest.raises((TypeError, ValueError, OverflowError)) as info:
                call(module, kernel, value)
            errors.append((info.type, str(info.value)))
        assert errors[0] == errors[1], kernel


def test_int_subclasses_are_ints(impl):
    assert impl.fib(MyInt(10)) == 55
    assert impl.fib(Color.RED) == 55
    assert impl.fib_iterative(MyInt(100)) == fib_exact(100)
    assert impl.fib_recursive(Color.RED) == 55
    assert impl.fib_mod(MyInt(10), Color.RED) == 5


def test_index_objects_are_ints(impl):
    # Objects with __index__ are accepted as ints, and validated as ints.
    assert impl.fib(Index(10)) == 55
    assert impl.fib_iterative(Index(100)) == fib_exact(100)
    assert impl.fib_recursive(Index(20)) == 6765
    assert impl.fib_mod(Index(10), Index(7)) == 55 % 7
    with pytest.raises(ValueError):
        impl.fib(Index(-1))
    with pytest.raises(OverflowError):
        impl.fib(Index(2**64))
    with pytest.raises(OverflowError):
        impl.fib_recursive(Index(94))
    with pytest.raises(ValueError):
        impl.fib_mod(Index(1), Index(0))


def test_index_errors_propagate():
    class Broken:
        def __index__(self):
            raise ZeroDivisionError("broken __index__")

    with pytest.raises(ZeroDivisionError, match="broken __index__"):
        parpy.fib(Broken())


@pytest.mark.parametrize("kernel", ONE_ARG + ["fib_mod"])
def test_wrong_argument_count_is_type_error(impl, kernel):
    arity = 2 if kernel == "fib_mod" else 1
    for args in [(), (1,) * (arity + 1), (1,) * (arity + 2)]:
        with pytest.raises(TypeError):
            impl[kernel](*args)


@pytest.mark.parametrize("kernel", ONE_ARG + ["fib_mod"])
def test_native_kernels_take_no_keywords(kernel):
    native = getattr(parpy, kernel)
    with pytest.raises(TypeError, match="keyword"):
        native(n=5) if kernel != "fib_mod" else native(5, m=7)


# ---- batches -----------------------------------------------------------------------

BAD_ITEMS = [
    pytest.param("x", TypeError, id="str"),
    pytest.param(1.5, TypeError, id="float"),
    pytest.param(None, TypeError, id="None"),
    pytest.param(True, TypeError, id="bool"),
    pytest.param(-1, ValueError, id="negative"),
    pytest.param(2**64, OverflowError, id="2**64"),
]


def _single_call_error(kernel, value):
    with pytest.raises(Exception) as info:
        getattr(parpy, kernel)(value)
    return info.type, str(info.value)


@pytest.mark.parametrize("kernel", ONE_ARG)
@pytest.mark.parametrize(("bad", "exc"), BAD_ITEMS)
@pytest.mark.parametrize("index", [0, 1, 57])
def test_bad_item_names_its_index(kernel, bad, exc, index):
    items = [5] * 60
    items[index] = bad
    exc_type, message = _single_call_error(kernel, bad)
    assert exc_type is exc
    # the item's own exception, with the kernel and the position in a note
    with pytest.raises(exc) as info:
        parpy.map(getattr(parpy, kernel), items, workers=2)
    assert str(info.value) == message
    assert info.value.__notes__ == [f"parpy.{kernel}: items[{index}]"]
    with pytest.raises(exc) as info:
        parpy.fib_batch(items, algorithm=BATCH_ALGORITHMS[kernel])
    assert str(info.value) == message
    assert info.value.__notes__ == [f"parpy.{kernel}: items[{index}]"]


def test_bad_item_message_example():
    with pytest.raises(TypeError) as info:
        parpy.fib_batch([1, "2", 3])
    assert str(info.value) == "n must be an int, not str"
    assert info.value.__notes__ == ["parpy.fib: items[1]"]


def test_an_index_error_keeps_its_traceback_and_context():
    # The exception raised in a user's __index__ is the one raised, with its
    # own traceback and __context__; the position is only a note.
    class Broken:
        def __index__(self):
            raise ZeroDivisionError("broken")

    class Chained:
        def __index__(self):
            try:
                {}["key"]
            except KeyError:
                raise ZeroDivisionError("chained")  # noqa: B904 - the context is the point

    with pytest.raises(ZeroDivisionError) as info:
        parpy.fib_batch([1, 2, Chained(), 4])
    exc = info.value
    assert str(exc) == "chained"
    assert isinstance(exc.__context__, KeyError)
    assert exc.__notes__ == ["parpy.fib: items[2]"]
    frames = [frame.f_code.co_name for frame, _ in traceback.walk_tb(exc.__traceback__)]
    assert "__index__" in frames, frames
    for call in (parpy.fib, parpy.reference.fib):
        with pytest.raises(ZeroDivisionError) as info:
            call(Chained())
        assert isinstance(info.value.__context__, KeyError)
        assert not getattr(info.value, "__notes__", None)
    with pytest.raises(ZeroDivisionError, match="broken"):
        parpy.map(parpy.fib_iterative, [Broken()])


def test_first_bad_item_is_reported():
    with pytest.raises(TypeError, match=r"\nparpy\.fib: items\[2\]$"):
        parpy.fib_batch([1, 2, "x", -1, 2**64, None])
    with pytest.raises(ValueError, match=r"\nparpy\.fib: items\[3\]$"):
        parpy.fib_batch([1, 2, 3, -1, "x"])


@pytest.mark.parametrize("n", [94, 200])
def test_recursive_batch_above_93_is_overflow_error(n):
    with pytest.raises(
        OverflowError, match=rf"must be <= 93, not {n}\nparpy\.fib_recursive: items\[1\]$"
    ):
        parpy.fib_batch([10, n], algorithm="recursive")


@pytest.mark.parametrize(
    ("item", "exc", "pattern"),
    [
        pytest.param(5, TypeError, "tuples of 2", id="int"),
        pytest.param("ab", TypeError, "tuples of 2", id="str"),
        pytest.param((5,), TypeError, "tuples of 2", id="1-tuple"),
        pytest.param((5, 7, 9), TypeError, "tuples of 2", id="3-tuple"),
        pytest.param([], TypeError, "tuples of 2", id="empty-list"),
        pytest.param({5: 7}, TypeError, "tuples of 2", id="dict"),
        pytest.param(iter((5, 7)), TypeError, "tuples of 2", id="iterator"),
        pytest.param(("5", 7), TypeError, "n must be an int", id="bad-n"),
        pytest.param((5, 7.0), TypeError, "m must be an int", id="bad-m"),
        pytest.param((-5, 7), ValueError, "n must be >= 0", id="negative-n"),
        pytest.param((5, 0), ValueError, "m must be >= 1", id="zero-m"),
        pytest.param((5, 2**64), OverflowError, "m must be < 2", id="huge-m"),
    ],
)
def test_fib_mod_bad_items(item, exc, pattern):
    with pytest.raises(exc, match=rf"{pattern}.*\nparpy\.fib_mod: items\[2\]$"):
        parpy.map(parpy.fib_mod, [(1, 2), [3, 4], item, (5, 6)], workers=2)


def test_fib_mod_items_may_be_lists_or_tuples():
    pair = collections.namedtuple("pair", "n m")
    items = [(10, 7), [10, 7], (MyInt(10), Index(7)), pair(10, 7)]
    assert parpy.map(parpy.fib_mod, items) == [6, 6, 6, 6]


@pytest.mark.timeout(120)
def test_every_item_is_validated_before_work_starts():
    # The first items would take minutes; the bad last one must fail the call at once.
    with pytest.raises(TypeError, match=r"\nparpy\.fib_iterative: items\[3\]$"):
        parpy.fib_batch([10**7] * 3 + ["x"], algorithm="iterative", workers=2)
    with pytest.raises(OverflowError, match=r"\nparpy\.\w+: items\[2\]$"):
        parpy.fib_batch([70, 70, 94], algorithm="recursive", workers=2)
    with pytest.raises(ValueError, match=r"\nparpy\.\w+: items\[2\]$"):
        parpy.map(parpy.fib_iterative, [10**7, 10**7, -1])


def test_batch_still_works_after_errors():
    for bad in ["x", -1, 2**64]:
        with pytest.raises((TypeError, ValueError, OverflowError)):
            parpy.fib_batch([1000] * 100 + [bad], workers=2)
    assert parpy.fib_batch([1000] * 100, workers=2) == [fib_exact(1000)] * 100


# ---- batch options -------------------------------------------------------------------


@pytest.mark.parametrize("option", ["workers", "chunksize"])
@pytest.mark.parametrize(
    ("value", "exc"),
    [
        (True, TypeError),
        (False, TypeError),
        (2.0, TypeError),
        ("2", TypeError),
        ([2], TypeError),
        (0, ValueError),
        (-1, ValueError),
        (-(2**70), ValueError),
    ],
)
@pytest.mark.parametrize("items", [[1, 2, 3], []], ids=["items", "empty"])
def test_bad_workers_and_chunksize(option, value, exc, items):
    with pytest.raises(exc):
        parpy.fib_batch(items, **{option: value})
    with pytest.raises(exc):
        parpy.map(parpy.fib, items, **{option: value})


@pytest.mark.parametrize(
    "options",
    [
        {"workers": True},
        {"workers": 2.0},
        {"workers": Index(2)},
        {"workers": 0},
        {"workers": -(2**70)},
        {"workers": 2**31},
        {"chunksize": "2"},
        {"chunksize": 0},
        {"schedule": "auto"},
        {"schedule": 0},
        {"schedule": ["static"]},
        {"workers": 0, "schedule": "x", "chunksize": 0},  # the schedule's error first
    ],
)
@pytest.mark.parametrize("kernel", [parpy.fib, parpy.reference.fib, decimal.Decimal])
def test_bad_options_fail_alike_on_every_path(kernel, options):
    # parpy.map checks the kernel and its options in C on its short path (without a progress
    # bar or a client), in Python on the others: the same exception and message either way.
    with pytest.raises((TypeError, ValueError)) as short:
        parpy.map(kernel, [1], **options)
    with pytest.raises((TypeError, ValueError)) as long:
        parpy.map(kernel, [1], progress=True, **options)
    assert type(short.value) is type(long.value)
    assert str(short.value) == str(long.value)


@pytest.mark.parametrize("schedule", ["auto", "STATIC", "", "runtime", 0, 1, True, ["static"]])
def test_bad_schedule_is_value_error(schedule):
    with pytest.raises(ValueError):
        parpy.fib_batch([1, 2, 3], schedule=schedule)
    with pytest.raises(ValueError):
        parpy.map(parpy.fib, [], schedule=schedule)


@pytest.mark.parametrize("algorithm", ["fast", "Doubling", "", None, 0, ["doubling"]])
def test_bad_algorithm_is_value_error(algorithm):
    with pytest.raises(ValueError):
        parpy.fib_batch([1, 2, 3], algorithm=algorithm)


@pytest.mark.parametrize(
    "kernel",
    [parpy.reference.fib, lambda n: n, "fib", None, parpy.Kernel, abs],
    ids=["reference", "lambda", "str", "None", "type", "builtin"],
)
def test_map_requires_a_kernel(kernel):
    # with the default options (their short path) and with others
    for options in ({}, {"workers": 2}, {"schedule": "static"}):
        with pytest.raises(TypeError, match=r"parpy.map runs parpy kernels \(parpy.fib, ...\)"):
            parpy.map(kernel, [1, 2, 3], **options)
        with pytest.raises(TypeError, match="parpy kernels"):
            parpy.map(kernel, [], **options)
        read = []
        with pytest.raises(TypeError, match="parpy kernels"):
            parpy.map(kernel, (read.append(n) or n for n in [1, 2]), **options)
        assert read == []  # refused before any item is read


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        parpy.fib_batch([1, 2], 2)
    with pytest.raises(TypeError):
        parpy.map(parpy.fib, [1, 2], 2)


@pytest.mark.parametrize("items", [5, None, 1.5, object()], ids=["int", "None", "float", "object"])
def test_items_must_be_iterable(items):
    with pytest.raises(TypeError):
        parpy.fib_batch(items)
    with pytest.raises(TypeError):
        parpy.map(parpy.fib_mod, items)


def test_errors_from_the_iterable_propagate():
    class Boom(Exception):
        pass

    def generate():
        yield 1
        yield 2
        raise Boom("from the generator")

    with pytest.raises(Boom, match="from the generator"):
        parpy.fib_batch(generate())


@pytest.mark.parametrize(
    ("value", "exc"),
    [(0, ValueError), (-1, ValueError), (True, TypeError), (2.0, TypeError), ("2", TypeError)],
)
def test_bad_num_threads(value, exc, restore_num_threads):
    before = parpy.get_num_threads()
    with pytest.raises(exc):
        parpy.set_num_threads(value)
    assert parpy.get_num_threads() == before


# ---- size limits: OverflowError / MemoryError at once, in child processes ---------
#
# Each case runs in its own child, all started together, so that an
# implementation that computes instead of refusing costs one deadline in all.

LIMIT_DEADLINE_S = 20
GIB = 1 << 30


def _physical_memory() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _n_beyond_physical_memory() -> int:
    # F(n) alone takes 60% of RAM; computing it needs at least its two
    # halves' worth more, so the working memory exceeds physical memory.
    return min(FIB_GMP_MAX_N, math.ceil(0.6 * _physical_memory() * 8 / LOG2_PHI))


LIMIT_CASES = {
    # name: (n, expected exception, resource limits)
    "gmp_max_plus_1": (FIB_GMP_MAX_N + 1, "OverflowError", None),
    "u64_max": (U64 - 1, "OverflowError", None),
    "physical_memory": (_n_beyond_physical_memory(), "MemoryError", None),
    "rlimit_as_2gib": (10**10, "MemoryError", {"RLIMIT_AS": 2 * GIB}),
    "rlimit_data_2gib": (10**10, "MemoryError", {"RLIMIT_DATA": 2 * GIB}),
}

LIMIT_CHILD = """
import {module} as impl
kernel = getattr(impl, {kernel!r})
try:
    if {batch}:
        import parpy
        parpy.fib_batch([5, {n}], algorithm={algorithm!r}, workers=2)
    else:
        kernel({n})
except BaseException as exc:
    print("RAISED", type(exc).__name__, str(exc).replace("\\n", " "), sep="|")
    print("NOTES", *getattr(exc, "__notes__", []), sep="|")
else:
    print("RETURNED")
print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, sep="|")
print("AFTER", kernel(1000) == {expected_1000}, sep="|")
"""

# Size limits are the native kernels' own: the pure-Python twins, like any
# Python code, compute until Python's int runs out of memory.
LIMIT_KEYS = [
    ("native", kernel, case, batch)
    for kernel in ("fib", "fib_iterative")
    for case in LIMIT_CASES
    for batch in (False, True)
]


@pytest.fixture(scope="module")
def limit_children():
    """Starts every size-limit child at once; yields them with their deadline."""
    children = {}
    for impl_name, kernel, case, batch in LIMIT_KEYS:
        n, _, rlimits = LIMIT_CASES[case]
        body = LIMIT_CHILD.format(
            module="parpy" if impl_name == "native" else "parpy.reference",
            kernel=kernel,
            n=n,
            batch=batch,
            algorithm=BATCH_ALGORITHMS[kernel],
            expected_1000=fib_exact(1000),
        )
        children[impl_name, kernel, case, batch] = BackgroundPython(body, rlimits=rlimits)
    deadline = time.monotonic() + LIMIT_DEADLINE_S
    yield children, deadline
    for child in children.values():
        child.kill()


def _parse_limit_output(stdout: str) -> dict[str, list[str]]:
    return {fields[0]: fields[1:] for fields in (line.split("|") for line in stdout.splitlines())}


def _limit_id(key) -> str:
    impl_name, kernel, case, batch = key
    return f"{impl_name}-{kernel}-{case}-{'batch' if batch else 'call'}"


@pytest.mark.memory_limits
@pytest.mark.parametrize("key", LIMIT_KEYS, ids=_limit_id)
def test_size_limits_raise_at_once(key, limit_children):
    impl_name, kernel, case, batch = key
    children, deadline = limit_children
    n, expected, _ = LIMIT_CASES[case]
    result = children[key].result(deadline)
    what = f"{impl_name} {kernel}({n})" + (" in a batch" if batch else "")
    assert not result.timed_out, (
        f"{what} neither returned nor raised within {LIMIT_DEADLINE_S} s: it computes "
        f"instead of refusing the size; output so far {result.stdout!r}"
    )
    assert result.returncode == 0, f"{what}: child died ({result.returncode}): {result.stderr}"
    assert "GNU MP" not in result.stderr
    lines = _parse_limit_output(result.stdout)
    assert "RAISED" in lines, f"{what} returned a value"
    exc_name, message = lines["RAISED"]
    assert exc_name == expected, f"{what}: {exc_name}: {message}"
    if batch:
        assert lines["NOTES"] == [f"parpy.{kernel}: items[1]"], lines
    assert str(n) in message
    assert "%" not in message, f"unformatted message: {message!r}"
    # Refused without allocating anything like F(n).
    assert int(lines["MAXRSS_KB"][0]) < 1024 * 1024
    assert lines["AFTER"] == ["True"]


@pytest.mark.memory_limits
def test_gmp_allocation_failure_is_memory_error():
    # Sizes that pass the up-front check but cannot be allocated: with the
    # address space capped just above what the process already maps, GMP's
    # allocations fail inside the computation. That must be a MemoryError
    # (never GMP's abort), and the process must stay usable.
    proc = run_python(
        """
        import parpy, parpy.reference

        def mapped():
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmSize:"):
                        return int(line.split()[1]) * 1024

        parpy.fib_batch([100000] * 50, workers=2)  # threads started before the cap
        parpy.fib(10**7, workers=6)  # (libgomp exits the process if it cannot start one)
        cap = mapped() + 60 * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        n = 5 * 10**8  # F(n) is 43 MB; GMP needs several times that, fib_iterative twice
        calls = [
            lambda: [parpy.fib(n, workers=1)],
            lambda: [parpy.fib(n, workers=2)],
            lambda: [parpy.fib(n, workers=6)],
            lambda: [parpy.fib_iterative(n)],
            lambda: parpy.fib_batch([n, n], workers=2),
            lambda: parpy.fib_batch([n, 5, n], algorithm="iterative", workers=2),
        ]
        for compute in calls:
            try:
                values = compute()
            except MemoryError as exc:
                print("MemoryError", exc)
            else:
                # Allowed if memory sufficed after all, but then it must be right.
                m = 2**61 - 1
                print("RETURNED", all(v % m == parpy.fib_mod(n, m) for v in values if v > 5))
        ns = list(range(0, 3000, 3)) + [10**5]
        print("AFTER", parpy.fib_batch(ns, workers=2) == [parpy.reference.fib(k) for k in ns])
        """,
        timeout=120,
    )
    assert proc.returncode == 0, f"child died ({proc.returncode}): {proc.stderr[-2000:]}"
    assert "GNU MP" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 7, proc.stdout
    for line in lines[:6]:
        assert line.startswith("MemoryError") or line == "RETURNED True", line
        if line.startswith("MemoryError"):
            # the kernel's own code, its own exception and message (or the
            # up-front check's, or the result's reservation's)
            assert any(
                what in line
                for what in (
                    "out of memory (GMP allocation failed)",
                    "needs about",
                    "out of memory for",
                )
            ), line
    assert lines[6] == "AFTER True"


MEMORY_ERROR_CHILD = (
    MAPPED
    + """
import parpy

parpy.fib_batch([10**5] * 50, workers=2)  # threads started before the caps
ns = [i % 94 for i in range(10**6)]
table = [parpy.fib(n) for n in range(94)]
calls = {
    "map": lambda: parpy.map(parpy.fib, ns),
    "batch": lambda: parpy._core.Batch(parpy.fib, ns, workers=2).run(),
}
base = mapped()
for how, call in calls.items():
    for extra in (2, 12, 24, 40, 60, 100, 160, 400):
        resource.setrlimit(resource.RLIMIT_AS, (base + extra * 2**20, resource.RLIM_INFINITY))
        try:
            results = call()
        except MemoryError as exc:
            outcome = ("RAISED", str(exc), getattr(exc, "__notes__", []))
        else:
            outcome = ("RETURNED", all(r == table[n] for r, n in zip(results, ns)))
        finally:
            results = None
            resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY,) * 2)
        print(how, extra, *outcome, sep="|")
"""
)


@pytest.mark.memory_limits
def test_memory_errors_of_a_batch_say_what_failed():
    # Under address-space caps ever closer to what the process maps, parpy.map and a Batch
    # over a million tiny ints either return the right list or raise a MemoryError whose
    # message names the call and what it could not allocate: never an empty one.
    proc = run_python(MEMORY_ERROR_CHILD, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    outcomes = [line.split("|") for line in proc.stdout.splitlines()]
    assert len(outcomes) == 16, proc.stdout
    for how in ("map", "batch"):
        kinds = [outcome[2] for outcome in outcomes if outcome[0] == how]
        assert "RAISED" in kinds and "RETURNED" in kinds, outcomes  # both happened
    pattern = (
        r"parpy\.fib: a batch of 1000000 items: (cannot allocate \d+ bytes|out of memory) for "
    )
    for how, extra, kind, *rest in outcomes:
        if kind == "RETURNED":
            assert rest == ["True"], (how, extra, rest)
        else:
            assert re.match(pattern, rest[0]), (how, extra, rest)


# ---- items changed while they are validated ----------------------------------------
#
# Validating an item can run Python code (__index__), which can change the
# list being validated. parpy must not crash; it may raise or use either
# version of the list, but what it returns must be right. Run under the debug
# allocator, which poisons freed memory, so that a dangling read crashes.

MUTATION_CHILD = """
import parpy

class Mutate:
    def __init__(self, action):
        self.action = action
    def __index__(self):
        self.action()
        return 5

{setup}
try:
    result = {call}
except Exception as exc:
    print("RAISED", type(exc).__name__)
else:
    print("RETURNED", result == {expected})
"""

MUTATIONS = {
    "batch-list-cleared": (
        "items = [Mutate(lambda: items.clear())] + [1000 + i for i in range(100)]",
        "parpy.fib_batch(items)",
        "[5] + [parpy.reference.fib(1000 + i) for i in range(100)]",
    ),
    "batch-list-grown": (
        "items = [Mutate(lambda: items.extend(range(5000)))] + [1000 + i for i in range(100)]",
        "parpy.fib_batch(items)",
        "[5] + [parpy.reference.fib(1000 + i) for i in range(100)]",
    ),
    "fib_mod-pair-cleared": (
        "pair = [Mutate(lambda: pair.clear()), 10**6 + 3]",
        "parpy.map(parpy.fib_mod, [(1, 2), pair])",
        "[1, parpy.reference.fib_mod(5, 10**6 + 3)]",
    ),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_items_mutated_during_validation_do_not_crash(mutation):
    setup, call_expr, expected = MUTATIONS[mutation]
    body = "import parpy.reference\n" + MUTATION_CHILD.format(
        setup=setup, call=call_expr, expected=expected
    )
    proc = run_python(body, timeout=60, env=child_env(PYTHONMALLOC="debug"))
    assert proc.returncode == 0, f"child crashed ({proc.returncode}): {proc.stderr[-2000:]}"
    assert proc.stdout.split()[0] in ("RAISED", "RETURNED"), proc.stdout
    assert proc.stdout.split() != ["RETURNED", "False"], "wrong results after the mutation"


# ---- a batch whose results together cannot fit --------------------------------


def test_a_batch_too_large_for_memory_is_refused_at_once():
    # Every item fits on its own; all of their results together exceed
    # physical memory, so the batch is refused before anything is reserved.
    n = 10**9
    per_result = n * LOG2_PHI / 8
    count = math.ceil(_physical_memory() / per_result) + 1
    start = time.monotonic()
    with pytest.raises(MemoryError, match=rf"a batch of {count} fib results needs about"):
        parpy.fib_batch([n] * count, workers=2)
    assert time.monotonic() - start < 60  # a hang guard, not a speed claim


@pytest.mark.memory_limits
def test_a_batch_too_large_for_the_address_space_is_refused():
    proc = run_python(
        """
        import parpy
        try:
            parpy.fib_batch([10**8] * 200, workers=2)
        except MemoryError as exc:
            print("MemoryError", exc)
        print("AFTER", parpy.fib_batch([10**5] * 4, workers=2) == [parpy.fib(10**5)] * 4)
        """,
        rlimits={"RLIMIT_AS": 1 << 30},
    )
    assert proc.returncode == 0, proc.stderr
    assert "GNU MP" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("MemoryError a batch of 200 fib results needs about"), lines
    assert lines[1] == "AFTER True"
