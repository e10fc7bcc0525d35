"""Every kernel against the oracle, native against reference, and the Kernel type."""

from __future__ import annotations

import copy
import inspect
import pickle
import random

import pytest
from _util import U64, fib_exact, fib_table, mismatches, run_python

import parpy
import parpy.reference

KERNEL_NAMES = ["fib", "fib_iterative", "fib_recursive", "fib_mod", "to_decimal", "extract_links"]
ARGS = {"fib_mod": (2, 2), "extract_links": (1, 3)}  # (min_args, max_args) where not (1, 1)
BIG_KERNELS = ["fib", "fib_iterative"]

# ---- small n: every value ------------------------------------------------------


@pytest.mark.parametrize("kernel", BIG_KERNELS)
def test_big_kernels_on_0_to_2000(impl, kernel):
    table = fib_table(2000)
    got = [impl[kernel](n) for n in range(2001)]
    assert mismatches(got, table) == []


@pytest.mark.parametrize("kernel", BIG_KERNELS)
def test_native_equals_reference_on_0_to_2000(kernel):
    native, reference = getattr(parpy, kernel), getattr(parpy.reference, kernel)
    got = [native(n) for n in range(2001)]
    expected = [reference(n) for n in range(2001)]
    assert mismatches(got, expected) == []


def test_fib_recursive_on_small_n(impl):
    # Exponential time: natively up to 30, in Python up to 22.
    top = impl.recursive_max_n
    got = [impl.fib_recursive(n) for n in range(top + 1)]
    assert mismatches(got, fib_table(top)) == []


def test_fib_recursive_native_equals_reference():
    got = [parpy.fib_recursive(n) for n in range(23)]
    expected = [parpy.reference.fib_recursive(n) for n in range(23)]
    assert got == expected


def test_results_are_exact_ints(impl):
    for kernel in BIG_KERNELS:
        for n in (0, 1, 2, 93, 94, 1000):
            value = impl[kernel](n)
            assert type(value) is int
            assert value == fib_exact(n)
    assert type(impl.fib_recursive(10)) is int
    assert type(impl.fib_mod(10, 7)) is int


def test_known_values(impl):
    assert impl.fib(0) == 0
    assert impl.fib(1) == 1
    assert impl.fib(10) == 55
    assert impl.fib(93) == 12200160415121876738  # the largest F(n) below 2**64
    assert impl.fib(94) == 19740274219868223167  # the first above
    assert impl.fib(94) > U64 - 1 > impl.fib(93)
    assert impl.fib_iterative(100) == 354224848179261915075
    assert impl.fib_recursive(20) == 6765
    assert impl.fib_mod(100, 10**9 + 7) == 354224848179261915075 % (10**9 + 7)


# ---- large n ---------------------------------------------------------------------


def _limb_boundary_ns(n_max: int) -> list[int]:
    """n whose F(n) has a bit length at or next to a multiple of 64 or of 30
    (GMP limbs, CPython digits): where int conversion can go wrong."""
    table = fib_table(n_max)
    return [
        n
        for n in range(94, n_max + 1)
        if table[n].bit_length() % 64 in (63, 0, 1) or table[n].bit_length() % 30 in (29, 0, 1)
    ]


@pytest.mark.parametrize("kernel", BIG_KERNELS)
def test_native_at_limb_and_digit_boundaries(kernel):
    ns = _limb_boundary_ns(12000)
    assert len(ns) > 500
    table = fib_table(12000)
    native = getattr(parpy, kernel)
    assert mismatches([native(n) for n in ns], [table[n] for n in ns]) == []


@pytest.mark.parametrize("kernel", BIG_KERNELS)
def test_native_on_random_large_n(kernel):
    rng = random.Random(f"large-{kernel}")
    ns = [10**5, 10**5 + 1, 65536, 65537] + [rng.randrange(2000, 10**5) for _ in range(12)]
    native = getattr(parpy, kernel)
    assert mismatches([native(n) for n in ns], [parpy.reference.fib(n) for n in ns]) == []


def test_reference_iterative_on_random_large_n():
    # The reference loop is quadratic: a few values well above the table.
    rng = random.Random("reference-iterative")
    ns = [rng.randrange(2000, 20000) for _ in range(5)] + [10**5]
    got = [parpy.reference.fib_iterative(n) for n in ns]
    assert got == [parpy.fib(n) for n in ns]


def test_native_fib_million():
    value = parpy.fib(10**6)
    assert value == parpy.reference.fib(10**6)
    assert value.bit_length() == 694241


# ---- fib_mod -------------------------------------------------------------------


def _mod_pairs(count: int) -> list[tuple[int, int]]:
    rng = random.Random("fib_mod pairs")
    edge_n = [0, 1, 2, 3, 93, 94, 10**18, 2**63, U64 - 2, U64 - 1]
    edge_m = [1, 2, 3, 10, 2**32 - 1, 2**32, 2**63, 2**63 + 1, U64 - 59, U64 - 1]
    pairs = [(n, m) for n in edge_n for m in edge_m]
    while len(pairs) < count:
        n_bits, m_bits = rng.randint(1, 64), rng.randint(1, 64)
        pairs.append((rng.getrandbits(n_bits), max(1, rng.getrandbits(m_bits))))
    return pairs


