"""Users' own C functions as kernels: Kernel.from_cfunc and Kernel.from_library.

The functions are tests/c/userfuncs.c, built by tests/_clib.py with the system's compiler;
every result is checked against the function's pure-Python reference (_clib.FUNCTIONS).
Numba, cffi and capsules: tests/test_cfunc_tools.py.
"""

from __future__ import annotations

import array
import concurrent.futures
import ctypes
import math
import multiprocessing
import os
import pickle
import random
import struct
import threading
import time

import pytest
from _clib import DASK, FUNCTIONS, NUMPY, ctypes_function, kernel, library
from _util import finish, interactive, interrupt_rounds, run_python

import parpy

I64_MIN, I64_MAX, U64_MAX = -(2**63), 2**63 - 1, 2**64 - 1
EDGES = {
    "float64": [0.0, -0.0, 1.5, -2.25, 1e308, -1e308, 5e-324, math.inf, -math.inf, math.nan],
    "int64": [0, 1, -1, I64_MIN, I64_MAX, 12345678901234],
    "uint64": [0, 1, U64_MAX, 2**63, 12345678901234],
}
TYPECODES = {"float64": "d", "int64": "q", "uint64": "Q"}


def doubles(values) -> array.array:
    return array.array("d", values)


def types_of(name: str) -> tuple[str, list[str]]:
    result, _, args = FUNCTIONS[name][0].partition("(")
    return result, [a.strip() for a in args.rstrip(")").split(",")]


def values(kind: str, count: int, rng: random.Random) -> list:
    """Edge values of a type, then random ones."""
    random_value = {
        "float64": lambda: rng.choice([rng.uniform(-1e6, 1e6), rng.gauss(0, 1)]),
        "int64": lambda: rng.randint(-(2**40), 2**40),
        "uint64": lambda: rng.randint(0, 2**40),
    }[kind]
    return EDGES[kind] + [random_value() for _ in range(count)]


def same(got, expected) -> bool:
    """Equal, NaN equal to NaN and -0.0 told from 0.0: the bits of the C result."""
    if isinstance(expected, float):
        return isinstance(got, float) and struct.pack("d", got) == struct.pack("d", expected)
    return type(got) is int and got == expected


def arguments(name: str, rng: random.Random, count: int = 200) -> list[tuple]:
    _, args = types_of(name)
    columns = [values(kind, count, rng) for kind in args]
    size = max(len(c) for c in columns)
    rows = [tuple(c[i % len(c)] for c in columns) for i in range(size)]
    if name == "collatz_steps":  # stays well within uint64 for these starting values
        rows = [(n % 10**6,) for (n,) in rows]
    return rows


def expected_of(name: str, rows: list[tuple]) -> list:
    reference = FUNCTIONS[name][1]
    result, _ = types_of(name)
    cast = float if result == "float64" else int
    return [cast(reference(*row)) for row in rows]


# ---- construction ---------------------------------------------------------------


@pytest.mark.parametrize("how", ["library", "ctypes", "address"])
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_each_constructor_gives_the_functions_results(name, how):
    k = kernel(name, how)
    rows = arguments(name, random.Random(name))
    expected = expected_of(name, rows)
    got = [k(*row) for row in rows]
    assert all(same(g, e) for g, e in zip(got, expected, strict=True))
    batch = parpy.map(k, rows if len(rows[0]) > 1 else [r[0] for r in rows], workers=2)
    assert all(same(g, e) for g, e in zip(batch, expected, strict=True))
    assert k.signature == FUNCTIONS[name][0] and k.__name__ == name
    assert k.min_args == k.max_args == len(rows[0])


def test_the_kernel_says_what_it_is():
    k = kernel("mix")
    assert repr(k) == "<parpy kernel mix>"
    assert str(k.__signature__) == "(x, y, z, /)"
    assert "float64(uint64, float64, int64)" in k.__doc__
    assert k.input == "uint64" and k.output == "float64"
    assert parpy.fib.signature is None


def test_a_ctypes_function_without_argtypes_needs_the_signature():
    fn = ctypes.CDLL(str(library())).square_plus_one  # no argtypes, restype int
    with pytest.raises(TypeError, match="give signature="):
        parpy.Kernel.from_cfunc(fn)
    k = parpy.Kernel.from_cfunc(fn, "float64(float64)")
    assert k(3.0) == 10.0


