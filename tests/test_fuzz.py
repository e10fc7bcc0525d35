"""Fuzzing the public API with hypothesis: every input either returns the
reference answer or raises the documented exception, for single calls,
batches of mixed good and bad items, and odd options.

CI runs the default profile (bounded); ``HYPOTHESIS_PROFILE=long`` runs a
longer one locally.
"""

from __future__ import annotations

from collections import Counter

from _util import FIB_GMP_MAX_N, U64, Index
from hypothesis import assume, given
from hypothesis import strategies as st

import parpy
from parpy import reference

COMPUTABLE_N = 30_000  # the largest n whose F(n) the oracle computes
KERNELS = {
    "fib": (parpy.fib, reference.fib),
    "fib_iterative": (parpy.fib_iterative, reference.fib_iterative),
    "fib_recursive": (parpy.fib_recursive, reference.fib_recursive),
    "fib_mod": (parpy.fib_mod, reference.fib_mod),
}

# ints of every size and sign, but only those whose outcome is quick: small
# enough to compute, or past a limit that must be refused at once.
ints = st.one_of(
    st.integers(0, 200),
    st.integers(0, COMPUTABLE_N),
    st.integers(-(2**70), -1),
    st.integers(U64, 2**80),
    st.integers(FIB_GMP_MAX_N + 1, U64 - 1),
    st.sampled_from([0, 1, 92, 93, 94, U64 - 1, U64, -1, FIB_GMP_MAX_N, FIB_GMP_MAX_N + 1]),
)
not_ints = st.one_of(
    st.booleans(),
    st.floats(allow_nan=True),
    st.text(max_size=3),
    st.none(),
    st.just(b"7"),
    st.complex_numbers(),
    st.lists(st.integers(0, 5), max_size=2),
)
arguments = st.one_of(ints, not_ints, ints.map(Index))


def outcome_of_arg(value, name):
    """The exception the argument alone must raise, or its int value."""
    if isinstance(value, bool) or not isinstance(value, (int, Index)):
        return TypeError
    value = value.__index__()
    if value < 0:
        return ValueError
    if value >= U64:
        return OverflowError
    return value


def expected(kernel, args):
    """("value", x) or ("raises", ExceptionType) for kernel(*args)."""
    values = []
    for value, name in zip(args, ("n", "m"), strict=False):
        got = outcome_of_arg(value, name)
        if isinstance(got, type):
            return "raises", got
        values.append(got)
    n = values[0]
    if kernel == "fib_recursive" and n > 93:
        return "raises", OverflowError
    if kernel in ("fib", "fib_iterative") and n > FIB_GMP_MAX_N:
        return "raises", OverflowError
    if kernel == "fib_mod" and values[1] == 0:
        return "raises", ValueError
    if kernel == "fib_recursive" and n > 25:
        return "value", reference.fib(n)  # the twin's recursion is exponential
    if kernel in ("fib", "fib_iterative") and n > COMPUTABLE_N:
        return "unknown", None  # a huge n: may be refused (MemoryError) or not; never computed
    return "value", KERNELS[kernel][1](*values)


def run(call):
    try:
        return "value", call()
    except (TypeError, ValueError, OverflowError, MemoryError) as exc:
        return "raises", type(exc)


def check(kernel, args, got):
    want = expected(kernel, args)
    if want[0] != "unknown":
        assert got == want, (kernel, args)


@given(
    kernel=st.sampled_from(["fib", "fib_iterative", "fib_recursive"]),
    n=st.one_of(arguments.filter(lambda v: not _huge_but_computable(v)), not_ints),
)
def test_single_calls(kernel, n):
    value = outcome_of_arg(n, "n")
    # naive recursion past n = 30 runs for seconds to centuries
    assume(not (kernel == "fib_recursive" and isinstance(value, int) and 30 < value <= 93))
    check(kernel, (n,), run(lambda: KERNELS[kernel][0](n)))


@given(n=arguments, m=st.one_of(arguments, st.integers(1, U64 - 1)))
def test_fib_mod_calls(n, m):
    check("fib_mod", (n, m), run(lambda: parpy.fib_mod(n, m)))


def _huge_but_computable(value) -> bool:
    """n that fib() would actually compute but that takes too long for a fuzz run."""
    v = outcome_of_arg(value, "n")
    return isinstance(v, int) and COMPUTABLE_N < v <= FIB_GMP_MAX_N


batch_items = st.one_of(
    st.integers(0, 3000),
    st.integers(0, 3000).map(Index),
    arguments.filter(lambda v: not _huge_but_computable(v)),
)


