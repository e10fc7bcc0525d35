"""Users' C functions that can fail: an int status and the result through a pointer.

"int(float64, float64*)" is ``int f(double x, double *out)``: a status other than 0 raises
parpy.StatusError for that item (its ``status``, its position in a note), and no other item's
result is lost or mixed up. The functions are tests/c/userfuncs.c's checked_*, checked against
their references in _clib.FAILING, which give (status, result).
"""

from __future__ import annotations

import array
import concurrent.futures
import ctypes
import math
import multiprocessing
import pickle
import random

import _clib
import pytest
from _clib import DASK, FAILING, NUMPY, capsule, cdll, ctypes_function, library

import parpy

I64_MIN, I64_MAX, U64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


def rows_of(name: str, count: int = 300, seed: int = 5) -> list[tuple]:
    """Edge values, then random ones; about one row in five fails."""
    rng = random.Random(seed)
    if name == "checked_inverse":
        edges = [0.0, -0.0, 1.0, 3.0, -1e-300, 5e-324, 1e308, math.inf, -math.inf, math.nan]
        return [(x,) for x in edges] + [
            (rng.choice([0.0, rng.uniform(-1e6, 1e6)]),) for _ in range(count)
        ]
    if name == "checked_div":
        edges = [(7, 2), (-7, 2), (7, -2), (1, 0), (I64_MIN, -1), (I64_MIN, 1), (I64_MAX, -1)]
        return edges + [
            (rng.randint(I64_MIN, I64_MAX), rng.choice([0, *range(-50, 50)])) for _ in range(count)
        ]
    edges = [(U64_MAX, 1.5, -1), (0, math.inf, I64_MIN), (3, math.nan, 4), (3, -0.5, 4)]
    return edges + [
        (rng.randint(0, U64_MAX), rng.uniform(-20, 80), rng.randint(I64_MIN, I64_MAX))
        for _ in range(count)
    ]


def outcome(call, *args):
    """("ok", result) or ("status", status) of one call."""
    try:
        return ("ok", call(*args))
    except parpy.StatusError as exc:
        return ("status", exc.status)


def expected_outcomes(name: str, rows: list[tuple]) -> list[tuple]:
    reference = FAILING[name][1]
    return [
        ("ok", r) if s == 0 else ("status", s) for s, r in map(lambda row: reference(*row), rows)
    ]


def same(got, expected) -> bool:
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(got, float) and math.isnan(got)
    return type(got) is type(expected) and got == expected


def kernel(name: str, how: str = "library") -> parpy.Kernel:
    """_clib.kernel, and from_cfunc of a capsule or a cffi pointer."""
    if how == "capsule":
        return parpy.Kernel.from_cfunc(capsule(name, DECLARATIONS[name]), name=name)
    if how == "cffi":
        cffi = pytest.importorskip("cffi")
        ffi = cffi.FFI()
        ffi.cdef(CDEF)
        return parpy.Kernel.from_cfunc(getattr(ffi.dlopen(str(library())), name), name=name)
    return _clib.kernel(name, how)


DECLARATIONS = {
    "checked_inverse": b"int (double, double *)",
    "checked_div": b"int (int64_t a, int64_t b, int64_t *out)",
    "checked_mix": b"int (uint64_t, double, int64_t, uint64_t*)",
}
CDEF = """
int checked_inverse(double x, double *out);
int checked_div(int64_t a, int64_t b, int64_t *out);
int checked_mix(uint64_t a, double b, int64_t c, uint64_t *out);
"""


# ---- construction and single calls -----------------------------------------------------


@pytest.mark.parametrize("how", ["library", "ctypes", "address", "capsule", "cffi"])
@pytest.mark.parametrize("name", sorted(FAILING))
def test_each_constructor_gives_results_and_statuses(name, how):
    k = kernel(name, how)
    assert k.signature == FAILING[name][0]
    assert k.min_args == k.max_args == FAILING[name][0].count(",")
    rows = rows_of(name)
    expected = expected_outcomes(name, rows)
    assert {kind for kind, _ in expected} == {"ok", "status"}  # both are exercised
    for row, want in zip(rows, expected, strict=True):
        got = outcome(k, *row)
        assert got[0] == want[0] and same(got[1], want[1]), (row, got, want)


