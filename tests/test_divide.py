"""Divide and conquer on one huge number: parpy.fib(n, workers=) and
parpy.to_decimal(x, workers=) split one call over threads (csrc/kernels/divide.c).

Exact against GMP's own single-thread results (mpz_fib_ui, mpz_get_str) and
against Python's int, around every threshold and cut-off; the workers=None
rule; bad workers refused before any work; Ctrl-C between steps; MemoryError
under RLIMIT_AS. Which threads ran is read from the recorded tasks
(parpy._core._lab_divide) and from parpy._core._split_threads.
"""

from __future__ import annotations

import random
import sys

import pytest
import threadpoolctl
from _util import MAPPED, finish, interactive, interrupt_rounds, run_python
from hypothesis import given, settings
from hypothesis import strategies as st

import parpy
from parpy import _core

FIB_SPLIT_N = 3_020_780  # the smallest n with n log2(phi) >= 2**21: F(n) has about 2**21 bits
DEC_SPLIT_BITS = 2**20
LEAF = 2**15  # digits of the pieces GMP converts


def fib_gmp(n: int) -> int:
    return parpy.fib(n, workers=1)  # GMP's mpz_fib_ui


def fib_python(n: int) -> int:
    """F(n) by fast doubling on Python ints: an oracle independent of GMP."""
    a, b = 0, 1
    for bit in bin(n)[2:]:
        a, b = a * (2 * b - a), a * a + b * b
        if bit == "1":
            a, b = b, a + b
    return a


def digits_gmp(x: int) -> str:
    return parpy.to_decimal(x, workers=1)  # GMP's mpz_get_str