@given(
    items=st.lists(batch_items, max_size=40),
    algorithm=st.sampled_from(["doubling", "iterative"]),
    workers=st.one_of(st.none(), st.integers(1, 9)),
    schedule=st.sampled_from([None, "static", "dynamic", "guided"]),
    chunksize=st.one_of(st.none(), st.integers(1, 1000)),
)
def test_batches_of_mixed_items(items, algorithm, workers, schedule, chunksize):
    kernel = "fib" if algorithm == "doubling" else "fib_iterative"
    outcomes = [expected(kernel, (item,)) for item in items]
    try:
        got = parpy.fib_batch(
            items, algorithm=algorithm, workers=workers, schedule=schedule, chunksize=chunksize
        )
    except (TypeError, ValueError, OverflowError, MemoryError) as exc:
        # the first item that must fail is the one named, with its exception
        bad = [(i, o) for i, o in enumerate(outcomes) if o[0] != "value"]
        assert bad, (items, exc)
        index, (status, exc_type) = bad[0]
        assert exc.__notes__ == [f"parpy.{kernel}: items[{index}]"], (items, exc)
        if status == "raises":
            assert type(exc) is exc_type, (items, exc)
    else:
        assert all(o[0] == "value" for o in outcomes), items
        assert got == [o[1] for o in outcomes]


@given(
    pairs=st.lists(
        st.one_of(
            st.tuples(st.integers(0, U64 - 1), st.integers(1, U64 - 1)),
            st.tuples(arguments, arguments),
            st.lists(st.integers(0, 99), min_size=0, max_size=3),
            not_ints,
        ),
        max_size=30,
    ),
    workers=st.integers(1, 5),
)
def test_fib_mod_batches(pairs, workers):
    def one(pair):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            return "raises", TypeError
        return expected("fib_mod", tuple(pair))

    outcomes = [one(p) for p in pairs]
    got = run(lambda: parpy.map(parpy.fib_mod, pairs, workers=workers))
    bad = [o for o in outcomes if o[0] != "value"]
    if bad:
        assert got == bad[0], pairs
    else:
        assert got == ("value", [o[1] for o in outcomes])


@given(
    workers=st.one_of(st.integers(-5, 0), st.integers(2**31, 2**70), not_ints),
    field=st.sampled_from(["workers", "chunksize"]),
)
def test_bad_options_are_refused(workers, field):
    if workers is None:  # None is the default, not a bad option
        assert parpy.fib_batch([1, 2], **{field: workers}) == [1, 1]
        return
    got = run(lambda: parpy.fib_batch([1, 2], **{field: workers}))
    assert got[0] == "raises" and got[1] in (TypeError, ValueError), (field, workers)


def test_a_huge_batch_of_tiny_items():
    items = [i % 94 for i in range(300_000)]
    table = [reference.fib(n) for n in range(94)]
    assert parpy.fib_batch(items, workers=2) == [table[n] for n in items]
    got = parpy.fib_batch(iter(items), workers=2, schedule="static", chunksize=997)
    assert got[-94:] == [table[n] for n in items[-94:]]


# ---- pools and executors: every item's own outcome ---------------------------------------

_POOL = None
_EXECUTOR = None


def _pools():
    """One pool and one executor for every example (module-lifetime, closed at exit)."""
    global _POOL, _EXECUTOR
    if _POOL is None:
        _POOL, _EXECUTOR = parpy.Pool(2), parpy.ThreadPoolExecutor(2)
    return _POOL, _EXECUTOR


def teardown_module():
    if _POOL is not None:
        _POOL.terminate()
        _POOL.join()
        _EXECUTOR.shutdown()


def _each(iterator):
    """Every item's outcome from an imap-style iterator that raises per item."""
    outcomes = []
    while True:
        try:
            outcomes.append(("value", iterator.next(timeout=60)))
        except StopIteration:
            return outcomes
        except (TypeError, ValueError, OverflowError, MemoryError) as exc:
            outcomes.append(("raises", type(exc)))


@given(
    items=st.lists(batch_items, max_size=40),
    kernel=st.sampled_from(["fib", "fib_iterative"]),
    chunksize=st.one_of(st.none(), st.integers(1, 50)),
)
def test_pool_and_executor_give_every_item_its_outcome(items, kernel, chunksize):
    pool, executor = _pools()
    native = KERNELS[kernel][0]
    outcomes = [expected(kernel, (item,)) for item in items]
    known = [o for o in outcomes if o[0] != "unknown"]
    # map: the whole batch, or the first bad item's exception
    got = run(lambda: pool.map(native, items, chunksize))
    bad = [o for o in outcomes if o[0] != "value"]
    if not bad:
        assert got == ("value", [o[1] for o in outcomes])
    elif bad[0][0] == "raises":
        assert got == bad[0], items
    # imap (default chunksize): each item's own value or exception, in order
    if len(known) == len(outcomes):
        assert _each(pool.imap(native, items)) == outcomes, items
        futures = [executor.submit(native, item) for item in items]
        assert [run(lambda f=f: f.result(60)) for f in futures] == outcomes, items
        unordered = _each(pool.imap_unordered(native, items))
        assert Counter(unordered) == Counter(outcomes), items