def test_the_status_error_says_what_failed():
    k = kernel("checked_div")
    with pytest.raises(parpy.StatusError, match=r"^checked_div: returned status -1$") as info:
        k(1, 0)
    assert info.value.status == -1
    assert isinstance(info.value, RuntimeError)
    assert "parpy.StatusError" in k.__doc__
    # It pickles with its status, as worker processes send it back.
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is parpy.StatusError and again.status == -1
    assert str(again) == str(info.value)


@pytest.mark.parametrize(
    ("signature", "match"),
    [
        ("int(float64)", "then its result's pointer"),
        ("int(float64*)", "then its result's pointer"),
        ("int(float64*, float64)", "must be the last argument"),
        ("int(float64, float64*, float64*)", "must be the last argument"),
        ("float64(float64, float64*)", r"after a status: int\(..., float64\*\)"),
        ("int(float64, float64, float64, float64, float64*)", "at most 3 arguments"),
        ("int(float32, float64*)", "argument 1 must be int64, uint64 or float64"),
        ("int32(float64, float64*)", "the result type must be"),
    ],
)
def test_bad_status_signatures_are_refused(signature, match):
    with pytest.raises(ValueError, match=match):
        parpy.Kernel.from_library(library(), "checked_inverse", signature)


def test_signatures_with_spaces_read_the_same():
    k = parpy.Kernel.from_library(library(), "checked_div", " int ( int64 ,int64,  int64 * ) ")
    assert k.signature == "int(int64, int64, int64*)"
    assert k(9, 4) == 2


@pytest.mark.parametrize(
    ("declaration", "match"),
    [
        (b"int (double)", "returns an int"),
        (b"int (double *, double)", r"double \* is not int64"),
        (b"double (double, double *)", r"double \* is not int64"),
        (b"int (double, float *)", "float is not int64"),
        (b"int (double, double **)", "is not int64"),
    ],
)
def test_declarations_of_other_shapes_are_refused(declaration, match):
    with pytest.raises(ValueError, match=match):
        parpy.Kernel.from_cfunc(capsule("checked_inverse", declaration))


def test_ctypes_functions_of_other_shapes_are_refused():
    fn = cdll().checked_inverse
    fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_double, ctypes.c_double]
    with pytest.raises(ValueError, match="then its result.s pointer"):
        parpy.Kernel.from_cfunc(fn)
    fn.argtypes = [ctypes.POINTER(ctypes.c_double), ctypes.c_double]
    with pytest.raises(ValueError, match="is not supported"):
        parpy.Kernel.from_cfunc(fn)
    fn.argtypes = [ctypes.c_double, ctypes.POINTER(ctypes.c_float)]
    with pytest.raises(ValueError, match="is not supported"):
        parpy.Kernel.from_cfunc(fn)
    fn.argtypes = [ctypes.POINTER(ctypes.c_double)]
    with pytest.raises(ValueError, match="takes 1 arguments"):
        parpy.Kernel.from_cfunc(fn)
    # The same function described truthfully is a kernel.
    fn.argtypes = [ctypes.c_double, ctypes.POINTER(ctypes.c_double)]
    assert parpy.Kernel.from_cfunc(fn)(0.25) == 4.0


def test_a_given_signature_is_checked_against_a_status_function():
    fn = ctypes_function("checked_inverse")
    assert parpy.Kernel.from_cfunc(fn, "int(float64, float64*)").signature == (
        "int(float64, float64*)"
    )
    with pytest.raises(ValueError, match="does not match"):
        parpy.Kernel.from_cfunc(fn, "float64(float64)")
    with pytest.raises(ValueError, match="does not match"):
        parpy.Kernel.from_cfunc(fn, "int(float64, int64*)")


# ---- batches: the first failing item, no other result lost -------------------------------


def first_failure(expected: list[tuple]) -> int:
    return next(i for i, (kind, _) in enumerate(expected) if kind == "status")