def test_a_given_signature_is_checked_against_the_functions():
    fn = ctypes_function("add_i64")
    assert parpy.Kernel.from_cfunc(fn, " int64 ( int64,int64 ) ")(2, 3) == 5
    with pytest.raises(ValueError, match="does not match the function's, int64"):
        parpy.Kernel.from_cfunc(fn, "float64(float64, float64)")


@pytest.mark.parametrize(
    ("signature", "error", "match"),
    [
        ("float64", ValueError, "expected '\\('"),
        ("float64()", ValueError, "argument 1 must be"),
        ("float32(float64)", ValueError, "result type"),
        ("float64(int32)", ValueError, "argument 1 must be"),
        ("float64(float64, float64, float64, float64)", ValueError, "at most 3"),
        ("float64(float64) x", ValueError, "unexpected text"),
        ("float64(float64", ValueError, "expected ',' or '\\)'"),
        (b"float64(float64)", TypeError, "must be a str"),
    ],
)
def test_bad_signatures_are_refused(signature, error, match):
    address = ctypes.cast(ctypes_function("identity_f64"), ctypes.c_void_p).value
    with pytest.raises(error, match=match):
        parpy.Kernel.from_cfunc(address, signature)
    if isinstance(signature, str):
        with pytest.raises(error, match=match):
            parpy.Kernel.from_library(library(), "identity_f64", signature)


@pytest.mark.parametrize(
    ("fn", "kwargs", "error", "match"),
    [
        (0, {"signature": "float64(float64)"}, ValueError, "NULL"),
        (1234, {}, TypeError, "give signature="),
        (True, {"signature": "float64(float64)"}, TypeError, "not bool"),
        ("cos", {"signature": "float64(float64)"}, TypeError, "a ctypes function"),
        (-1, {"signature": "float64(float64)"}, ValueError, "cannot be negative"),
        (2**64, {"signature": "float64(float64)"}, OverflowError, "too large"),
    ],
)
def test_bad_functions_are_refused(fn, kwargs, error, match):
    with pytest.raises(error, match=match):
        parpy.Kernel.from_cfunc(fn, **kwargs)


def test_unsupported_ctypes_types_are_named():
    fn = ctypes.CDLL(str(library())).identity_i64
    fn.argtypes, fn.restype = [ctypes.c_int32], ctypes.c_int64
    with pytest.raises(ValueError, match="c_int.*not supported"):
        parpy.Kernel.from_cfunc(fn)
    fn.argtypes, fn.restype = [ctypes.c_int64], None
    with pytest.raises(ValueError, match="returns nothing"):
        parpy.Kernel.from_cfunc(fn)


def test_from_library_errors():
    with pytest.raises(OSError, match="cannot open"):
        parpy.Kernel.from_library("/nonexistent/libnothing.so", "f", "float64(float64)")
    with pytest.raises(AttributeError, match="has no function no_such_function"):
        parpy.Kernel.from_library(library(), "no_such_function", "float64(float64)")
    with pytest.raises(TypeError, match="needs the signature"):
        parpy.Kernel.from_library(library(), "identity_f64", None)
    with pytest.raises(TypeError, match="name must be a non-empty str"):
        parpy.Kernel.from_library(library(), "identity_f64", "float64(float64)", name="")


def test_from_library_takes_paths_and_bare_names(tmp_path, monkeypatch):
    k = parpy.Kernel.from_library(os.fspath(library()), "identity_i64", "int64(int64)", name="id")
    assert k.__name__ == "id" and k(-5) == -5
    monkeypatch.chdir(library().parent)
    relative = parpy.Kernel.from_library("./" + library().name, "identity_i64", "int64(int64)")
    monkeypatch.chdir(tmp_path)
    # made absolute when made: a pickle opens the same file from anywhere
    assert pickle.loads(pickle.dumps(relative))(7) == 7
    cos = parpy.Kernel.from_library("libm.so.6", "cos", "float64(float64)")
    assert cos(0.0) == 1.0 and pickle.loads(pickle.dumps(cos))(0.0) == 1.0