def digits(x: int) -> str:
    """str(x): an oracle independent of GMP (quadratic in CPython 3.11: used sparingly)."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return str(x)
    finally:
        sys.set_int_max_str_digits(limit)


def test_the_thresholds_are_where_the_docs_say():
    assert abs(fib_gmp(FIB_SPLIT_N).bit_length() - 2**21) < 4
    assert _core._split_threads(parpy.fib, FIB_SPLIT_N - 1, 8) == 1
    assert _core._split_threads(parpy.fib, FIB_SPLIT_N, 2) == 2
    assert _core._split_threads(parpy.fib, FIB_SPLIT_N, 5) == 2
    assert _core._split_threads(parpy.fib, FIB_SPLIT_N, 6) == 6
    assert _core._split_threads(parpy.fib, FIB_SPLIT_N, 64) == 6
    assert _core._split_threads(parpy.fib, FIB_SPLIT_N, 1) == 1
    assert _core._split_threads(parpy.to_decimal, 2 ** (DEC_SPLIT_BITS - 1), 8) == 8
    assert _core._split_threads(parpy.to_decimal, 2 ** (DEC_SPLIT_BITS - 1) - 1, 8) == 1
    assert _core._split_threads(parpy.to_decimal, -(2 ** (DEC_SPLIT_BITS - 1)), 3) == 3
    # kernels that do not split a call
    assert _core._split_threads(parpy.fib_iterative, 10**7, 8) == 1


@pytest.mark.parametrize("workers", [2, 3, 6, 7])
def test_fib_around_the_threshold_equals_gmp(workers):
    for n in (FIB_SPLIT_N - 1, FIB_SPLIT_N, FIB_SPLIT_N + 1, 2 * FIB_SPLIT_N + 1, 4_194_303):
        assert parpy.fib(n, workers=workers) == fib_gmp(n), n


def test_fib_split_equals_python_fast_doubling():
    for n in (FIB_SPLIT_N, 3_500_001):
        assert parpy.fib(n, workers=2) == fib_python(n)


@pytest.mark.parametrize("seed", range(3))
def test_fib_of_random_large_n_equals_gmp(seed):
    rng = random.Random(seed)
    for _ in range(3):
        n = rng.randrange(FIB_SPLIT_N, 12_000_000)
        for workers in (2, 6):
            assert parpy.fib(n, workers=workers) == fib_gmp(n), (n, workers)


def test_fib_bits_of_n_all_ones_and_all_zeros():
    # every doubling step takes the odd branch, or the even one
    for n in (2**22 - 1, 2**22, 2**22 + 1, 3 * 2**20):
        assert parpy.fib(n, workers=2) == fib_gmp(n), n


def test_fib_small_n_ignores_workers():
    for n in (0, 1, 2, 92, 93, 94, 1000, 10**5):
        assert parpy.fib(n, workers=4) == fib_python(n)


def pieces(x: int) -> list[int]:
    """Ints around the cut-offs of the decimal split."""
    return [x, x - 1, x + 1, -x]


@pytest.mark.parametrize("workers", [2, 3, 4, 5, 8])
def test_to_decimal_of_powers_of_ten_and_neighbours(workers):
    # 10**k at and around the widths the split uses: c 2**i digits
    for k in (316_000, 8 * LEAF, 16 * LEAF, 16 * LEAF + 1, 24 * LEAF - 1):
        for x in pieces(10**k):
            assert parpy.to_decimal(x, workers=workers) == digits_gmp(x), (k, x.bit_length())
    x = 10**316_000 - 1
    assert parpy.to_decimal(x, workers=workers) == "9" * 316_000


def test_to_decimal_keeps_the_zeros_inside():
    # runs of zeros that fill whole pieces, at the split points and across them
    x = 7 * 10**400_000 + 3 * 10**200_000 + 1
    y = 10**400_000 + 10 ** (16 * LEAF)
    for z in (x, y, x * y, -x):
        assert parpy.to_decimal(z, workers=2) == digits_gmp(z)
    assert parpy.to_decimal(x, workers=2) == "7" + "0" * 199_999 + "3" + "0" * 199_999 + "1"


@settings(max_examples=25, deadline=None)
@given(
    bits=st.integers(min_value=DEC_SPLIT_BITS, max_value=3 * DEC_SPLIT_BITS),
    seed=st.integers(min_value=0, max_value=2**32),
    negative=st.booleans(),
    workers=st.integers(min_value=2, max_value=6),
)
def test_to_decimal_equals_str(bits, seed, negative, workers):
    x = random.Random(seed).getrandbits(bits) | (1 << (bits - 1))
    x = -x if negative else x
    assert parpy.to_decimal(x, workers=workers) == digits_gmp(x)


@settings(max_examples=3, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32), negative=st.booleans())
def test_to_decimal_equals_python_str(seed, negative):
    x = random.Random(seed).getrandbits(DEC_SPLIT_BITS) | (1 << (DEC_SPLIT_BITS - 1))
    x = -x if negative else x
    assert parpy.to_decimal(x, workers=2) == digits(x)


def test_to_decimal_of_a_fib_equals_gmp():
    x = fib_gmp(4_000_000)
    assert parpy.to_decimal(x, workers=2) == digits_gmp(x)


@pytest.mark.parametrize("which", ["fib", "to_decimal"])
def test_the_recorded_tasks_ran_on_every_thread(which):
    x = 6_000_000 if which == "fib" else fib_gmp(4_000_000)
    value, threads, tasks = _core._lab_divide(which, x, 2)
    assert value == (fib_gmp(x) if which == "fib" else digits_gmp(x))
    assert threads == 2
    assert {task[2] for task in tasks} == {0, 1}
    for i, (what, _, thread, bits, start, end, deps) in enumerate(tasks):
        assert thread in (0, 1)
        assert isinstance(what, str) and 0 <= start <= end and bits > 0
        assert all(0 <= d < len(tasks) and d != i for d in deps)


def test_the_lab_refuses_what_does_not_split():
    with pytest.raises(ValueError, match="not split"):
        _core._lab_divide("fib", 10**5, 2)
    with pytest.raises(ValueError, match="not split"):
        _core._lab_divide("fib", 10**7, 1)
    with pytest.raises(ValueError, match="which"):
        _core._lab_divide("fib_iterative", 10**7, 2)
    with pytest.raises(TypeError):
        _core._lab_divide("to_decimal", 1.5, 2)


@pytest.mark.parametrize(
    ("workers", "error"),
    [
        (0, ValueError),
        (-1, ValueError),
        (2**40, ValueError),
        (True, TypeError),
        (2.0, TypeError),
        ("2", TypeError),
    ],
)
def test_bad_workers_are_refused(workers, error):
    for call in (
        lambda: parpy.fib(10, workers=workers),
        lambda: parpy.to_decimal(10, workers=workers),
    ):
        with pytest.raises(error, match="workers"):
            call()


def test_workers_is_keyword_only_and_single_call_only():
    with pytest.raises(TypeError):
        parpy.fib(10, 2)
    with pytest.raises(TypeError, match="keyword"):
        parpy.fib_iterative(10, workers=2)
    with pytest.raises(TypeError):
        parpy.fib.bind()(10, workers=2)  # a bound kernel is for batches
    with pytest.raises(TypeError, match="keyword"):
        parpy.fib(n=10, workers=2)  # n is positional-only
    assert parpy.fib(10, workers=None) == 55
    assert parpy.map(parpy.fib, [10, 20], workers=2) == [55, 6765]


def test_workers_none_follows_set_num_threads():
    n = FIB_SPLIT_N
    try:
        parpy.set_num_threads(1)
        assert _core._split_threads(parpy.fib, n) == 1
        assert _core._split_threads(parpy.fib, n, None) == 1
        assert _core._split_threads(parpy.fib, n, 2) == 2  # given workers win
        parpy.set_num_threads(2)
        assert _core._split_threads(parpy.fib, n) == 2
        assert _core._split_threads(parpy.to_decimal, 2**DEC_SPLIT_BITS) == 2
        parpy.set_num_threads(8)
        assert _core._split_threads(parpy.fib, n) == 6
    finally:
        parpy.set_num_threads(None)


def test_workers_none_follows_threadpoolctl():
    n = FIB_SPLIT_N
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert _core._split_threads(parpy.fib, n) == 1
        assert parpy.fib(n) == fib_gmp(n)
    with threadpoolctl.threadpool_limits(limits=2, user_api="openmp"):
        assert _core._split_threads(parpy.fib, n) == 2


CTRL_C_CHILD = """
import parpy
for round in range(2):
    print("READY", round, flush=True)
    try:
        parpy.fib(4 * 10**8, workers=2)  # seconds of doubling steps
    except KeyboardInterrupt:
        print("INTERRUPTED", round, flush=True)
    else:
        print("COMPLETED", round, flush=True)