@pytest.mark.parametrize("name", sorted(FAILING))
def test_a_batch_raises_for_its_first_failing_item(name):
    k = kernel(name)
    rows = rows_of(name)
    expected = expected_outcomes(name, rows)
    items = [r[0] for r in rows] if len(rows[0]) == 1 else rows
    i = first_failure(expected)
    for workers in (1, 2):
        with pytest.raises(parpy.StatusError) as info:
            parpy.map(k, items, workers=workers)
        assert info.value.status == expected[i][1]
        assert f"parpy.{name}: items[{i}]" in info.value.__notes__
    # Without the failing items, every result.
    good = [item for item, (kind, _) in zip(items, expected, strict=True) if kind == "ok"]
    got = parpy.map(k, good, workers=2)
    want = [value for kind, value in expected if kind == "ok"]
    assert all(same(g, w) for g, w in zip(got, want, strict=True))


def test_pools_and_executors_keep_every_other_items_result():
    d = kernel("checked_div")
    rows = rows_of("checked_div")
    expected = expected_outcomes("checked_div", rows)
    i = first_failure(expected)
    with parpy.ThreadPoolExecutor(2) as executor:
        futures = [executor.submit(d, *row) for row in rows]
        for future, want in zip(futures, expected, strict=True):
            error = future.exception(timeout=60)
            got = ("status", error.status) if error else ("ok", future.result())
            assert got == want
        # executor.map: the results before the failing item, then its error.
        it = executor.map(d, *zip(*rows, strict=True), timeout=60)
        assert [next(it) for _ in range(i)] == [value for _, value in expected[:i]]
        with pytest.raises(parpy.StatusError):
            next(it)
    inverse = kernel("checked_inverse")
    xs = [float(x) for x in range(-3, 400)][::-1]  # fails at item 399
    with parpy.Pool(2) as pool:
        async_results = [pool.apply_async(d, row) for row in rows]
        for result, want in zip(async_results, expected, strict=True):
            assert outcome(result.get, 60) == want
        with pytest.raises(parpy.StatusError) as info:
            pool.starmap(d, rows)
        assert info.value.status == expected[i][1]
        assert f"parpy.checked_div: items[{i}]" in info.value.__notes__
        it = pool.imap(inverse, xs, chunksize=16)
        got = [next(it) for _ in range(399)]
        assert got == [FAILING["checked_inverse"][1](x)[1] for x in xs[:399]]
        with pytest.raises(parpy.StatusError) as info:
            next(it)
        assert info.value.status == 3
        unordered = set()
        with pytest.raises(parpy.StatusError):
            for value in pool.imap_unordered(inverse, xs, chunksize=16):
                unordered.add(value)
        assert unordered <= {FAILING["checked_inverse"][1](x)[1] for x in xs[:399] + xs[400:]}


@NUMPY
@pytest.mark.parametrize("chunksize", [None, 1, 1000])
def test_a_buffer_batch_stops_at_its_first_failing_element(chunksize):
    numpy = pytest.importorskip("numpy")
    k = kernel("checked_inverse")
    x = numpy.arange(1, 200_001, dtype=numpy.float64)
    for bad in ([150_000], [3, 199_999], [199_999], [0], [70_001, 70_000, 120_000]):
        y = x.copy()
        y[bad] = 0.0
        out = numpy.full_like(y, -7.0)
        for workers in (1, 2):
            with pytest.raises(parpy.StatusError) as info:
                parpy.map(k, y, out=out, workers=workers, chunksize=chunksize)
            first = min(bad)
            assert info.value.status == 3
            assert info.value.__notes__ == [f"parpy.checked_inverse: items[{first}]"]
            # Every element before the failing one is computed, and right.
            assert numpy.array_equal(out[:first], 1.0 / x[:first])
    assert numpy.array_equal(parpy.map(k, x, workers=2), 1.0 / x)


def test_array_and_memoryview_buffers_of_a_status_function():
    k = kernel("checked_div").bind(-3)
    values = array.array("q", [I64_MIN, -7, 0, 7, I64_MAX])
    want = [FAILING["checked_div"][1](v, -3)[1] for v in values]
    assert parpy.map(k, values).tolist() == want
    assert parpy.map(k, memoryview(values)).tolist() == want
    with pytest.raises(parpy.StatusError, match="status -2") as info:
        parpy.map(kernel("checked_div").bind(-1), values)
    assert info.value.__notes__ == ["parpy.checked_div: items[0]"]
    mix = kernel("checked_mix").bind(2.5, 3)
    assert parpy.map(mix, array.array("Q", [0, 1, U64_MAX])).tolist() == [
        2,
        5,
        (3 * U64_MAX + 2) & U64_MAX,
    ]


