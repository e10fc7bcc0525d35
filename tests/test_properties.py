"""Properties of Fibonacci numbers and of batches, with hypothesis."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import parpy

N = st.integers(min_value=0, max_value=5000)
N_POSITIVE = st.integers(min_value=1, max_value=5000)
U64_N = st.integers(min_value=0, max_value=2**64 - 1)
MODULUS = st.one_of(
    st.integers(min_value=1, max_value=1000),
    st.integers(min_value=1, max_value=2**64 - 1),
)
SCHEDULE = st.sampled_from([None, "static", "dynamic", "guided"])
WORKERS = st.one_of(st.none(), st.integers(min_value=1, max_value=4))
CHUNKSIZE = st.one_of(st.none(), st.integers(min_value=1, max_value=16))


# ---- identities, on both implementations -----------------------------------------


@given(a=N_POSITIVE, b=N)
def test_addition_formula(impl, a, b):
    # F(a + b) = F(a) F(b + 1) + F(a - 1) F(b)
    fib = impl.fib
    assert fib(a + b) == fib(a) * fib(b + 1) + fib(a - 1) * fib(b)


@given(n=N_POSITIVE)
def test_cassini(impl, n):
    # F(n - 1) F(n + 1) - F(n)^2 = (-1)^n
    fib = impl.fib
    assert fib(n - 1) * fib(n + 1) - fib(n) ** 2 == (-1) ** n


@given(n=N)
def test_recurrence(impl, n):
    fib = impl.fib
    assert fib(n + 2) == fib(n + 1) + fib(n)


@given(n=st.integers(min_value=0, max_value=3000))
def test_iterative_equals_doubling(impl, n):
    assert impl.fib_iterative(n) == impl.fib(n)


@given(n=st.integers(min_value=0, max_value=22))
def test_recursive_equals_doubling(impl, n):
    assert impl.fib_recursive(n) == impl.fib(n)


@given(n=N, m=MODULUS)
def test_fib_mod_is_fib_mod_m(impl, n, m):
    assert impl.fib_mod(n, m) == impl.fib(n) % m


@given(n=U64_N, m=MODULUS)
def test_fib_mod_native_equals_reference(n, m):
    assert parpy.fib_mod(n, m) == parpy.reference.fib_mod(n, m)


@given(n=st.integers(min_value=0, max_value=2**64 - 1 - 1500))
def test_fib_mod_pisano_period_of_1000(impl, n):
    # The Pisano period of 1000 is 1500.
    assert impl.fib_mod(n + 1500, 1000) == impl.fib_mod(n, 1000)


@given(n=st.integers(min_value=1, max_value=2**62), m=MODULUS)
def test_fib_mod_doubling_identity(n, m):
    # F(2n) = F(n) (2 F(n + 1) - F(n)), modulo m.
    f, g = parpy.fib_mod(n, m), parpy.fib_mod(n + 1, m)
    assert parpy.fib_mod(2 * n, m) == f * (2 * g - f) % m


# ---- batches -----------------------------------------------------------------------


@given(
    ns=st.lists(st.integers(min_value=0, max_value=3000), max_size=200),
    workers=WORKERS,
    schedule=SCHEDULE,
    chunksize=CHUNKSIZE,
)
def test_batch_equals_single_calls(ns, workers, schedule, chunksize):
    got = parpy.fib_batch(ns, workers=workers, schedule=schedule, chunksize=chunksize)
    assert got == [parpy.reference.fib(n) for n in ns]


@given(
    ns=st.lists(st.integers(min_value=0, max_value=600), max_size=100),
    algorithm=st.sampled_from(["doubling", "iterative"]),
    workers=WORKERS,
)
def test_batch_algorithms_agree(ns, algorithm, workers):
    assert parpy.fib_batch(ns, algorithm=algorithm, workers=workers) == [parpy.fib(n) for n in ns]


@given(
    pool=st.lists(st.integers(min_value=0, max_value=3000), min_size=1, max_size=8),
    picks=st.lists(st.integers(min_value=0, max_value=7), max_size=300),
    workers=WORKERS,
    schedule=SCHEDULE,
)
def test_batch_keeps_order_and_duplicates(pool, picks, workers, schedule):
    # Few distinct values, many repeats, in any order.
    ns = [pool[i % len(pool)] for i in picks]
    got = parpy.fib_batch(ns, workers=workers, schedule=schedule)
    assert len(got) == len(ns)
    assert got == [parpy.fib(n) for n in ns]
    # Equal inputs give equal outputs wherever they sit.
    by_n = {}
    for n, value in zip(ns, got, strict=True):
        assert by_n.setdefault(n, value) == value


@given(ns=st.lists(st.integers(min_value=0, max_value=3000), max_size=100))
def test_batch_of_reversed_is_reversed_batch(ns):
    assert parpy.fib_batch(ns[::-1], workers=2) == parpy.fib_batch(ns, workers=2)[::-1]


@given(
    pairs=st.lists(st.tuples(U64_N, MODULUS), max_size=200),
    workers=WORKERS,
    schedule=SCHEDULE,
)
def test_fib_mod_batch_equals_single_calls(pairs, workers, schedule):
    got = parpy.map(parpy.fib_mod, pairs, workers=workers, schedule=schedule)
    assert got == [parpy.reference.fib_mod(n, m) for n, m in pairs]