# ---- arguments -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "args", "error", "match"),
    [
        ("identity_i64", (1.0,), TypeError, "argument 1 must be an int, not float"),
        ("identity_i64", (True,), TypeError, "not bool"),
        ("identity_i64", (2**63,), OverflowError, "range of int64"),
        ("identity_i64", (-(2**63) - 1,), OverflowError, "range of int64"),
        ("identity_u64", (-1,), OverflowError, "range of uint64"),
        ("identity_u64", (2**64,), OverflowError, "range of uint64"),
        ("identity_f64", ("1",), TypeError, "must be a number, not str"),
        ("identity_f64", (2**1024,), OverflowError, "too large to convert to float"),
        ("mix", (1, 2.0), TypeError, "takes exactly 3 arguments"),
        ("identity_f64", (1.0, 2.0), TypeError, "exactly 1 positional argument"),
    ],
)
def test_bad_arguments_raise_before_the_call(name, args, error, match):
    with pytest.raises(error, match=match):
        kernel(name)(*args)


def test_ints_and_index_objects_are_taken_as_numbers():
    class Index:
        def __index__(self):
            return 41

    assert kernel("identity_i64")(Index()) == 41
    assert kernel("identity_u64")(U64_MAX) == U64_MAX
    assert kernel("identity_f64")(3) == 3.0 and type(kernel("identity_f64")(3)) is float


def test_a_bad_item_in_a_batch_names_its_position_and_nothing_runs():
    k = kernel("identity_i64")
    with pytest.raises(OverflowError) as info:
        parpy.map(k, [1, 2, 3, 2**70, 5])
    assert any("items[3]" in note for note in info.value.__notes__)


# ---- bind ------------------------------------------------------------------------


def test_bind_fixes_the_trailing_arguments():
    add = kernel("add_i64")
    add5 = add.bind(5)
    assert (
        repr(add5) == "<parpy kernel add_i64.bind(5)>" and add5.signature == "int64(int64, int64)"
    )
    assert add5(10) == 15 and parpy.map(add5, range(5)) == [5, 6, 7, 8, 9]
    mix = kernel("mix").bind(0.5, 3)
    assert mix(1002) == 2 * 0.5 - 3
    with pytest.raises(OverflowError):
        add.bind(2**63)
    with pytest.raises(TypeError, match="bound already"):
        add5.bind(1)


def test_a_bound_kernel_outlives_the_one_it_was_bound_from():
    add5 = kernel("add_i64").bind(5)  # the unbound kernel is gone at once
    assert parpy.map(add5, array.array("q", range(4))).tolist() == [5, 6, 7, 8]


def test_library_kernels_pickle_and_address_ones_say_why_not():
    for k in (kernel("mix"), kernel("add_i64").bind(-7)):
        copy = pickle.loads(pickle.dumps(k))
        assert copy.signature == k.signature and repr(copy) == repr(k)
    assert pickle.loads(pickle.dumps(kernel("add_i64").bind(-7)))(10) == 3
    with pytest.raises(TypeError, match="make it with Kernel.from_library"):
        pickle.dumps(kernel("mix", "ctypes"))


# ---- buffers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["square_plus_one", "identity_f64", "identity_i64", "identity_u64", "collatz_steps"]
)
@pytest.mark.parametrize("container", ["array", "memoryview"])
def test_buffers_in_give_the_same_container_out(name, container):
    result, (kind,) = types_of(name)
    xs = [row[0] for row in arguments(name, random.Random(name), 5000)]
    expected = expected_of(name, [(x,) for x in xs])
    source = array.array(TYPECODES[kind], xs)
    items = source if container == "array" else memoryview(source)
    got = parpy.map(kernel(name), items, workers=2)
    assert type(got) is type(items)
    assert (got.typecode if container == "array" else got.format) == TYPECODES[result]
    out = got.tolist()
    assert len(out) == len(expected) and all(same(g, e) for g, e in zip(out, expected, strict=True))


@NUMPY
def test_numpy_arrays_in_give_numpy_arrays_of_their_shape_out():
    import numpy as np

    k = kernel("square_plus_one")
    x = np.arange(12.0).reshape(3, 4)
    got = parpy.map(k, x, workers=2)
    assert type(got) is np.ndarray and got.shape == (3, 4) and got.dtype == np.float64
    assert got.tolist() == (x**2 + 1).tolist()
    assert parpy.map(kernel("collatz_steps"), np.arange(5, dtype=np.uint64)).dtype == np.uint64
    assert parpy.map(k, np.empty(0)).shape == (0,)
    assert parpy.map(k, x[:, ::2].copy()).shape == (3, 2)
    with pytest.raises(ValueError, match="C-contiguous"):
        parpy.map(k, x[:, ::2])
    with pytest.raises(TypeError, match="format 'l'"):
        parpy.map(k, np.arange(10))
    with pytest.raises(TypeError, match="format 'f'"):
        parpy.map(k, np.arange(10, dtype=np.float32))
    assert kernel("identity_u64")(np.uint64(2**64 - 1)) == 2**64 - 1