def test_a_status_kernel_as_a_pipeline_stage():
    inverse = kernel("checked_inverse")
    plus = parpy.Kernel.from_library(library(), "square_plus_one", "float64(float64)")
    xs = [float(x) for x in range(1000)]
    with parpy.Pipeline([plus, inverse, inverse]) as pipe:
        assert pipe.map(xs) == [1.0 / (1.0 / (x * x + 1.0)) for x in xs]
    shift = parpy.Kernel.from_library(library(), "mix", "float64(uint64, float64, int64)")
    ns = range(999, -1, -1)  # n - 500 is 0 at item 499
    note = "parpy.Pipeline: stages[1] (checked_inverse) failed on item 499"
    with parpy.Pipeline([shift.bind(1.0, 500), inverse]) as pipe:
        with pytest.raises(parpy.StatusError) as info:
            pipe.map(ns)
        assert info.value.status == 3 and note in info.value.__notes__
    # A pipeline stops at its first failure (as for every stage): what it gave before is
    # right, in order, and nothing after the failing item comes out.
    with parpy.Pipeline([shift.bind(1.0, 500), inverse]) as pipe:
        got = []
        with pytest.raises(parpy.StatusError) as info:
            for value in pipe.imap(ns):
                got.append(value)
        assert got == [1.0 / (n - 500) for n in ns[: len(got)]] and len(got) <= 499
        assert note in info.value.__notes__


# ---- other processes and other tools -------------------------------------------------


def test_worker_processes_get_the_status_error():
    d = kernel("checked_div")
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        assert pool.starmap(d, [(9, 3), (-9, 2)]) == [3, -4]
        with pytest.raises(parpy.StatusError) as info:
            pool.starmap(d, [(9, 3), (1, 0)])
        assert info.value.status == -1
    with concurrent.futures.ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("forkserver")
    ) as executor:
        error = executor.submit(parpy.map, d.bind(0), [5, 6]).exception(60)
        assert type(error) is parpy.StatusError and error.status == -1


@DASK
def test_a_dask_cluster_raises_the_status_error():
    distributed = pytest.importorskip("distributed")
    from _util import local_cluster

    inverse = kernel("checked_inverse")
    with local_cluster() as cluster, distributed.Client(cluster) as client:
        assert parpy.map(inverse, [4.0, -8.0], client=client) == [0.25, -0.125]
        with pytest.raises(parpy.StatusError) as info:
            parpy.map(inverse, [4.0, 0.0, 16.0], client=client)
        assert info.value.status == 3


@NUMPY
def test_a_numba_cfunc_with_a_status():
    numba = pytest.importorskip("numba")
    types = numba.types

    @numba.cfunc(types.int32(types.int64, types.int64, types.CPointer(types.int64)))
    def floor_div(a, b, out):
        if b == 0:
            return 9
        out[0] = a // b
        return 0

    k = parpy.Kernel.from_cfunc(floor_div)
    assert k.signature == "int(int64, int64, int64*)"
    assert parpy.map(k, [(7, 2), (-7, 2)]) == [3, -4]
    with pytest.raises(parpy.StatusError) as info:
        parpy.map(k, [(7, 2), (7, 0)], workers=2)
    assert info.value.status == 9 and info.value.__notes__ == ["parpy.floor_div: items[1]"]


def test_compare_runs_a_status_function_on_the_python_backends():
    inverse = kernel("checked_inverse")
    xs = [float(x) for x in range(1, 2000)]
    report = parpy.compare(inverse, xs, workers=[1, 2], backends=["parpy", "threading"], repeat=1)
    assert {row.backend for row in report.rows} >= {"parpy", "threading"}
    with pytest.raises(parpy.StatusError) as info:
        parpy.compare(inverse, [*xs, 0.0], workers=[1], backends=["parpy", "threading"], repeat=1)
    assert info.value.status == 3