print("NEXT", parpy.fib(4_000_000, workers=2) == parpy.fib(4_000_000, workers=1), flush=True)
"""


def test_ctrl_c_stops_a_long_split_fib():
    with interactive(CTRL_C_CHILD) as (proc, out):
        latencies = interrupt_rounds(proc, out, pause=0.5)
        # between steps: at most one step of squarings of F(2 * 10**8)
        assert max(latencies) < 5, latencies
        assert out.expect("NEXT", timeout=60).split() == ["NEXT", "True"]
        returncode, _, stderr = finish(proc, timeout=60)
        assert returncode == 0, stderr


MEMORY_ERROR_CHILD = (
    MAPPED
    + """
import resource
import parpy

parpy.fib(4_000_000, workers=6)  # the threads, started before the cap
x = parpy.fib(20_000_000) ** 2
tail = parpy.to_decimal(x % 10**100, workers=1).rjust(100, "0")
cap = mapped() + 40 * 2**20
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
n, m = 3 * 10**8, 2**61 - 1
calls = {
    "fib2": lambda: parpy.fib(n, workers=2) % m == parpy.fib_mod(n, m),
    "fib6": lambda: parpy.fib(n, workers=6) % m == parpy.fib_mod(n, m),
    "decimal": lambda: parpy.to_decimal(x, workers=2)[-100:] == tail,
}
for name, call in calls.items():
    try:
        print(name, "RETURNED", call())  # allowed if memory sufficed, and then right
    except MemoryError as exc:
        print(name, "MemoryError", exc)
print("AFTER", parpy.fib(4_000_000, workers=2) == parpy.fib(4_000_000, workers=1))
"""
)


@pytest.mark.memory_limits
def test_rlimit_as_gives_memory_error_and_parpy_goes_on():
    proc = run_python(MEMORY_ERROR_CHILD, timeout=120)
    assert proc.returncode == 0, f"child died ({proc.returncode}): {proc.stderr[-2000:]}"
    assert "GNU MP" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 4, lines
    for line in lines[:3]:
        assert line.endswith("RETURNED True") or "MemoryError" in line, line
    # F(3 * 10**8) is 26 MB: GMP needs more than the 40 MB left
    assert "MemoryError" in lines[0] and "MemoryError" in lines[1], lines
    assert lines[3] == "AFTER True", lines