def test_out_is_written_in_place_too():
    k = kernel("square_plus_one")
    x = doubles(range(12))
    out = doubles([-1.0] * 12)
    assert parpy.map(k, x, out=out) is out and out.tolist() == [v * v + 1 for v in range(12)]
    view = memoryview(bytearray(8 * 12)).cast("d", (3, 4))
    assert parpy.map(k, memoryview(x).cast("B").cast("d", (3, 4)), out=view) is view
    assert parpy.map(k, doubles([])).tolist() == []
    same_buffer = doubles(range(5))
    parpy.map(k, same_buffer, out=same_buffer)
    assert same_buffer.tolist() == [1.0, 2.0, 5.0, 10.0, 17.0]


def test_bad_buffers_are_refused_before_any_work():
    k = kernel("square_plus_one")
    x = doubles(range(10))
    out = doubles([0.0] * 10)
    cases = [
        (lambda: parpy.map(k, array.array("q", range(10))), TypeError, "format 'd'"),
        (lambda: parpy.map(k, array.array("f", range(10))), TypeError, "format 'f'"),
        (lambda: parpy.map(k, memoryview(x)[::2]), ValueError, "C-contiguous"),
        (lambda: parpy.map(k, x, out=memoryview(out)[::2]), ValueError, "C-contiguous"),
        (lambda: parpy.map(k, x, out=bytes(80)), TypeError, "out must be writable"),
        (lambda: parpy.map(k, x, out=doubles(range(9))), ValueError, "out has 9 elements"),
        (lambda: parpy.map(k, x, out=array.array("q", range(10))), TypeError, "format 'q'"),
        (lambda: parpy.map(kernel("add_i64"), array.array("q", [1])), TypeError, "bind the"),
        (lambda: parpy.map(parpy.fib, [1], out=doubles([0.0])), TypeError, "out= is for"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()
    assert out.tolist() == [0.0] * 10


def test_a_bound_kernel_runs_over_a_buffer():
    got = parpy.map(kernel("mix").bind(2.0, 1), array.array("Q", range(2000)), workers=2)
    assert got.tolist() == [float(a % 1000) * 2.0 - 1.0 for a in range(2000)]


@pytest.mark.parametrize("schedule", [None, "static", "dynamic", "guided"])
def test_schedules_and_chunksizes_cover_every_element(schedule):
    x = array.array("Q", range(100_003))
    for chunksize in (None, 1, 7, 10**6):
        got = parpy.map(
            kernel("identity_u64"), x, workers=2, schedule=schedule, chunksize=chunksize
        )
        assert got == x


def test_progress_counts_a_buffer():
    pytest.importorskip("tqdm")
    got = parpy.map(kernel("square_plus_one"), doubles(range(5000)), progress=True)
    assert got[-1] == 4999.0**2 + 1


# ---- every executor ------------------------------------------------------------------


def test_pools_and_executors_run_user_kernels():
    k = kernel("collatz_steps")
    ns = list(range(1, 3000))
    expected = expected_of("collatz_steps", [(n,) for n in ns])
    with parpy.Pool(2) as pool:
        assert pool.map(k, ns) == expected
        assert list(pool.imap(k, ns, chunksize=100)) == expected
        assert pool.apply(k, (27,)) == 111
        assert pool.starmap(kernel("add_i64"), [(1, 2), (3, 4)]) == [3, 7]
    with parpy.ThreadPoolExecutor(2) as executor:
        assert executor.submit(k, 27).result(timeout=60) == 111
        assert list(executor.map(k, ns, timeout=60)) == expected


def test_a_pipeline_hands_float64_values_from_kernel_to_kernel():
    first, second = kernel("square_plus_one"), kernel("identity_f64")
    assert first.output == second.input == "float64"
    xs = [0.5 * i for i in range(1000)]
    with parpy.Pipeline([first, second, kernel("square_plus_one")]) as pipe:
        got = pipe.map(xs)
    assert got == [(x * x + 1.0) ** 2 + 1.0 for x in xs]


def test_process_pools_unpickle_library_kernels():
    k = kernel("collatz_steps")
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        assert pool.map(k, range(1, 500), chunksize=50) == [
            FUNCTIONS["collatz_steps"][1](n) for n in range(1, 500)
        ]
    with concurrent.futures.ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("forkserver")
    ) as executor:
        assert executor.submit(parpy.map, k, [27]).result(60) == [111]


@DASK
def test_a_dask_cluster_runs_library_kernels():
    distributed = pytest.importorskip("distributed")
    from _util import local_cluster

    with local_cluster() as cluster, distributed.Client(cluster) as client:
        xs = [float(i) for i in range(500)]
        got = parpy.map(kernel("square_plus_one"), xs, client=client)
        assert got == [x * x + 1.0 for x in xs]


# ---- the GIL and Ctrl-C ----------------------------------------------------------------


def test_the_gil_is_released_while_a_batch_runs():
    spin = parpy.Kernel.from_library(library(), "spin_ms", "float64(float64)")
    done = threading.Event()
    counted = []

    def count():
        n = 0
        while not done.is_set():
            n += 1
        counted.append(n)

    thread = threading.Thread(target=count)
    started = time.monotonic()
    thread.start()
    try:
        parpy.map(spin, doubles([10.0] * 20), workers=2)  # about 0.1 s
        parpy.map(spin, [10.0] * 10, workers=2)
        spin(50.0)
    finally:
        done.set()
        thread.join(timeout=60)
    assert not thread.is_alive() and time.monotonic() - started < 60
    assert counted[0] > 1000  # the Python thread ran during the native work


CTRL_C_CHILD = """
import array, sys, parpy
spin = parpy.Kernel.from_library(sys.argv[1], "spin_ms", "float64(float64)")
calls = {
    "buffer": lambda: parpy.map(spin, array.array("d", [5.0] * 4000), workers=2),
    "list": lambda: parpy.map(spin, [5.0] * 4000, workers=2),
}
call = calls[sys.argv[2]]
for round in range(2):
    print("READY", round, flush=True)
    try:
        call()
    except KeyboardInterrupt:
        print("INTERRUPTED", round, flush=True)
    else:
        print("COMPLETED", round, flush=True)
print("NEXT", parpy.map(spin, array.array("d", [1.0] * 4)).tolist() == [200000.0] * 4, flush=True)
"""


@pytest.mark.parametrize("how", ["buffer", "list"])
def test_ctrl_c_stops_a_batch_between_items(how):
    with interactive(CTRL_C_CHILD, str(library()), how) as (proc, out):
        latencies = interrupt_rounds(proc, out, pause=0.5)
        assert max(latencies) < 5, latencies  # generous: what is checked is that it stops
        assert out.expect("NEXT", timeout=60).split() == ["NEXT", "True"]
        returncode, _, stderr = finish(proc, timeout=60)
        assert returncode == 0, stderr


FORK_CHILD = """
import array, os, parpy
k = parpy.Kernel.from_library(LIBRARY, "square_plus_one", "float64(float64)")
x = array.array("d", range(10000))
expected = [v * v + 1 for v in range(10000)]
assert parpy.map(k, x, workers=2).tolist() == expected  # parpy's threads exist now
pid = os.fork()
if pid == 0:  # the child: fresh threads, the same kernel
    ok = parpy.map(k, x, workers=2).tolist() == expected and k(3.0) == 10.0
    ok = ok and parpy.map(k, list(x), workers=2) == expected
    os._exit(0 if ok else 1)
_, status = os.waitpid(pid, 0)
print("CHILD", os.waitstatus_to_exitcode(status))
"""


@pytest.mark.unsafe_under(
    "address",
    "thread",
    reason="a fork while other threads run: GCC's ASan allocator is not fork-safe, and GCC's "
    "TSan does not support threads in a child forked from a threaded parent",
)
def test_a_forked_child_runs_user_kernels():
    child = run_python(f"LIBRARY = {str(library())!r}\n" + FORK_CHILD, timeout=120)
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["CHILD", "0"]