def test_fib_mod_native_equals_reference():
    pairs = _mod_pairs(3000)
    got = [parpy.fib_mod(n, m) for n, m in pairs]
    expected = [parpy.reference.fib_mod(n, m) for n, m in pairs]
    bad = mismatches(got, expected)
    assert bad == [], [(pairs[i], got[i], expected[i]) for i in bad]


@pytest.mark.parametrize("m", [1, 2, 7, 10**9 + 7, 2**61 - 1, 2**64 - 1])
def test_fib_mod_against_table(impl, m):
    table = fib_table(2000)
    got = [impl.fib_mod(n, m) for n in range(2001)]
    assert mismatches(got, [f % m for f in table]) == []


def test_fib_mod_results_in_range(impl):
    for n, m in _mod_pairs(300):
        assert 0 <= impl.fib_mod(n, m) < m


# ---- the Kernel type -----------------------------------------------------------


@pytest.mark.parametrize("name", KERNEL_NAMES)
def test_kernels_are_kernel_instances(name):
    kernel = getattr(parpy, name)
    assert isinstance(kernel, parpy.Kernel)
    assert callable(kernel)
    assert kernel.__name__ == name
    assert kernel.__qualname__ == name
    assert kernel.__module__ == "parpy"
    assert (kernel.min_args, kernel.max_args) == ARGS.get(name, (1, 1))
    assert repr(kernel) == f"<parpy kernel {name}>"


DOC_STARTS = {
    "fib": "Return the n-th Fibonacci number F(n)",
    "fib_iterative": "Return F(n) by the loop",
    "fib_recursive": "Return F(n) by the naive recursion",
    "fib_mod": "Return F(n) mod m",
    "to_decimal": "Return the decimal digits of the int x",
    "extract_links": "Return the href of every <a> start tag",
}


@pytest.mark.parametrize("name", KERNEL_NAMES)
def test_kernel_doc_is_the_kernels_own(name):
    doc = getattr(parpy, name).__doc__
    assert isinstance(doc, str)
    # Each kernel documents itself, not the Kernel type, and without the
    # "name(sig)\n--\n\n" header that is there for __text_signature__.
    assert doc != parpy.Kernel.__doc__
    assert doc.startswith(DOC_STARTS[name])
    assert "\n--\n" not in doc


@pytest.mark.parametrize(
    ("name", "signature"),
    [
        ("fib", "(n, /, *, workers=None)"),
        ("fib_iterative", "(n, /)"),
        ("fib_recursive", "(n, /)"),
        ("fib_mod", "(n, m, /)"),
        ("to_decimal", "(x, /, *, workers=None)"),
        ("extract_links", "(html, /, base_url=None, mode='html')"),
    ],
)
def test_kernel_signature(name, signature):
    kernel = getattr(parpy, name)
    assert kernel.__text_signature__ == signature
    assert str(inspect.signature(kernel)) == signature


@pytest.mark.parametrize("name", KERNEL_NAMES)
@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_kernel_pickles_by_name(name, protocol):
    kernel = getattr(parpy, name)
    assert pickle.loads(pickle.dumps(kernel, protocol=protocol)) is kernel


@pytest.mark.parametrize("name", KERNEL_NAMES)
def test_kernel_copies_are_itself(name):
    kernel = getattr(parpy, name)
    assert copy.copy(kernel) is kernel
    assert copy.deepcopy(kernel) is kernel


def test_kernel_type_cannot_be_instantiated_or_subclassed():
    with pytest.raises(TypeError):
        parpy.Kernel()
    with pytest.raises(TypeError):
        type(parpy.fib)()
    with pytest.raises(TypeError):

        class Sub(parpy.Kernel):  # noqa: F841
            pass


def test_kernel_attributes_are_read_only():
    for attr, value in [("min_args", 3), ("max_args", 3), ("output", None), ("__name__", "x")]:
        with pytest.raises((AttributeError, TypeError)):
            setattr(parpy.fib, attr, value)
    assert parpy.fib.max_args == 1
    assert parpy.fib.__name__ == "fib"


def test_every_registered_kernel_is_exported_and_has_a_twin():
    assert parpy._core.__all__ == KERNEL_NAMES
    assert set(KERNEL_NAMES) <= set(parpy.__all__)
    assert sorted(parpy.reference.__all__) == sorted(KERNEL_NAMES)
    for name in KERNEL_NAMES:
        twin = getattr(parpy.reference, name)
        assert callable(twin)
        assert not isinstance(twin, parpy.Kernel)
        assert twin.__name__ == name


def test_reimport_makes_a_new_module():
    # Multi-phase init: importing _core again gives a fresh module whose kernels work.
    proc = run_python(
        """
        import sys
        import parpy._core as first
        del sys.modules["parpy._core"]
        import parpy._core as second
        assert second is not first
        assert second.Kernel is not first.Kernel
        assert second.fib(100) == first.fib(100) == 354224848179261915075
        assert second.Batch(second.fib, [10, 20], workers=2).run() == [55, 6765]
        print("ok")
        """,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ok"]
